"""Finding and reading the settings file, and the option values pytest may take for paths.

The file is the one named by ``--bluegreen-config`` (or ``BLUEGREEN_CONFIG``, or the ini's
``bluegreen_config``), else the nearest ``bluegreen.toml`` (else ``pyproject.toml`` with a
``[tool.bluegreen]`` table) in the folder the run starts from or a folder above it, else near
the test paths pytest was given. Never from pytest's rootdir: pytest picks that before it knows
a plugin's options, so ``--runtime-api /run/haproxy/admin.sock`` (the value a separate word)
counts there as a test path and moves it (:func:`misread_values`).
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pytest_bluegreen.errors import UsageError

__all__ = ["LOOKUP", "SettingsError", "find_settings_file", "misread_values"]

# the order the file is looked for, as the docs say it (cli/reference.py)
LOOKUP = (
    "the file named by `--bluegreen-config` (env `BLUEGREEN_CONFIG`, ini `bluegreen_config`); "
    "it wins over any other",
    "`bluegreen.toml` in the folder pytest (or `bluegreen`) runs in, else the `[tool.bluegreen]` "
    "table of its `pyproject.toml`; else the same in the folder above, and so on up",
    "the same from each test path given on the command line up",
)


class SettingsError(UsageError, ValueError):
    """A setting is missing or malformed; one line naming the value and its source."""


def find_settings_file(
    explicit: str | None,
    here: Path,
    source: str = "default",
    *,
    base: Path | None = None,
    near: Sequence[Path] = (),
) -> tuple[Path | None, dict[str, Any]]:
    """The file and its table of settings (empty when there is none).

    ``explicit``: a path an option named (relative to ``base``, default ``here``). Else the
    nearest file in ``here`` or a folder above it, else near each of ``near`` (the test paths
    pytest was given): see :data:`LOOKUP`."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_absolute():
            path = (base or here) / path
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"  # a folder, a device
            raise SettingsError(f"bluegreen: settings file {explicit} {what} (from {source})")
        data = _load_toml(path)
        if path.name == "pyproject.toml":
            table = data.get("tool", {}).get("bluegreen")
            if not isinstance(table, dict):
                raise SettingsError(f"bluegreen: {path} has no [tool.bluegreen] table")
            return path, table
        return path, data
    for start in (here, *near):
        for folder in _upwards(start):
            found = _settings_in(folder)
            if found is not None:
                return found
    return None, {}


def _upwards(start: Path) -> Iterator[Path]:
    folder = start.absolute()
    if not folder.is_dir():
        folder = folder.parent
    yield folder
    yield from folder.parents


def _settings_in(folder: Path) -> tuple[Path, dict[str, Any]] | None:
    candidate = folder / "bluegreen.toml"
    if candidate.is_file():
        return candidate, _load_toml(candidate)
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file():
        table = _load_toml(pyproject).get("tool", {}).get("bluegreen")
        if isinstance(table, dict):
            return pyproject, table
    return None


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, ValueError) as exc:  # TOMLDecodeError, an undecodable byte, an integer
        # of more digits than Python reads (4300)
        raise SettingsError(f"bluegreen: cannot read {path}: {exc}") from None
    except RecursionError:
        raise SettingsError(f"bluegreen: cannot read {path}: nested too deeply") from None


def misread_values(args: Iterable[str], options: Iterable[str], here: Path) -> str | None:
    """The first ``--opt VALUE`` among ``args`` (``options``: the flags that take a value)
    whose VALUE, a separate word, names an existing file or folder outside ``here``: pytest
    took it for a test path when it chose its rootdir and ini file (before it knew the
    option), so both may be another folder's. The line that says so, or None.

    A value inside ``here`` leaves them where they would be; ``--opt=VALUE`` is always safe."""
    flags = set(options)
    words = list(args)
    for flag, value in itertools.pairwise(words):
        if flag not in flags or value.startswith("-"):
            continue
        path = Path(value).expanduser()
        path = path if path.is_absolute() else here / path
        if not path.exists():
            continue
        inside = path.resolve().is_relative_to(here.resolve())
        if not inside:
            return (
                f"bluegreen: write {flag}={value} (with '='): pytest takes a separate value "
                f"that names an existing path for a test path when it chooses its rootdir and "
                f"ini file, before it knows {flag}, so they may be another folder's"
            )
    return None
