"""The preview route of the shipped ``haproxy.cfg``, as a check uses it: a request naming a
color in ``X-Bluegreen-Preview`` and carrying the shared key in ``X-Bluegreen-Preview-Key``
reaches that color through HAProxy's public frontends, whatever the weights (a browser sends
the same as the cookies ``bluegreen_preview`` and ``bluegreen_preview_key``). HAProxy takes
the key from ``BG_PREVIEW_KEY``; the checks from ``PREVIEW_KEY`` in ``secrets.env``, so no
output shows it (the session's secrets are redacted everywhere)."""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "PREVIEW_COOKIE",
    "PREVIEW_HEADER",
    "PREVIEW_KEY_COOKIE",
    "PREVIEW_KEY_HEADER",
    "PREVIEW_SECRET",
    "preview_headers",
    "preview_key",
]

PREVIEW_HEADER = "X-Bluegreen-Preview"
PREVIEW_KEY_HEADER = "X-Bluegreen-Preview-Key"
PREVIEW_COOKIE = "bluegreen_preview"
PREVIEW_KEY_COOKIE = "bluegreen_preview_key"
PREVIEW_SECRET = "PREVIEW_KEY"  # noqa: S105 - its name in secrets.env, not a value

# sent as a header value and a cookie value: no separator, no space, no quote; long enough
# not to be guessed and to be redacted like any secret
_KEY = re.compile(r"[A-Za-z0-9._~-]{16,256}", re.ASCII)


def preview_key(secrets: Mapping[str, str]) -> str | None:
    """The preview route's key (``PREVIEW_KEY`` in ``secrets.env``), None when there is none.
    ValueError, naming the rule but not the value, when it cannot be sent as it is."""
    key = secrets.get(PREVIEW_SECRET)
    if not key:
        return None
    if _KEY.fullmatch(key) is None:
        raise ValueError(
            f"{PREVIEW_SECRET} in secrets.env: 16 to 256 of the characters A-Z a-z 0-9 . _ ~ - "
            "(it is sent in a header and a cookie; make one with: openssl rand -hex 24)"
        )
    return key


def preview_headers(color: str, key: str) -> dict[str, str]:
    """The headers that send a request to ``color`` through the preview route."""
    return {PREVIEW_HEADER: color, PREVIEW_KEY_HEADER: key}
