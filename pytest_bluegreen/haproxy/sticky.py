"""Sticky users during a canary: while the new color takes a share of the routed traffic
(server weights, e.g. blue 95 / green 5), a user who got one color keeps it until the canary
ends, by HAProxy's persistence cookie on the switched backends.

Persistence is on only while the process variable :data:`CANARY_VAR` holds a canary's id
(``ignore-persist unless`` it does): HAProxy honours a persistence cookie for a server in DRAIN
state or at weight 0, so with it on, a switch that drains the old color and sets it to weight 0
would never move its sticky users. The gate sets the variable for the canary
(:meth:`~.runtime.RuntimeApi.set_sticky`) and clears it before the full switch or an abort,
which then move everyone. A reload or restart of HAProxy forgets it: persistence off, the safe
side.

Each canary has its own id (:func:`new_canary_id`, the same on every instance of a group), and
a user's sticky cookie counts only with the current canary's in :data:`CANARY_COOKIE`: the
sticky cookie is a session cookie naming a color, and one kept from an earlier canary (say
``green``, from an aborted one) would otherwise send the user to that color at the next
canary, whatever its weights. A request without the current id has its sticky cookie taken out
of its ``Cookie`` header before HAProxy reads it (the backend's ``http-request`` rules run
before its cookie persistence), so the weights pick its color, HAProxy hands it a fresh sticky
cookie and the backend the current id. HAProxy gives no cookie where ``ignore-persist``
applies, which is why the stale cookie is taken out rather than ignored.

The cookie names a color, not a server (``bluegreen_sticky=green``): one cookie keeps a user on
one color for the API and the frontend alike (the two backends share it). Colors as
``server-template`` slots (Docker Swarm, ``BG_REPLICAS``) are the exception: one color's
cookie would send every sticky user of the color to its first slot, so there each slot has its
own cookie (``dynamic``: a hash of its address and :data:`DYNAMIC_KEY`, the same on every
instance) and each backend its own cookie name (:data:`SLOT_COOKIES`), as a slot's cookie means
nothing to the other backend. There a request without the current id also has the other
backend's slot cookie expired in its answer: the id it is given would make that one count.
Neither cookie is a secret: during a canary both colors are
public, a client that names one only picks what the weights may give it anyway, and the id is
every user's of the canary.

The lines below are the shipped ``haproxy.cfg``'s (a test keeps them one) and what ``bluegreen
init`` can propose for a user's switched backends.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping

__all__ = [
    "CANARY_COOKIE",
    "CANARY_VAR",
    "COOKIE",
    "DYNAMIC_KEY",
    "SLOT_COOKIES",
    "backend_lines",
    "is_canary_id",
    "new_canary_id",
    "secure_line",
    "server_option",
    "shipped_lines",
]

COOKIE = "bluegreen_sticky"
# server-template slots: one cookie per switched backend (its value names a slot, not a color)
SLOT_COOKIES: Mapping[str, str] = {
    "api_backend": f"{COOKIE}_api",
    "frontend_backend": f"{COOKIE}_frontend",
}
# the current canary's id, given with a fresh sticky cookie: a sticky cookie counts only with it
CANARY_COOKIE = "bluegreen_canary"
# the process-wide variable the gate sets to a canary's id while it runs (anything else, or
# none: persistence off)
CANARY_VAR = "proc.bg_canary"
# the key of the slots' dynamic cookies: not a secret (it hides nothing a client could use), the
# same on every HAProxy of a group, so a user keeps the slot whichever instance answers
DYNAMIC_KEY = "bluegreen-sticky"

# a canary's id: "c" and hex digits (HAProxy's rules test the "c"; the Runtime API's ``set
# var`` takes it inside str() unquoted, so nothing else)
_ID_PREFIX = "c"
_ID = re.compile(r"c[0-9a-f]{1,64}")
# the request's canary id is not the current one (set in the request phase: the response
# phase has no req.cook)
_STALE = "txn.bg_canary"

# insert: HAProxy sets it (the colors never see it: indirect); nocache: a shared cache does
# not hand one user's cookie to the next; httponly: no script reads it. "secure" is added on
# the TLS frontend only (secure_line): the plain-HTTP entries (:20010, :20011) must keep it
_OPTIONS = "insert indirect nocache httponly"


def new_canary_id() -> str:
    """A fresh canary id: ``c`` and 12 random hex digits."""
    return _ID_PREFIX + secrets.token_hex(6)


def is_canary_id(value: str) -> bool:
    """Whether ``value`` is a canary id (what :func:`new_canary_id` makes)."""
    return _ID.fullmatch(value) is not None


def _take_out(name: str) -> str:
    """The ``Cookie`` header without its ``name`` cookie, the others kept as they were (the
    first of them, or the one after a removed one, without a leading ``;``). No ``\\s*``
    before a ``;``: a long run of spaces would make the match quadratic (a client could burn
    HAProxy's CPU with one long header)."""
    one = rf"\s*{name}\s*=[^;]*"
    return f"'^(?:{one}(?:;\\s*|$)(.*)|(.*?);{one}(.*))$' '\\1\\2\\3'"


def _left_over(name: str, condition: str) -> str:
    """A ``name`` cookie the removal above did not take (sent twice, or after a ``,`` that
    HAProxy also reads as a separator): the whole ``Cookie`` header goes, as the preview route
    does with a key sent twice (only a made-up request has one)."""
    return f"    http-request del-header Cookie {condition} {{ req.cook({name}) -m found }}"


def _head() -> list[str]:
    return [
        f"    acl bg_canary var({CANARY_VAR}) -m beg {_ID_PREFIX}",
        f"    acl bg_canary_held req.cook({CANARY_COOKIE}),strcmp({CANARY_VAR}) eq 0",
        "    ignore-persist unless bg_canary",
        f"    http-request set-var({_STALE}) var({CANARY_VAR}) if bg_canary !bg_canary_held",
    ]


def _cookie(backend: str, *, slots: bool) -> list[str]:
    stale = f"if {{ var({_STALE}) -m found }}"
    if slots:
        name = SLOT_COOKIES[backend]
        # the other backend's slot cookie is as stale, and the id given here would make it
        # count there: it goes (expired), and that backend gives a fresh one
        others = sorted(c for b, c in SLOT_COOKIES.items() if b != backend)
        return [
            f"    cookie {name} {_OPTIONS} dynamic",
            f"    dynamic-cookie-key {DYNAMIC_KEY}",
            f"    http-request replace-header Cookie {_take_out(name)} {stale}",
            _left_over(name, stale),
            *(
                f'    http-response add-header Set-Cookie "{other}=; Max-Age=0; Path=/; HttpOnly" '
                f"{stale}"
                for other in others
            ),
        ]
    return [
        f"    cookie {COOKIE} {_OPTIONS}",
        f"    http-request replace-header Cookie {_take_out(COOKIE)} {stale}",
        _left_over(COOKIE, stale),
    ]


def _tail() -> list[str]:
    given = f"{CANARY_COOKIE}=%[var({_STALE})]; Path=/; HttpOnly"
    return [
        f"    http-request replace-header Cookie {_take_out(CANARY_COOKIE)}",
        f"    http-request del-header Cookie if {{ req.cook({CANARY_COOKIE}) -m found }}",
        "    http-request del-header Cookie if { req.fhdr_cnt(cookie) eq 1 } "
        "{ req.fhdr(cookie) -m len 0 }",
        f'    http-response add-header Set-Cookie "{given}" if {{ var({_STALE}) -m found }}',
    ]


def backend_lines(backend: str, *, slots: bool = False) -> list[str]:
    """A switched backend's lines, before its ``server`` lines: the rule that ignores the
    persistence cookie unless a canary runs; the cookie (for ``server-template`` slots with
    ``slots``: the backend's own, dynamic), taken out of a request without the current
    canary's id; the id given to such a request's client, and taken out of every request (the
    colors never hear it)."""
    return [*_head(), *_cookie(backend, slots=slots), *_tail()]


def shipped_lines(backend: str) -> list[str]:
    """:func:`backend_lines` as the shipped ``haproxy.cfg`` has them: both variants, the slots'
    while ``BG_REPLICAS`` is defined."""
    return [
        *_head(),
        ".if defined(BG_REPLICAS)",
        *_cookie(backend, slots=True),
        ".else",
        *_cookie(backend, slots=False),
        ".endif",
        *_tail(),
    ]


def server_option(color: str) -> str:
    """What a ``server`` line of ``color`` adds (not a ``server-template``: its slots' cookies
    are dynamic)."""
    return f"cookie {color}"


def secure_line() -> str:
    """A TLS frontend's line that marks the sticky cookies and the canary's id ``Secure`` (never
    sent over plain HTTP): HAProxy inserts the sticky ones after every ``http-response`` rule,
    so ``http-after-response``."""
    names = "|".join(sorted({COOKIE, CANARY_COOKIE, *SLOT_COOKIES.values()}))
    return f"    http-after-response replace-header Set-Cookie '^((?:{names})=.*)$' '\\1; Secure'"
