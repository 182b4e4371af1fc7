"""Small helpers the shipped checks share (imported as ``from .support import ...``)."""

from __future__ import annotations

from typing import Any

import requests


def json_body(response: requests.Response) -> dict[str, Any]:
    """The response's JSON object, or ``{}`` when it is not one (an HTML error page, ...)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def error_text(response: requests.Response) -> str:
    """``HTTP 500: column "title" does not exist`` -- the status and the gist of the body."""
    body = json_body(response)
    detail = body.get("error") or body.get("message") or response.text.strip()
    detail = " ".join(str(detail).split())
    if len(detail) > 200:
        detail = detail[:200] + "..."
    return f"HTTP {response.status_code}" + (f": {detail}" if detail else "")
