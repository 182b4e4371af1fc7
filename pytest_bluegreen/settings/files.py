"""Finding and reading the settings file: ``bluegreen.toml``, else ``[tool.bluegreen]`` in
``pyproject.toml``, in the rootdir, unless a path is given."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pytest_bluegreen.errors import UsageError

__all__ = ["SettingsError", "find_settings_file"]


class SettingsError(UsageError, ValueError):
    """A setting is missing or malformed; one line naming the value and its source."""


def find_settings_file(
    explicit: str | None, rootdir: Path, source: str = "default"
) -> tuple[Path | None, dict[str, Any]]:
    """The file and its table of settings (empty when there is none)."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_absolute():
            path = rootdir / path
        if not path.is_file():
            raise SettingsError(
                f"bluegreen: settings file {explicit} does not exist (from {source})"
            )
        data = _load_toml(path)
        if path.name == "pyproject.toml":
            table = data.get("tool", {}).get("bluegreen")
            if not isinstance(table, dict):
                raise SettingsError(f"bluegreen: {path} has no [tool.bluegreen] table")
            return path, table
        return path, data
    candidate = rootdir / "bluegreen.toml"
    if candidate.is_file():
        return candidate, _load_toml(candidate)
    pyproject = rootdir / "pyproject.toml"
    if pyproject.is_file():
        table = _load_toml(pyproject).get("tool", {}).get("bluegreen")
        if isinstance(table, dict):
            return pyproject, table
    return None, {}


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"bluegreen: cannot read {path}: {exc}") from None
