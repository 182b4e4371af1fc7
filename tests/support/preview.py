"""Requests to HAProxy's preview route exactly as written: a header name twice, in order."""

from __future__ import annotations

import socket

from .stack import Stack

COLOR = "X-Bluegreen-Color"


def raw_get(
    port: int, path: str, headers: list[tuple[str, str]], *, host: str = "bluegreen"
) -> tuple[str, str | None, str]:
    """One HTTP/1.1 GET with ``headers`` as given (a name twice is sent twice): the status,
    the color that answered (None: HAProxy's own answer) and the body (the stand-in's echo of
    what it heard)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    status = head.split(" ", 2)[1]
    color = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in head.split("\r\n")
            if ln.lower().startswith(COLOR.lower() + ":")
        ),
        None,
    )
    return status, color, body


def entries(stack: Stack) -> dict[str, str]:
    """Each public frontend, with a path it sends to the API and one it sends to the frontend."""
    return {
        "https-api": f"https://127.0.0.1:{stack.ports['https']}/api/echo",
        "https-frontend": f"https://127.0.0.1:{stack.ports['https']}/",
        "routed-api": f"http://127.0.0.1:{stack.ports['api']}/api/echo",
        "routed-frontend": f"http://127.0.0.1:{stack.ports['frontend']}/",
    }
