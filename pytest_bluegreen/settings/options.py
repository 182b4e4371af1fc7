"""One declaration per setting: a field of its group's dataclass, made with :func:`setting`.

The field's name is the key (``drain_timeout``), its class the group (``switching``), and the
metadata says how to parse it, its default, its CLI option and whether the environment
(``BLUEGREEN_<KEY>``) and the settings file may set it. The pytest ini (``bluegreen_<key>``)
holds exactly the keys the settings file does (the ini is another settings file): what a run
decides for itself (``--switch``, ``--deploy``, ``--allow-narrowed`` ...) is in neither. The
option table, the pytest options, the ini twins and the settings reference are all read from
these fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, Protocol

from pytest_bluegreen.frozen import Frozen, frozen

__all__ = ["ENV_PREFIX", "Group", "Option", "options_of", "setting"]

ENV_PREFIX = "BLUEGREEN_"
_META = "bluegreen"


class Group(Protocol):
    """A frozen dataclass of settings; ``GROUP`` names it in docs and errors."""

    GROUP: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, Any]]


@frozen
class Option(Frozen):
    """How one setting is given and parsed."""

    key: str
    group: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    cli: str | None = None
    env: bool = True
    ini: bool = True  # setting() makes it ``file``; only the settings file's own option differs
    file: bool = True
    path: bool = False  # a relative path is relative to the settings file's folder
    flag: bool = False  # a CLI switch without a value
    aliases: tuple[str, ...] = ()  # more spellings of the CLI flag (e.g. "--switch=manual")

    @property
    def env_name(self) -> str:
        return ENV_PREFIX + self.key.upper()

    @property
    def ini_name(self) -> str:
        return "bluegreen_" + self.key

    @property
    def dest(self) -> str:
        return "bluegreen_" + self.key


def setting(
    default: Any,
    parse: Callable[[Any], Any],
    help: str,
    *,
    cli: str | None = None,
    env: bool = True,
    file: bool = True,
    path: bool = False,
    flag: bool = False,
    aliases: tuple[str, ...] = (),
) -> Any:
    """A dataclass field that is a setting (see the module docstring); its ini twin exists
    when ``file`` says the settings file may hold it."""
    spec = {
        "parse": parse,
        "help": help,
        "cli": cli,
        "env": env,
        "ini": file,
        "file": file,
        "path": path,
        "flag": flag,
        "aliases": aliases,
    }
    return dataclasses.field(default=default, metadata={_META: spec})


def options_of(group: type[Any]) -> Iterator[Option]:
    """The settings declared by a group class, in declaration order."""
    for field in dataclasses.fields(group):
        spec = field.metadata.get(_META)
        if spec is not None:
            yield Option(key=field.name, group=group.GROUP, default=field.default, **spec)


def option_table(groups: Iterable[type[Any]]) -> dict[str, Option]:
    """key -> Option over several groups; a key declared twice is a programming error."""
    table: dict[str, Option] = {}
    for group in groups:
        for option in options_of(group):
            if option.key in table:
                raise TypeError(
                    f"setting {option.key!r} is declared by both {table[option.key].group} "
                    f"and {option.group}"
                )
            table[option.key] = option
    return table
