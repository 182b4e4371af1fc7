"""``ColorSession``: a requests session bound to one color's direct URL (the ``http`` fixture)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .redaction import shown_url

__all__ = ["ColorSession"]


class ColorSession(requests.Session):
    """A requests session bound to one color's direct API URL.

    Relative URLs are joined to ``base_url``; every request gets the configured timeout; only
    connection errors are retried (twice, short backoff): an HTTP error is an answer, not
    something to hide.
    """

    def __init__(self, base_url: str, timeout: float, color: str) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.color = color
        retry = Retry(
            total=2,
            connect=2,
            read=False,  # re-raise a read timeout as such (read=0 wraps it in ConnectionError)
            status=0,
            other=0,
            backoff_factor=0.05,
            allowed_methods=None,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.mount("http://", adapter)
        self.mount("https://", adapter)
        # the last exchange, attached to the report when a check fails
        self.last_response: requests.Response | None = None
        self.hooks["response"].append(self._remember)

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.last_response = response

    def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, urljoin(self.base_url, url), *args, **kwargs)

    def __repr__(self) -> str:
        return f"<ColorSession {self.color} {shown_url(self.base_url)}>"
