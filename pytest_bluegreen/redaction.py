"""The session's secrets and the redactor that keeps them out of every output.

:class:`Secrets` is loaded once per session from ``secrets.env``; it is a read-only mapping
whose ``repr`` shows names only. :meth:`Secrets.redact` replaces every secret value in a text
by ``***`` in every encoding a report writes it in:

- as is, and as Python's ``repr``/``ascii`` writes it inside either quote (``\\"``, ``\\\\``,
  ``\\xe9``);
- JSON-escaped (with and without ``ensure_ascii``), as Allure's ``*-result.json`` holds it;
- XML/HTML-escaped (``&quot;``, ``&amp;``, ``&#x27;``, ``&#10;``), as JUnit XML holds it;
- percent-encoded (``quote`` with and without ``/`` safe, and ``quote_plus``), as a URL or a
  DSN holds it; and these escapes of the escapes (JSON of a ``repr``, XML of JSON, ...);
- inside ``Basic`` authorization tokens (base64 of ``user:password``): a token whose decoded
  text holds a secret is replaced whole;
- as whitespace-normalising code leaves it: runs of whitespace collapsed to one space (a
  one-line reason), and each line of a secret that spans lines (a message's first line).

Values shorter than :data:`MIN_SECRET_LENGTH` are not redacted: they would blank out ordinary
words (a secret ``word`` would eat ``password``). The plugin applies the redactor to every
test report (keeping the crash line that names the real error), skip and xfail reasons,
captured output, log records, the gate's own lines, the verdict, the history, and, as a last
pass, every report file written (Allure, JUnit, verdict). Text is redacted before it is
normalised or cut short (:func:`excerpt` cuts only between words).

URLs hold secrets too. A URL setting's value is a :class:`Url` (the ``url`` parsers make it):
itself wherever it is used, shown by ``repr`` without its user info and query values
(:func:`shown_url`: ``http://***@host``), its secret parts (:func:`url_secrets`) collected into
the session's :class:`Secrets` (:func:`secrets_of_urls`, over every settings group). And in any
text the redactor hides the password of a ``scheme://user:password@host`` URL (the whole user
info when it has no password: a token), whatever secrets are known.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import html
import json
import logging
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlencode, urlsplit, urlunsplit

import pytest

from .envfile import read_env_file

__all__ = [
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "SECRET_HEADERS",
    "ReportScrubber",
    "Secrets",
    "Url",
    "excerpt",
    "mask_credentials",
    "redact",
    "secrets_of_urls",
    "shown_url",
    "url_secrets",
]

REDACTED = "***"
# header names whose values are always hidden in a recorded HTTP exchange
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)
MIN_SECRET_LENGTH = 6  # shorter values would blank out ordinary words
_BASIC = re.compile(r"(?i)(basic\s+)([A-Za-z0-9+/]{8,}={0,2})")
# scheme://user:password@ or scheme://token@ in any text; the password may hold "@" (the last
# "@" before the host ends it, as urlsplit reads it), never a quote, a space or a path
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^\s/?#@:'\"<>\\]*)(:[^\s/?#'\"<>\\]*)?@")


# --- URLs ------------------------------------------------------------------------------------


def mask_credentials(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` URL in it shown as
    ``***`` (``http://user:***@host``), and a user info without a password (a token) too."""
    if "@" not in text or "://" not in text:
        return text

    def masked(match: re.Match[str]) -> str:
        scheme, user, password = match[1], match[2], match[3]
        if password is not None:
            return f"{scheme}{user}:{REDACTED}@"
        return f"{scheme}{REDACTED}@" if user else match[0]

    return _USERINFO.sub(masked, text)


def shown_url(url: str) -> str:
    """The URL as messages and ``repr`` show it: its user info, every query value and the
    fragment as ``***``: ``https://***@host:9091/p?token=***``."""
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:  # not a URL urlsplit reads (a bad IPv6 host): the text rule alone
        return mask_credentials(url)
    _, at, host = parts.netloc.rpartition("@")
    netloc = f"{REDACTED}@{host}" if at else host
    if query:
        shown_query = urlencode([(key, REDACTED) for key, _ in query], safe="*")
    else:
        shown_query = parts.query
    fragment = REDACTED if parts.fragment else ""
    return urlunsplit(parts._replace(netloc=netloc, query=shown_query, fragment=fragment))


