"""jarvis-frontend: the UI on port 3000.

GET /                 HTML page naming this color and version
GET /static/app.css   stylesheet
GET /static/app.js    script; calls the API with fetch('/api/items', ...)
GET /health           200 {"status":"ok","color","version","role"}
*   /api/*            proxied to this color's backend (API_URL, e.g. http://blue-backend:8000)
"""

from __future__ import annotations

import html
import http.client
import logging
import mimetypes
import os
import sys
import threading
import urllib.parse
from pathlib import Path

from jarvis import app_version, deployment_color
from jarvis.common import Handler, env_int, serve, setup

log = logging.getLogger("jarvis.frontend")
ROLE = "jarvis-frontend"
STATIC = Path(__file__).with_name("static")
FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept", "X-Request-Id")
FORWARDED_RESPONSE_HEADERS = ("X-Bluegreen-Color", "X-Bluegreen-Version")


class ApiProxy:
    """Keep-alive HTTP connections to the backend, one per serving thread."""

    def __init__(self, api_url: str) -> None:
        url = urllib.parse.urlsplit(api_url)
        if url.scheme != "http" or not url.hostname:
            raise SystemExit(f"API_URL must be http://HOST[:PORT], got {api_url!r}")
        self.host, self.port = url.hostname, url.port or 80
        self.url = api_url
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            self._local.conn = conn
        return conn

    def forward(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        for attempt in (1, 2):
            conn = self._conn()
            fresh = conn.sock is None
            try:
                conn.request(method, path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, dict(resp.getheaders()), data
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                # a kept-alive connection the backend closed meanwhile: retry once, fresh
                if attempt == 2 or fresh:
                    raise
        raise AssertionError("unreachable")


class FrontendHandler(Handler):
    role = ROLE
    proxy: ApiProxy  # set in main()
    page: bytes = b""

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith("/api/"):
            self.forward()
        elif path in ("/", "/index.html"):
            self.send_body(
                200, self.page, "text/html; charset=utf-8", {"Cache-Control": "no-cache"}
            )
        elif path == "/health":
            self.send_json(
                200,
                {
                    "status": "ok",
                    "color": deployment_color(),
                    "version": app_version(),
                    "role": ROLE,
                    "api_url": self.proxy.url,
                },
            )
        elif path.startswith("/static/"):
            self.static(path.removeprefix("/static/"))
        else:
            self.send_json(404, {"error": f"no route for GET {path}"})

    def do_POST(self) -> None:
        if self.path.startswith("/api/"):
            self.forward()
        else:
            self.read_body()
            self.send_json(404, {"error": f"no route for POST {self.path}"})

    do_PUT = do_DELETE = do_PATCH = do_POST

    def static(self, name: str) -> None:
        target = (STATIC / name).resolve()
        if target.parent != STATIC.resolve() or not target.is_file() or name == "index.html":
            self.send_json(404, {"error": f"no static file {name!r}"})
            return
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        self.send_body(200, target.read_bytes(), ctype, {"Cache-Control": "no-cache"})

    def forward(self) -> None:
        body = self.read_body()
        headers = {k: v for k in FORWARDED_REQUEST_HEADERS if (v := self.headers.get(k))}
        headers["X-Forwarded-For"] = self.client_address[0]
        try:
            status, resp_headers, data = self.proxy.forward(self.command, self.path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            log.error("API %s unreachable: %s", self.proxy.url, exc)
            self.send_json(502, {"error": f"API {self.proxy.url} unreachable: {exc}"})
            return
        extra = {
            f"X-Bluegreen-Api-{k.split('-')[-1]}": v
            for k, v in resp_headers.items()
            if k in FORWARDED_RESPONSE_HEADERS
        }
        if "Cache-Control" in resp_headers:
            extra["Cache-Control"] = resp_headers["Cache-Control"]
        self.send_body(
            status, data, resp_headers.get("Content-Type", "application/octet-stream"), extra
        )


def render_page() -> bytes:
    template = (STATIC / "index.html").read_text()
    return (
        template.replace("{{color}}", html.escape(deployment_color()))
        .replace("{{version}}", html.escape(app_version()))
        .encode()
    )


def main(argv: list[str] | None = None) -> int:
    setup(ROLE)
    default_api_url = f"http://{deployment_color()}-backend:8000"
    FrontendHandler.proxy = ApiProxy(os.environ.get("API_URL") or default_api_url)
    FrontendHandler.page = render_page()
    log.info("proxying /api/* to %s", FrontendHandler.proxy.url)
    return serve(FrontendHandler, env_int("PORT", 3000), ROLE)


if __name__ == "__main__":
    sys.exit(main())
