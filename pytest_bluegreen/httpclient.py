"""``ColorSession``: a requests session bound to one color's direct URL (the ``http`` fixture)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .gate.builds import Heard
from .judge.headers import SERVER_HEADER, VERSION_HEADER
from .redaction import shown_url

if TYPE_CHECKING:
    from .gate.builds import AnswerLog
    from .judge.load import Sample

__all__ = ["ColorSession"]


class ColorSession(requests.Session):
    """A requests session bound to one color's direct API URL.

    Relative URLs are joined to ``base_url``; every request gets the configured timeout; only
    connection errors are retried (twice, short backoff): an HTTP error is an answer, not
    something to hide. With ``answers``, every answer's version header and HAProxy's server
    header are noted there for the gate, which checks that they came from the deployed build
    (see :mod:`pytest_bluegreen.gate.builds`). A CA given to the session (``session.verify =
    "ca.pem"``) is what its https:// requests are verified against, even where
    ``REQUESTS_CA_BUNDLE`` is set (plain requests lets that variable override a session's
    ``verify``: psf/requests#3829). ``origin_headers`` (a secret such as the preview route's
    key) go to ``base_url``'s origin only: a redirect elsewhere is followed without them
    (requests itself takes only ``Authorization`` out).
    """

    def __init__(
        self,
        base_url: str,
        timeout: float,
        color: str,
        *,
        answers: AnswerLog | None = None,
        version_header: str = VERSION_HEADER,
        server_header: str = SERVER_HEADER,
        origin_headers: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/") + "/"
        self.origin_headers = tuple(origin_headers)
        self.timeout = timeout
        self.color = color
        self.answers = answers
        self._headers = {"version_header": version_header, "server_header": server_header}
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
        if self.answers is not None:
            self.answers.add(self.color, Heard.of(response.headers, **self._headers))

    def note_answers(self, samples: Iterable[Sample]) -> None:
        """Answers of this color a check got by other means than this session (a load on its
        URL: ``load.run_load``'s samples), noted for the gate as this session's own are."""
        if self.answers is None:
            return
        names = self._headers
        for sample in samples:
            if sample.status is not None:
                headers = {
                    names["version_header"]: sample.version or "",
                    names["server_header"]: sample.server or "",
                }
                self.answers.add(self.color, Heard.of(headers, **names))

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: Any) -> None:
        """On a redirect: what requests does, and ``origin_headers`` out of a request that
        leaves the session's origin (an http -> https upgrade of the same host keeps them)."""
        # (requests' own methods, untyped in its stubs: the types are the ones written here)
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]
        new_url = prepared_request.url or ""
        leaves = self.should_strip_auth(self.base_url, new_url)  # type: ignore[no-untyped-call]
        if self.origin_headers and leaves:
            for name in self.origin_headers:
                prepared_request.headers.pop(name, None)

    def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        if self.verify is not True:
            kwargs.setdefault("verify", self.verify)
        return super().request(method, urljoin(self.base_url, url), *args, **kwargs)

    def __repr__(self) -> str:
        return f"<ColorSession {self.color} {shown_url(self.base_url)}>"