def url_secrets(url: str) -> tuple[str, ...]:
    """What no output may show of a URL: its user info (``user:password``: redacted whole, a
    URL shows as ``http://***@host``), its password alone (or, for HTTP, the user name when
    there is no password: a token; a ``postgresql://user@host`` login name is no secret),
    each as written and decoded; every query value; the fragment."""
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        password, user = parts.password, parts.username
    except ValueError:
        return ()
    found: list[str] = []
    userinfo = parts.netloc.rpartition("@")[0]
    if password is None and parts.scheme.lower() not in _TOKEN_SCHEMES:
        # a database's or a cache's login name (postgresql://sutazai@host): its password
        # comes from elsewhere (secrets.env) and the name itself names containers, projects...
        userinfo = ""
    credential = password if password is not None else user
    if password is None and not userinfo:
        credential = None
    for secret in (userinfo, credential):
        if secret:
            found += [secret, unquote(secret)]
    found += [value for _, value in query]  # decoded, and as written:
    found += [item.partition("=")[2] for item in re.split("[&;]", parts.query)]
    if parts.fragment:
        found += [parts.fragment, unquote(parts.fragment)]
    return tuple(dict.fromkeys(s for s in found if s))


_TOKEN_SCHEMES = frozenset({"http", "https", "ws", "wss"})  # https://TOKEN@host is a token


class Url(str):
    """A URL setting's value (``prometheus_url``, ``metrics_push_url``, a color's ``api_url``
    ...): a ``str`` wherever it is used, but ``repr`` (a settings dataclass's, pytest's
    ``--showlocals``) shows it without its secrets (:func:`shown_url`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(shown_url(self))

    @property
    def secrets(self) -> tuple[str, ...]:
        return url_secrets(self)


def secrets_of_urls(value: Any, name: str = "") -> dict[str, str]:
    """The secret parts of every :class:`Url` inside ``value`` (settings groups, their
    mappings and tuples, nested), named ``<where>#<n>`` for :class:`Secrets`."""
    found: dict[str, str] = {}
    seen: set[int] = set()

    def walk(item: Any, where: str) -> None:
        if isinstance(item, Url):
            for number, secret in enumerate(item.secrets):
                found[f"{where}#{number}"] = secret
            return
        if isinstance(item, str | bytes | int | float | Path | type) or id(item) in seen:
            return
        seen.add(id(item))
        for inner, inner_where in _parts(item, where):
            walk(inner, inner_where)

    walk(value, name)
    return found


def _parts(item: Any, where: str) -> Iterator[tuple[Any, str]]:
    """The values inside ``item`` (a dataclass's fields, a mapping's values, a collection's
    items), each with its name: ``where.field``, ``where[key]``, ``where[n]``."""
    if dataclasses.is_dataclass(item):
        for field in dataclasses.fields(item):
            yield getattr(item, field.name), f"{where}.{field.name}".lstrip(".")
    elif isinstance(item, Mapping):
        for key, inner in item.items():
            yield inner, f"{where}[{getattr(key, '__name__', key)}]"
    elif isinstance(item, list | tuple | set | frozenset):
        for number, inner in enumerate(item):
            yield inner, f"{where}[{number}]"


