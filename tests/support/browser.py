"""A real headless Chromium for the tests and the benchmarks, driven through the DevTools
protocol over a pipe (``--remote-debugging-pipe``: JSON messages ending in a NUL byte on file
descriptors 3 and 4; no websocket, no extra package): open a page, wait until an expression
is true in it, read its DOM's data attributes, take a screenshot. Unlike ``--dump-dom`` with a
virtual time budget, the page runs in real time: what it measures (``performance.now()``)
includes the network.

    with Browser.start(chromium, profile) as browser:
        page = browser.open(url)
        page.wait("document.body.dataset.state === 'drawn'", 30)
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .infra import require_infra
from .stack import NotYet, wait_for


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def required_chromium(config: pytest.Config) -> str:
    """Chromium's path; missing, a skip (a failure under --strict-infra)."""
    binary = chromium_binary()
    require_infra(
        config, binary is not None, "chromium is not installed (apt-get install chromium)"
    )
    assert binary is not None
    return binary


class BrowserError(AssertionError):
    """Chromium ended, or answered a command with an error."""


@dataclass
class Browser:
    proc: subprocess.Popen[bytes]
    to_browser: int
    from_browser: int
    _buffer: bytes = b""
    _next: int = 0
    _events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    @contextmanager
    def start(cls, binary: str, profile: Path, size: str = "1400,1000") -> Iterator[Browser]:
        """Chromium running headless with a fresh ``profile``; stopped (and waited for) on exit."""
        ours_read, browser_write = os.pipe()  # Chromium writes its answers on its fd 4
        browser_read, ours_write = os.pipe()  # and reads our commands on its fd 3

        def descriptors() -> None:
            os.dup2(browser_read, 3)
            os.dup2(browser_write, 4)

        proc = subprocess.Popen(
            [
                binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--remote-debugging-pipe", f"--user-data-dir={profile}",
                f"--window-size={size}", "about:blank",
            ],
            pass_fds=(3, 4), preexec_fn=descriptors,  # noqa: PLW1509 - only dup2 before exec
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(browser_read)
        os.close(browser_write)
        browser = cls(proc, ours_write, ours_read)
        try:
            yield browser
        finally:
            browser.close()

    def send(self, method: str, params: dict[str, Any] | None = None, **more: Any) -> Any:
        """One command; its result (waits at most 30 s)."""
        self._next += 1
        number = self._next
        message = {"id": number, "method": method, "params": params or {}, **more}
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 30
        while True:
            for answer in self._read(deadline):
                if answer.get("id") == number:
                    if "error" in answer:
                        raise BrowserError(f"{method}: {answer['error']}")
                    return answer.get("result", {})
                self._events.append(answer)

    def _read(self, deadline: float) -> list[dict[str, Any]]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BrowserError("Chromium did not answer within 30 s")
        ready, _, _ = select.select([self.from_browser], [], [], left)
        if not ready:
            return []
        chunk = os.read(self.from_browser, 1 << 16)
        if not chunk:
            raise BrowserError(f"Chromium ended (exit {self.proc.poll()})")
        self._buffer += chunk
        *whole, self._buffer = self._buffer.split(b"\0")
        return [json.loads(message) for message in whole]

    def open(self, url: str) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, session["sessionId"])
        page.send("Page.navigate", {"url": url})
        return page

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("Browser.close")
            except (BrowserError, OSError):
                self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.to_browser, self.from_browser):
            with suppress(OSError):
                os.close(fd)


@dataclass
class Page:
    browser: Browser
    session: str

    def send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self.browser.send(method, params, sessionId=self.session)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-able)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float) -> Any:
        """Until ``expression`` is truthy in the page; its value."""

        def truthy() -> Any:
            try:
                return self.evaluate(expression)
            except BrowserError as exc:  # the page is still loading (no document yet)
                raise NotYet(str(exc)) from None

        return wait_for(truthy, timeout, f"the page to have {expression}", interval=0.05)

    def data(self, selector: str) -> dict[str, str]:
        """The data attributes (``dataset``) of the first element ``selector`` finds."""
        found = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
            "return e ? Object.assign({}, e.dataset) : null; })()"
        )
        if found is None:
            raise BrowserError(f"no element {selector}")
        return dict(found)

    def text(self, selector: str) -> str:
        return str(
            self.evaluate(
                f"(document.querySelector({json.dumps(selector)}) || {{}}).innerText || ''"
            )
        )

    def screenshot(self, path: Path) -> Path:
        shot = self.send("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
