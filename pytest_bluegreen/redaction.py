"""The session's secrets and the redactor that keeps them out of every output.

:class:`Secrets` is loaded once per session from ``secrets.env``; it is a read-only mapping
whose ``repr`` shows names only. :meth:`Secrets.redact` replaces every secret value in a text
by ``***``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

from .envfile import read_env_file

__all__ = [
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "SECRET_HEADERS",
    "ReportScrubber",
    "Secrets",
    "redact",
]

REDACTED = "***"
# header names whose values are always hidden in a recorded HTTP exchange
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)
MIN_SECRET_LENGTH = 4  # shorter values would blank out ordinary text


class Secrets(Mapping[str, str]):
    """Secret name -> value. Its ``repr`` and ``str`` name the keys only."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = {k: v for k, v in (values or {}).items() if v}

    @classmethod
    def load(cls, path: Path) -> Secrets:
        return cls(read_env_file(path))

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Secrets({', '.join(f'{k}={REDACTED}' for k in sorted(self._values))})"

    __str__ = __repr__

    def redact(self, text: str) -> str:
        return redact(text, self._values.values())

    @property
    def active(self) -> bool:
        """Whether any value is long enough to be redacted."""
        return any(len(v) >= MIN_SECRET_LENGTH for v in self._values.values())


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace each secret (longest first) by ``***``."""
    for secret in sorted(
        (s for s in secrets if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True
    ):
        text = text.replace(secret, REDACTED)
    return text


class ReportScrubber:
    """Last pass on the controller: no secret value stays in a written report file."""

    def __init__(self, secrets: Secrets, paths: Iterable[Path]) -> None:
        self.secrets = secrets
        self.paths = [p for p in paths if p is not None]

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.scrub()

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.scrub()  # junitxml writes its file in its own sessionfinish

    def scrub(self) -> None:
        if not self.secrets.active:
            return
        for path in self.paths:
            files = path.rglob("*") if path.is_dir() else [path]
            for file in files:
                if not file.is_file() or file.stat().st_size > 50_000_000:
                    continue
                try:
                    text = file.read_text()
                except (UnicodeDecodeError, OSError):
                    continue
                cleaned = self.secrets.redact(text)
                if cleaned != text:
                    file.write_text(cleaned)