def excerpt(text: str, limit: int) -> str:
    """``text`` on one line (runs of whitespace collapsed), at most ``limit`` characters, cut
    only between words: a secret in it stays whole (for the redactor) or goes whole. Redact
    before collapsing where the secrets are at hand."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > 0 else "") + "…"


# --- encodings -------------------------------------------------------------------------------


def _repr_forms(text: str) -> set[str]:
    """Inside single or double quotes, as repr() and ascii() escape it."""
    forms = set()
    for quote_char in ("'", '"'):
        escaped = text.replace("\\", "\\\\").replace(quote_char, "\\" + quote_char)
        forms.add(escaped)
        forms.add(escaped.encode("ascii", "backslashreplace").decode())
    forms.add(repr(text)[1:-1])
    forms.add(ascii(text)[1:-1])
    return forms


def _json_forms(text: str) -> set[str]:
    return {json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}


def _xml_forms(text: str) -> set[str]:
    amp = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return {
        amp,
        amp.replace('"', "&quot;"),
        amp.replace('"', "&quot;").replace("'", "&apos;"),
        amp.replace('"', "&quot;").replace("\n", "&#10;"),
        html.escape(text, quote=True),
    }


def _url_forms(text: str) -> set[str]:
    return {quote(text, safe=""), quote(text), quote_plus(text), quote_plus(text, safe="")}


_ENCODINGS: tuple[Callable[[str], set[str]], ...] = (
    _repr_forms,
    _json_forms,
    _xml_forms,
    _url_forms,
)


def forms_of(secret: str) -> set[str]:
    """Every way a report may write ``secret``: each encoding, and each encoding of those."""
    first = {secret}
    for encode in _ENCODINGS:
        first |= encode(secret)
    second = set(first)
    for form in first:
        for encode in (_json_forms, _xml_forms, _repr_forms):
            second |= encode(form)
    return {f for f in second if f}


def _normalised(secret: str) -> set[str]:
    """The secret as whitespace-normalising code leaves it: collapsed to one line, and each
    of its lines (the first line of a message), when long enough to redact."""
    variants = {" ".join(secret.split())}
    variants |= {line.strip() for line in secret.splitlines()}
    return {v for v in variants if len(v) >= MIN_SECRET_LENGTH and v != secret}


class Secrets(Mapping[str, str]):
    """Secret name -> value. Its ``repr`` and ``str`` name the keys only."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = {k: v for k, v in (values or {}).items() if v}

    @classmethod
    def load(cls, path: Path, also: Mapping[str, str] | None = None) -> Secrets:
        """The secrets of an env file (``secrets.env``), and ``also`` (secrets that other
        settings hold, such as a webhook's token)."""
        return cls({**read_env_file(path), **(also or {})})

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Secrets({', '.join(f'{k}={REDACTED}' for k in sorted(self._values))})"

    __str__ = __repr__

    @property
    def active(self) -> bool:
        """Whether any value is long enough to be redacted."""
        return bool(self._redactable)

    @cached_property
    def _redactable(self) -> tuple[str, ...]:
        return tuple(v for v in self._values.values() if len(v) >= MIN_SECRET_LENGTH)

    @cached_property
    def _pattern(self) -> re.Pattern[str] | None:
        variants = {v for secret in self._redactable for v in (secret, *_normalised(secret))}
        forms = {f for secret in variants for f in forms_of(secret)}
        if not forms:
            return None
        alternatives = sorted(forms, key=len, reverse=True)  # the longest form wins
        return re.compile("|".join(re.escape(f) for f in alternatives))

    def redact(self, text: str) -> str:
        if not text:
            return text
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
            text = _BASIC.sub(self._basic, text)
        return mask_credentials(text)

    def _basic(self, match: re.Match[str]) -> str:
        try:
            decoded = base64.b64decode(match[2], validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return match[0]
        if any(secret in decoded for secret in self._redactable):
            return match[1] + REDACTED
        return match[0]

    def redact_object(self, value: Any) -> Any:
        """Strings inside a report's long representation, redacted in place where the object
        allows it (pytest's Repr* dataclasses), so the crash line and layout stay."""
        return _walk(value, self.redact, set())

    def redacting_record_factory(
        self, previous: Callable[..., logging.LogRecord]
    ) -> Callable[..., logging.LogRecord]:
        """A log record factory whose records give their message redacted, to every handler
        (pytest's log capture, live logging, files)."""
        secrets = self

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            message = record.getMessage()
            cleaned = secrets.redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, ()
            return record

        return factory


def _walk(value: Any, clean: Callable[[str], str], seen: set[int]) -> Any:
    """``value`` with every string in it cleaned: containers rebuilt or changed in place,
    dataclass fields set in place."""
    if isinstance(value, str):
        return clean(value)
    if id(value) in seen:
        return value
    seen.add(id(value))
    if isinstance(value, list):
        value[:] = [_walk(item, clean, seen) for item in value]
    elif isinstance(value, tuple):
        items = [_walk(item, clean, seen) for item in value]
        value = type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    elif isinstance(value, dict):
        for key in list(value):
            value[key] = _walk(value[key], clean, seen)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            current = getattr(value, field.name)
            cleaned = _walk(current, clean, seen)
            if cleaned is not current:
                with contextlib.suppress(AttributeError, TypeError):
                    object.__setattr__(value, field.name, cleaned)
    return value


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace each secret, in every encoding, by ``***``."""
    return Secrets({str(i): s for i, s in enumerate(secrets)}).redact(text)


_MOST_SCRUBBED = 50_000_000  # bytes of one report file read and rewritten


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
            if path.is_dir():
                for folder, _, names in os.walk(path):  # a linked folder is not walked into
                    for name in names:
                        self._scrub(Path(folder) / name)
            elif path.exists():
                self._scrub(path.resolve())  # the path the user gave: its own link is theirs

    def _scrub(self, file: Path) -> None:
        """``file`` rewritten without the secrets: never through a link (a link in a report
        folder is not a report; through it the scrub would rewrite the file it points at), and
        by a new file renamed over it, so a hard link's other name is not rewritten either."""
        try:
            fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return
        with os.fdopen(fd, "rb") as reading:
            found = os.fstat(reading.fileno())
            if not stat.S_ISREG(found.st_mode) or found.st_size > _MOST_SCRUBBED:
                return
            data = reading.read(_MOST_SCRUBBED + 1)
        try:
            text = data.decode()
        except UnicodeDecodeError:
            return  # a screenshot, an archive: not text a secret was formatted into
        cleaned = self.secrets.redact(text)
        if cleaned == text:
            return
        scratch = file.with_name(f".{file.name}.{os.getpid()}.scrubbed")
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with os.fdopen(os.open(scratch, flags, stat.S_IMODE(found.st_mode)), "wb") as out:
                out.write(cleaned.encode())
            os.replace(scratch, file)
        except OSError:
            with contextlib.suppress(OSError):
                scratch.unlink()
            # not rewritten (a read-only folder): the report keeps the secret, say so
            sys.stderr.write(f"bluegreen: {file} holds a secret and could not be rewritten\n")
