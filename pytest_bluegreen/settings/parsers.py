"""Parsers of setting values: text from the CLI, env or ini, or a TOML value, to a typed value.

Each raises ``ValueError`` with a short reason; the resolver adds the setting's name and source.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pytest_bluegreen.haproxy.address import RuntimeApiAddress
from pytest_bluegreen.haproxy.answers import ServerRef
from pytest_bluegreen.redaction import Url, shown_url

__all__ = [
    "SELECTIONS_EXTRA",
    "boolean",
    "canary_steps",
    "choice",
    "command",
    "header",
    "image_tag",
    "is_color_name",
    "label_name",
    "off_at_zero",
    "optional",
    "path",
    "path_segment",
    "rising_percents",
    "runtime_api",
    "seconds",
    "series_selector",
    "servers",
    "service_url",
    "services",
    "share",
    "stack_name",
    "text",
    "text_list",
    "url",
    "variable_name",
    "whole",
]

_SERVICE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # Docker's image tag grammar
_HEADER = re.compile(r"^[A-Za-z0-9-]+$")
_COLOR_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")  # Prometheus' label names
_SELECTOR = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^{}]*\})?$")  # name{matchers}
SELECTIONS_EXTRA = ("all", "shared")  # what --env takes besides the colors: never a color's name


def text(value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"expected text, got {type(value).__name__}")
    result = str(value).strip()
    if not result:
        raise ValueError("is empty")
    return result


def is_color_name(name: str) -> bool:
    """Whether ``name`` can name a color: a lowercase letter, then at most 31 letters, digits,
    '-' or '_'; not a selection (``all``, ``shared``). The settings and ``bluegreen init``
    take the same names."""
    return bool(_COLOR_NAME.match(name)) and name not in SELECTIONS_EXTRA


def optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``None`` or blank text mean unset; anything else goes to ``parse``."""

    def parse_optional(value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return parse(value)

    return parse_optional


def off_at_zero(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``0`` means off (``None``, as unset: ``--bake 0`` is no bake); anything else goes to
    ``parse``."""

    def parse_off_at_zero(value: Any) -> Any:
        if not isinstance(value, bool):
            try:
                if float(str(value).strip()) == 0:
                    return None
            except ValueError:
                pass
        return parse(value)

    return parse_off_at_zero


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in {"1", "true", "yes", "on"}:
        return True
    if word in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected seconds, got a boolean")
    try:
        number = float(value)
    except OverflowError:  # an integer past a float's range: TOML takes any length
        number = math.inf
    except (TypeError, ValueError):
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if math.isnan(number) or not 0 < number <= 86400:
        raise ValueError(f"expected seconds in (0, 86400], got {value!r}")
    return number


def whole(low: int, high: int) -> Callable[[Any], int]:
    """A whole number in ``low..high``."""

    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected a whole number, got a boolean")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError(f"expected a whole number, got {value!r}") from None
        if not low <= number <= high:
            raise ValueError(f"expected {low}..{high}, got {number}")
        return number

    return parse


def fraction(low: float, high: float) -> Callable[[Any], float]:
    """A number strictly between ``low`` and ``high`` (a confidence such as 0.95)."""

    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError("expected a number, got a boolean")
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
        if math.isnan(number) or not low < number < high:
            raise ValueError(f"expected a number between {low:g} and {high:g}, got {value!r}")
        return number

    return parse


def url(value: Any) -> Url:
    """An http(s) URL; it may carry ``user:password@`` or a token: a :class:`Url` (its repr and
    this parser's errors never show them; the session's secrets collect them)."""
    given = text(value)
    shown = _shown(given)
    parts = urlsplit(given)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"expected an http(s) URL, got {shown}")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric or out-of-range port
    except ValueError as exc:
        raise ValueError(f"bad port in {shown}: {exc}") from None
    return Url(given.rstrip("/"))


def _shown(given: str) -> str:
    """A URL value in an error: what is before its last ``@`` (it may be a password, even in a
    malformed URL) and its query values are not shown."""
    if "@" in given:
        host = given.rpartition("@")[2]
        return f"'***@{host}' (the part before '@' is not shown: it may hold a password)"
    return repr(shown_url(given))


def service_url(value: Any) -> Url:
    """A service's URL of any scheme (``postgresql://user@host/db``, ``redis://host/0``), which
    may carry a password: a :class:`Url`, like :func:`url`'s."""
    given = text(value)
    try:
        parts = urlsplit(given)
    except ValueError:
        raise ValueError(f"is not a URL: {_shown(given)}") from None
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"expected scheme://host..., got {_shown(given)}")
    return Url(given)


def path(value: Any) -> Path:
    """A path; the resolver makes a relative one relative to the settings file's folder."""
    return Path(text(value)).expanduser()


def choice(*allowed: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        word = text(value).lower()
        if word not in allowed:
            raise ValueError(f"expected one of {'|'.join(allowed)}, got {value!r}")
        return word

    return parse


def lower(value: Any) -> str:
    return text(value).lower()


def image_tag(value: Any) -> str:
    tag = text(value)
    if not _TAG.match(tag):
        raise ValueError(
            f"is not an image tag ({tag!r}: letters, digits, '_', '.', '-', at most 128, not "
            "starting with '.' or '-')"
        )
    return tag


def variable_name(value: Any) -> str:
    name = text(value)
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
        raise ValueError(f"is not an environment variable name: {name!r}")
    return name


def header(value: Any) -> str:
    name = text(value)
    if not _HEADER.match(name):
        raise ValueError(f"not an HTTP header name: {name!r}")
    return name


def label_name(value: Any) -> str:
    name = text(value)
    if not _LABEL_NAME.match(name):
        raise ValueError(f"is not a Prometheus label name: {name!r}")
    return name


def series_selector(value: Any) -> str:
    """A PromQL series selector: a metric's name, maybe with label matchers
    (``jarvis_http_requests_total{job="jarvis"}``); no function, no range."""
    given = text(value)
    if not _SELECTOR.match(given):
        raise ValueError(
            f"is not a PromQL series selector (a metric's name, maybe with {{label matchers}}): "
            f"{given!r}"
        )
    return given


def path_segment(value: Any) -> str:
    given = text(value)
    if not given.startswith("/"):
        raise ValueError(f"expected a path starting with '/', got {given!r}")
    return given


def canary_steps(value: Any) -> tuple[int, ...]:
    """``5,25,50`` (or a TOML list): the new color's shares of routed traffic, in percent, one
    per canary step; each a whole number in 1..99, rising (the full switch comes after the
    last). An empty value (``--canary ""``) is no canary."""
    if isinstance(value, str) and not value.strip():
        return ()
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    steps = tuple(whole(1, 99)(item) for item in text_list(value))
    if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
        raise ValueError(f"expected rising percentages, got {','.join(map(str, steps))}")
    return steps


def rising_percents(high: float, most: int = 20) -> Callable[[Any], tuple[float, ...]]:
    """``2,5,10`` (or a TOML list of numbers): percentages in (0, ``high``], rising, at least
    one and at most ``most`` (a ladder of magnitudes, smallest first: each costs a deploy and
    up to drill_power_runs gates)."""

    def parse(value: Any) -> tuple[float, ...]:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = [value]
        numbers = []
        for item in text_list(value):
            try:
                number = float(item)
            except ValueError:
                raise ValueError(f"expected percentages, got {item!r}") from None
            if math.isnan(number) or not 0 < number <= high:
                raise ValueError(f"expected percentages in (0, {high:g}], got {item!r}")
            numbers.append(number)
        if len(numbers) > most:
            raise ValueError(f"expected at most {most} percentages, got {len(numbers)}")
        if any(later <= earlier for earlier, later in itertools.pairwise(numbers)):
            shown = ",".join(f"{number:g}" for number in numbers)
            raise ValueError(f"expected rising percentages, got {shown}")
        return tuple(numbers)

    return parse


def share(value: Any) -> float:
    """A share of requests in (0, 1] (1: all of them)."""
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError(f"expected a share in (0, 1], got {value!r}") from None
    if math.isnan(number) or not 0 < number <= 1:
        raise ValueError(f"expected a share in (0, 1], got {value!r}")
    return number


def runtime_api(value: Any) -> RuntimeApiAddress:
    return RuntimeApiAddress.parse(text(value))


def text_list(value: Any) -> tuple[str, ...]:
    """A TOML list of strings, or a comma-separated text (env, ini)."""
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",") if item.strip()]
    elif isinstance(value, list | tuple):
        items = [text(item) for item in value]
    else:
        raise ValueError(f"expected a list of text, got {type(value).__name__}")
    if not items:
        raise ValueError("expected a non-empty list")
    return tuple(items)


def command(value: Any) -> tuple[str, ...]:
    """A command as its words (:func:`text_list`): a first word with a space in it is a whole
    command line written as one word (``"pg_dump -U app app"``), which would fail only when
    it runs."""
    words = text_list(value)
    if any(c.isspace() for c in words[0]):
        raise ValueError(
            f"expected the command as its words, got {words[0]!r} as one: in the file "
            '["pg_dump", "-U", "app", "app"], in the environment or ini pg_dump,-U,app,app'
        )
    return words


def servers(value: Any) -> tuple[ServerRef, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError("servers must be a non-empty list of 'backend/server'")
    return tuple(ServerRef.parse(str(s)) for s in value)


def stack_name(value: Any) -> str:
    name = text(value)
    if not _SERVICE.match(name) or "." in name:
        raise ValueError(f"is not a swarm stack name: {name!r}")
    return name


def services(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError("services must be a non-empty list of Compose service names")
    names = tuple(str(v) for v in value)
    for service in names:
        if not _SERVICE.match(service):
            raise ValueError(f"{service!r} is not a Compose service name")
    return names
