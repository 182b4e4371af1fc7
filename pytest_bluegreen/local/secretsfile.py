"""The local stack's ``secrets.env``: a random ``PREVIEW_KEY`` (HAProxy's preview route) added
when the file has none, as ``scripts/setup`` does.

    python -m pytest_bluegreen.local.secretsfile config/deploy/secrets.env

"Has none" is read as the plugin reads the file (``envfile``: ``export PREVIEW_KEY=...`` and
``PREVIEW_KEY = ...`` are keys too; ``PREVIEW_KEY=`` is the route turned off, left alone): a
second line would override the user's key. The line goes on a line of its own (a file whose
last line has no newline keeps that line whole), in a file created readable by its owner only.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from pathlib import Path

from pytest_bluegreen.envfile import read_env_file
from pytest_bluegreen.haproxy.preview import PREVIEW_SECRET

__all__ = ["ensure_preview_key", "main"]


def ensure_preview_key(path: Path) -> str:
    """Add a random ``PREVIEW_KEY`` to ``path`` unless it has one; the line to say. OSError
    when the file cannot be read or written."""
    if PREVIEW_SECRET in read_env_file(path):
        return f"{path} has a {PREVIEW_SECRET}: left as it is"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "r+b") as file:
        size = os.fstat(fd).st_size
        glued = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        file.write(
            (b"\n" if glued else b"") + f"{PREVIEW_SECRET}={secrets.token_hex(24)}\n".encode()
        )
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
    said = f"added a random {PREVIEW_SECRET} to {path}"
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        said += f" (warning: its mode {mode:04o} lets others read it: chmod 600 {path})"
    return said


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m pytest_bluegreen.local.secretsfile SECRETS_ENV", file=sys.stderr)
        return 2
    path = Path(args[0])
    try:
        print(ensure_preview_key(path))
    except OSError as exc:
        print(
            f"could not add a {PREVIEW_SECRET} to {path} ({exc.strerror or exc}): the preview "
            "checks skip until it has one",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
