"""The ``notify`` setting's webhook URLs: parsed strictly, never shown whole.

A webhook URL holds its secret (a Slack token in the path, ``user:password@``, a ``?token=``):
:attr:`Webhook.secrets` gives those parts to the session's :class:`~.redaction.Secrets` (what
any URL setting gives, and the path's tokens), and a URL is only ever shown as
``scheme://host/…`` (:attr:`Webhook.shown`), also in a parse error.
Sending to them is :mod:`.notify`.
"""

from __future__ import annotations

import re
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

from pytest_bluegreen.frozen import Frozen, frozen
from pytest_bluegreen.redaction import url_secrets

__all__ = ["Webhook", "parse_webhooks"]


def _secret_segment(segment: str) -> bool:
    """A path segment that is a token or an id (Slack's ``T…/B…/XXXX``), not a word such as
    ``services`` or ``webhooks``."""
    return len(segment) >= 16 or any(c.isdigit() for c in segment)


@frozen
class Webhook(Frozen):
    """One ``notify`` URL. Shown (``str``, ``repr``, every message) as ``scheme://host/…``."""

    url: str = field(repr=False)

    @property
    def shown(self) -> str:
        parts = urlsplit(self.url)
        host = parts.netloc.rpartition("@")[2]
        more = "/…" if parts.path.strip("/") or parts.query or parts.fragment else ""
        return f"{parts.scheme}://{host}{more}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The parts of the URL no output may show: the path's tokens and ids, and what any
        URL setting hides (:func:`~.redaction.url_secrets`: the password as written and
        decoded, or a user name that is a token; every query value; the fragment)."""
        path = [s for s in urlsplit(self.url).path.split("/") if _secret_segment(s)]
        return tuple(dict.fromkeys([*path, *url_secrets(self.url)]))

    def __str__(self) -> str:
        return self.shown

    def __repr__(self) -> str:
        return f"Webhook({self.shown})"


def _webhook(text: str, number: int) -> Webhook:
    """One URL, checked without showing it (it holds a secret): ValueError names the item."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        scheme = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise ValueError(f"item {number} is not an http(s) URL ({scheme})")
    if not parts.hostname:
        raise ValueError(f"item {number} ({parts.scheme}://…) has no host")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric or out-of-range port
    except ValueError:
        raise ValueError(
            f"item {number} ({parts.scheme}://{parts.hostname}…) has a bad port"
        ) from None
    return Webhook(text)


def parse_webhooks(value: Any) -> tuple[Webhook, ...]:
    """The ``notify`` setting: a TOML list of http(s) URLs, or text (environment, ini) with
    the URLs separated by commas or spaces. Strict: a bad or repeated URL is a ValueError that
    names its position, never its text."""
    if isinstance(value, str):
        items = [item for item in re.split(r"[\s,]+", value) if item]
    elif isinstance(value, list | tuple):
        if not all(isinstance(item, str) for item in value):
            raise ValueError("expected a list of http(s) URLs (text)")
        items = [item.strip() for item in value]
    else:
        raise ValueError(f"expected a list of http(s) URLs, got {type(value).__name__}")
    hooks: list[Webhook] = []
    for number, item in enumerate(items, start=1):
        hook = _webhook(item, number)
        if hook in hooks:
            raise ValueError(f"item {number} repeats item {hooks.index(hook) + 1}")
        hooks.append(hook)
    return tuple(hooks)
