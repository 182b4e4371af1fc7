"""``bluegreen init``'s findings and its first one, the colors: a value and where it came from
(:class:`Found`), the plan's guesses and gaps (:class:`Notes`), and which servers of the HAProxy
configuration are which color (:func:`pair_by_name`, else :func:`pair_by_weight`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pytest_bluegreen.errors import UsageError
from pytest_bluegreen.haproxy.configmodel import HaproxyConfig, Proxy, Server
from pytest_bluegreen.settings.parsers import is_color_name

__all__ = [
    "Found",
    "InitError",
    "Notes",
    "Pairing",
    "check_colors",
    "color_of",
    "no_pairs",
    "pair_by_name",
    "pair_by_weight",
    "template_notes",
]

_SEPARATORS = "-_."


class InitError(UsageError):
    """``bluegreen init`` cannot go on: one line, nothing written."""


@dataclass(frozen=True)
class Found:
    """A value for the settings and where it came from (``None``: not found)."""

    value: str | None
    where: str


@dataclass
class Notes:
    guessed: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)


# --- the colors ------------------------------------------------------------------------------


def check_colors(colors: Sequence[str]) -> tuple[str, str]:
    """``--colors a,b``: two distinct names the settings take."""
    names = tuple(c.strip().lower() for c in colors)
    if len(names) != 2 or names[0] == names[1]:
        raise InitError(f"--colors takes two different names, got {','.join(colors)!r}")
    for name in names:
        if not is_color_name(name):  # as the settings take them
            raise InitError(
                f"--colors: {name!r} is not a usable color name (a lowercase letter, then "
                "letters, digits, '-' or '_'; not all or shared)"
            )
    return names[0], names[1]


def color_of(server: str, colors: Sequence[str]) -> str | None:
    """The color a server's name says: ``blue``, ``blue-api``, ``api_blue``, ``blue2``."""
    name = server.lower()
    hits = {
        color
        for color in colors
        if name == color
        or any(name.startswith(color + s) or name.endswith(s + color) for s in _SEPARATORS)
        or re.fullmatch(rf"{re.escape(color)}\d+", name)
    }
    return hits.pop() if len(hits) == 1 else None


def _server_color(server: Server, colors: Sequence[str]) -> str | None:
    """A server's color by its name; a server-template slot's by its template's prefix
    (``api_blue`` makes ``api_blue1``, which names no color by itself)."""
    if server.template is not None:
        return color_of(server.template.rstrip(_SEPARATORS), colors)
    return color_of(server.name, colors)


@dataclass(frozen=True)
class Pairing:
    colors: tuple[str, str]
    servers: Mapping[str, tuple[Server, ...]]  # per color, in the switched backends
    switched: tuple[Proxy, ...]  # backends with servers of both colors
    direct: Mapping[str, tuple[str, ...]]  # per color: backends with that color's servers only


def pair_by_name(config: HaproxyConfig, colors: tuple[str, str], notes: Notes) -> Pairing:
    switched: list[Proxy] = []
    direct: dict[str, list[str]] = {c: [] for c in colors}
    servers: dict[str, list[Server]] = {c: [] for c in colors}
    for backend in config.backends:
        by_color = {
            c: [s for s in backend.servers if _server_color(s, colors) == c] for c in colors
        }
        present = [c for c in colors if by_color[c]]
        if len(present) == 1 and len(by_color[present[0]]) == len(backend.servers):
            direct[present[0]].append(backend.name)
        if len(present) != 2:
            continue
        switched.append(backend)
        for color in colors:
            servers[color] += by_color[color]
        others = [s.name for s in backend.servers if _server_color(s, colors) is None]
        if others:
            notes.guessed.append(
                f"{backend.label}: {', '.join(others)} belong to no color; a switch leaves "
                "them as they are (they keep their share of the traffic)"
            )
    return Pairing(
        colors,
        {c: tuple(s) for c, s in servers.items()},
        tuple(switched),
        {c: tuple(b) for c, b in direct.items()},
    )


def pair_by_weight(config: HaproxyConfig, colors: tuple[str, str], notes: Notes) -> Pairing | None:
    """One backend with two servers, one taking the traffic and one not: the two colors."""
    pairs = []
    for backend in config.backends:
        serving = [s for s in backend.servers if not s.backup]
        if len(serving) == 2 and sum(s.takes_traffic for s in serving) == 1:
            pairs.append((backend, serving))
    if len(pairs) != 1:
        return None
    backend, (first, second) = pairs[0]
    notes.guessed.append(
        f"{colors[0]} = {backend.name}/{first.name} and {colors[1]} = {backend.name}/"
        f"{second.name}: the only backend with one server taking traffic "
        f"({_traffic(first)}) and one not ({_traffic(second)}), in the order of the file; "
        f"their names do not say a color (name them {colors[0]}-*/{colors[1]}-*, or pass "
        f"--colors {first.name},{second.name})"
    )
    return Pairing(
        colors,
        {colors[0]: (first,), colors[1]: (second,)},
        (backend,),
        dict.fromkeys(colors, ()),
    )


def _traffic(server: Server) -> str:
    if server.disabled:
        return "disabled"
    return f"weight {server.weight}"


def no_pairs(config: HaproxyConfig, colors: tuple[str, str]) -> InitError:
    seen = "; ".join(
        f"{b.name} ({', '.join(s.name for s in b.servers)})" for b in config.backends if b.servers
    )
    # what the reader could not read may be where the colors are: said on the same line
    notes = "".join(f"; {note}" for note in config.assumptions)
    return InitError(
        f"no backend has servers of both colors ({colors[0]}-*/{colors[1]}-* by name, or two "
        f"servers of which one takes no traffic); backends: {seen or 'none with servers'}"
        f"{notes}; name the servers after their colors or pass --colors NAME,NAME"
    )


def template_notes(pairing: Pairing, notes: Notes) -> None:
    """Each color's server-template slots: every slot is in its servers, filled or not."""
    templates = [(b, t) for b in pairing.switched for t in b.server_templates]
    for backend, template in templates:
        slots = template.names
        notes.guessed.append(
            f"{backend.label}: server-template {template.prefix} (line {template.line}): "
            f"{len(slots)} slots, {slots[0]} ... {slots[-1]}, filled at run time from "
            f"{template.address}"
        )
    if templates:
        notes.guessed.append(
            "servers lists every server-template slot: a slot no replica fills is empty "
            "(MAINT (resolution)), takes no traffic, and the switch still sets its weight; give "
            "each color at least twice its replicas in slots"
        )
