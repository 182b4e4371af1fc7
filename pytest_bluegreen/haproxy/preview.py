"""The preview route of the shipped ``haproxy.cfg``, as a check uses it: a request naming a
color in ``X-Bluegreen-Preview`` and carrying the shared key in ``X-Bluegreen-Preview-Key``
reaches that color through HAProxy's public frontends, whatever the weights (a browser sends
the same as the cookies ``bluegreen_preview`` and ``bluegreen_preview_key``). HAProxy takes
the key from ``BG_PREVIEW_KEY``; the checks from ``PREVIEW_KEY`` in ``secrets.env``, so no
output shows it (the session's secrets are redacted everywhere)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

__all__ = [
    "KEY_VARIABLE",
    "PREVIEW_COOKIE",
    "PREVIEW_HEADER",
    "PREVIEW_KEY_COOKIE",
    "PREVIEW_KEY_HEADER",
    "PREVIEW_SECRET",
    "PREVIEW_VAR",
    "ROUTE_OFF",
    "ROUTE_ON",
    "SOURCES_VARIABLE",
    "color_guard",
    "global_lines",
    "preview_headers",
    "preview_key",
    "route_lines",
]

PREVIEW_HEADER = "X-Bluegreen-Preview"
PREVIEW_KEY_HEADER = "X-Bluegreen-Preview-Key"
PREVIEW_COOKIE = "bluegreen_preview"
PREVIEW_KEY_COOKIE = "bluegreen_preview_key"
PREVIEW_SECRET = "PREVIEW_KEY"  # noqa: S105 - its name in secrets.env, not a value

# sent as a header value and a cookie value: no separator, no space, no quote; long enough
# not to be guessed and to be redacted like any secret
_KEY = re.compile(r"[A-Za-z0-9._~-]{16,256}", re.ASCII)


def preview_key(secrets: Mapping[str, str]) -> str | None:
    """The preview route's key (``PREVIEW_KEY`` in ``secrets.env``), None when there is none.
    ValueError, naming the rule but not the value, when it cannot be sent as it is."""
    key = secrets.get(PREVIEW_SECRET)
    if not key:
        return None
    if _KEY.fullmatch(key) is None:
        raise ValueError(
            f"{PREVIEW_SECRET} in secrets.env: 16 to 256 of the characters A-Z a-z 0-9 . _ ~ - "
            "(it is sent in a header and a cookie; make one with: openssl rand -hex 24)"
        )
    return key


def preview_headers(color: str, key: str) -> dict[str, str]:
    """The headers that send a request to ``color`` through the preview route."""
    return {PREVIEW_HEADER: color, PREVIEW_KEY_HEADER: key}


# --- the route's HAProxy lines: one source for the shipped haproxy.cfg (a test checks that its
# frontends carry them as written here) and what ``bluegreen init`` proposes for a user's ---
KEY_VARIABLE = "BG_PREVIEW_KEY"
SOURCES_VARIABLE = "BG_PREVIEW_SOURCES"
PREVIEW_VAR = "txn.bg_preview"  # the color a preview request names, once the key is checked
ROUTE_ON = f'.if defined({KEY_VARIABLE}) && !streq("${{{KEY_VARIABLE}}}","")'
ROUTE_OFF = f'.if defined({KEY_VARIABLE}) && streq("${{{KEY_VARIABLE}}}","")'


def global_lines() -> list[str]:
    """``global``'s lines: who may use the route (any address unless set) and the two settings
    that would turn it off without a word (an empty key, an empty list of sources) refused."""
    return [
        f'    presetenv {SOURCES_VARIABLE}     "0.0.0.0/0 ::/0"',
        ROUTE_OFF,
        f'    .alert "{KEY_VARIABLE} is set but empty: unset it to turn the preview route off"',
        ".endif",
        f'.if defined({KEY_VARIABLE}) && streq("${{{SOURCES_VARIABLE}}}","")',
        f'    .alert "{SOURCES_VARIABLE} is set but empty (no client could use the preview '
        'route): unset it to allow any client"',
        ".endif",
    ]


def route_lines(colors: Sequence[str]) -> list[str]:
    """A routed frontend's lines (inside ``ROUTE_ON``) that decide a preview request before its
    ``use_backend`` rules: the key compared ("--": a key may begin with "-"), the color taken
    from the header's or else the cookie's last value (``bg_preview_color``: one of
    ``colors``), the key taken out of the request, header and cookie (a key cookie sent twice:
    the request keeps no cookie)."""
    var = PREVIEW_VAR
    key = f'"${{{KEY_VARIABLE}}}"'
    return [
        f"    acl bg_preview_key req.fhdr({PREVIEW_KEY_HEADER}) -m str -- {key}",
        f"    acl bg_preview_key req.cook({PREVIEW_KEY_COOKIE}) -m str -- {key}",
        f'    acl bg_preview_from src "${{{SOURCES_VARIABLE}[*]}}"',
        f"    acl bg_preview_color var({var}) -m str {' '.join(colors)}",
        f"    http-request set-var({var}) req.fhdr({PREVIEW_HEADER}) "
        "if bg_preview_key bg_preview_from",
        f"    http-request set-var({var}) req.cook({PREVIEW_COOKIE}) "
        "if bg_preview_key bg_preview_from !bg_preview_color",
        f"    http-request del-header {PREVIEW_KEY_HEADER}",
        "    http-request replace-header Cookie "
        f"'^(.*?)(?:^|;\\s*){PREVIEW_KEY_COOKIE}=[^;]*(.*)$' '\\1\\2'",
        "    # a key cookie sent twice: the line above took one out; the request keeps no cookie",
        f"    http-request del-header Cookie if {{ req.cook({PREVIEW_KEY_COOKIE}) -m found }}",
    ]


def color_guard(color: str) -> str:
    """The condition term of a preview request naming ``color``."""
    return f"{{ var({PREVIEW_VAR}) -m str {color} }}"
