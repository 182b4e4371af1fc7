"""Sticky users during a canary: while the new color takes a share of the routed traffic
(server weights, e.g. blue 95 / green 5), a user who got one color keeps it until the canary
ends, by HAProxy's persistence cookie on the switched backends.

Persistence is on only while the process variable :data:`CANARY_VAR` is 1 (``ignore-persist
unless`` it is): HAProxy honours a persistence cookie for a server in DRAIN state or at weight
0, so with it on, a switch that drains the old color and sets it to weight 0 would never move
its sticky users. The gate sets the variable for the canary
(:meth:`~.runtime.RuntimeApi.set_sticky`) and clears it before the full switch or an abort,
which then move everyone. A reload or restart of HAProxy forgets it: persistence off, the safe
side.

The cookie names a color, not a server (``bluegreen_sticky=green``): one cookie keeps a user on
one color for the API and the frontend alike (the two backends share it). Colors as
``server-template`` slots (Docker Swarm, ``BG_REPLICAS``) are the exception: one color's
cookie would send every sticky user of the color to its first slot, so there each slot has its
own cookie (``dynamic``: a hash of its address and :data:`DYNAMIC_KEY`, the same on every
instance) and each backend its own cookie name (:data:`SLOT_COOKIES`), as a slot's cookie means
nothing to the other backend. The cookie is no secret: during a canary both colors are public,
and a client that names one only picks what the weights may give it anyway.

The lines below are the shipped ``haproxy.cfg``'s (a test keeps them one) and what ``bluegreen
init`` can propose for a user's switched backends.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "CANARY_VAR",
    "COOKIE",
    "DYNAMIC_KEY",
    "SLOT_COOKIES",
    "backend_lines",
    "secure_line",
    "server_option",
]

COOKIE = "bluegreen_sticky"
# server-template slots: one cookie per switched backend (its value names a slot, not a color)
SLOT_COOKIES: Mapping[str, str] = {
    "api_backend": f"{COOKIE}_api",
    "frontend_backend": f"{COOKIE}_frontend",
}
# the process-wide variable the gate sets to 1 while a canary runs (any other value, or none:
# persistence off)
CANARY_VAR = "proc.bg_canary"
# the key of the slots' dynamic cookies: not a secret (it hides nothing a client could use), the
# same on every HAProxy of a group, so a user keeps the slot whichever instance answers
DYNAMIC_KEY = "bluegreen-sticky"

# insert: HAProxy sets it (the colors never see it: indirect); nocache: a shared cache does
# not hand one user's cookie to the next; httponly: no script reads it. "secure" is added on
# the TLS frontend only (secure_line): the plain-HTTP entries (:20010, :20011) must keep it
_OPTIONS = "insert indirect nocache httponly"


def backend_lines(backend: str, *, slots: bool = False) -> list[str]:
    """A switched backend's lines, before its ``server`` lines: the persistence cookie (for
    ``server-template`` slots with ``slots``: the backend's own, dynamic) and the rule that
    ignores it unless a canary runs."""
    if slots:
        cookie = [
            f"    cookie {SLOT_COOKIES[backend]} {_OPTIONS} dynamic",
            f"    dynamic-cookie-key {DYNAMIC_KEY}",
        ]
    else:
        cookie = [f"    cookie {COOKIE} {_OPTIONS}"]
    return [*cookie, f"    ignore-persist unless {{ var({CANARY_VAR}) -m int 1 }}"]


def server_option(color: str) -> str:
    """What a ``server`` line of ``color`` adds (not a ``server-template``: its slots' cookies
    are dynamic)."""
    return f"cookie {color}"


def secure_line() -> str:
    """A TLS frontend's line that marks the sticky cookies ``Secure`` (never sent over plain
    HTTP): HAProxy inserts them after every ``http-response`` rule, so ``http-after-response``."""
    names = "|".join(sorted({COOKIE, *SLOT_COOKIES.values()}))
    return f"    http-after-response replace-header Set-Cookie '^((?:{names})=.*)$' '\\1; Secure'"
