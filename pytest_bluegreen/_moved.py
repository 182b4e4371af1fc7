"""The old import paths of the modules that moved into folders, or were renamed in them
(``record.state`` is ``record.history`` now): for one release each still imports, with a
DeprecationWarning that names the new path.

``pytest_bluegreen/__init__.py`` puts :class:`MovedFinder` on ``sys.meta_path``; it answers
for the old names only: ``import pytest_bluegreen.gaterun`` gives
``pytest_bluegreen.gate.run`` itself, the same module object. An old module some of whose names
moved elsewhere (``state``'s locks to ``haproxy.lock``) is a stand-in that reads each name from
where it is now. Four old modules gave their name to a folder (``haproxy``, ``gate``, ``switch``,
``cli``): those packages hand on the old module's names (``from pytest_bluegreen.haproxy import
RuntimeApi``) with :func:`forward`.

Only the standard library: every session loads this module.
"""

from __future__ import annotations

import importlib
import importlib.abc
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

__all__ = [
    "FOLDERS",
    "MOVED",
    "MOVED_NAMES",
    "MovedFinder",
    "forward",
    "install",
    "new_name",
    "renamed",
]

PACKAGE = "pytest_bluegreen"
# old module -> the module it is now (both under pytest_bluegreen)
MOVED = {
    "aftercare": "gate.aftercare",
    "bake": "judge.bake",
    "blame": "judge.blame",
    "builds": "gate.builds",
    "childprocess": "process.child",
    "cli": "cli.command",
    "closedpipe": "process.closedpipe",
    "compare": "judge.compare",
    "deploystep": "gate.deploy",
    "drill": "cli.drill",
    "exposition": "report.exposition",
    "gate": "gate.decision",
    "gatemetrics": "report.metrics",
    "gaterun": "gate.run",
    "haproxy": "haproxy.runtime",
    "haproxycfg": "haproxy.config",
    "instances": "haproxy.instances",
    "journal": "switch.journal",
    "load": "judge.load",
    "localhaproxy": "local.haproxy",
    "localprometheus": "local.prometheus",
    "notify": "record.notify",
    "outcomes": "gate.outcomes",
    "probe": "switch.probe",
    "promql": "judge.promql",
    "reconcile": "switch.leftout",
    "recording": "record.recording",
    "recovery": "switch.recovery",
    "record.state": "record.history",
    "reporting": "report.allure",
    "scaffold": "init.scaffold",
    "settings.reference": "cli.reference",
    "sidebyside": "judge.sidebyside",
    "signals": "process.signals",
    "significance": "judge.significance",
    "starter": "init.starter",
    "state": "record.history",
    "status": "report.status",
    "report.statusview": "report.statustext",
    "statusview": "report.statustext",
    "switch": "switch.transaction",
    "switch.reconcile": "switch.leftout",
    "thresholds": "judge.thresholds",
    "verdict": "report.verdict",
    "webhooks": "settings.webhooks",
}
PACKAGES = {"starter"}  # the old packages among them
FOLDERS = {"cli", "gate", "haproxy", "switch"}  # the old modules whose name a folder has now
# old module -> {name: the module it is in now}, for the names that left the module it became
_LOCK = "haproxy.lock"  # the gate's lock left record/state.py and haproxy/instances.py
MOVED_NAMES: dict[str, dict[str, str]] = {
    "instances": dict.fromkeys(("HaproxyLock", "SameHaproxy", "lock_keys"), _LOCK),
    "state": dict.fromkeys(
        (
            "GateLock",
            "GroupLock",
            "LockHeld",
            "LockLost",
            "UnsafeLock",
            "address_key",
            "lock_for",
            "lock_for_group",
        ),
        _LOCK,
    ),
}


def new_name(old: str) -> str | None:
    """The dotted name ``old`` (``pytest_bluegreen.gaterun``) has now; None when it did not
    move (or is not ours)."""
    if not old.startswith(f"{PACKAGE}."):
        return None
    rest = old[len(PACKAGE) + 1 :]
    if rest in FOLDERS:
        return None  # the folder's own __getattr__ (forward) hands on the old names
    if rest in MOVED:
        return f"{PACKAGE}.{MOVED[rest]}"
    head, _, tail = rest.partition(".")
    if head in PACKAGES:  # what was in it moved with it
        return f"{PACKAGE}.{MOVED[head]}.{tail}"
    return None


def _warn(old: str, new: str) -> None:
    # the message starts with the package's name, so `-W error:pytest_bluegreen:Deprecation
    # Warning` (and the suite's filterwarnings) fail on our old paths only; stacklevel 3 is
    # whoever imported (the warnings module skips the import system's frames)
    warnings.warn(
        f"{old} is now {new}; the old path goes in the next release",
        DeprecationWarning,
        stacklevel=3,
    )


class _StandIn(ModuleType):
    """An old module some of whose names moved out of the module it became."""

    def __init__(self, placeholder: ModuleType, new: ModuleType, names: dict[str, str]) -> None:
        super().__init__(placeholder.__name__, new.__doc__)
        self.__spec__ = placeholder.__spec__  # what the import system gave the old name
        self.__loader__ = placeholder.__loader__
        self._new = new
        self._names = names

    def __getattr__(self, name: str) -> Any:
        if name in self._names:
            home = f"{PACKAGE}.{self._names[name]}"
            _warn(f"{self.__name__}.{name}", f"{home}.{name}")
            return getattr(importlib.import_module(home), name)
        return getattr(self._new, name)

    def __dir__(self) -> list[str]:
        return sorted({*dir(self._new), *self._names})


class _Alias(importlib.abc.Loader):
    """Loads an old name as the module it became: the import system keeps what
    ``exec_module`` leaves in ``sys.modules``."""

    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: ModuleSpec) -> None:
        return None  # a plain placeholder, replaced in exec_module

    def exec_module(self, module: ModuleType) -> None:
        old = module.__name__
        _warn(old, self.new)
        new = importlib.import_module(self.new)
        names = MOVED_NAMES.get(old.removeprefix(f"{PACKAGE}."))
        sys.modules[old] = new if names is None else _StandIn(module, new, names)


class MovedFinder(importlib.abc.MetaPathFinder):
    """Finds the old names of moved modules, nothing else."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        new = new_name(fullname)
        return None if new is None else ModuleSpec(fullname, _Alias(new))


_FINDER = MovedFinder()


def install() -> None:
    """Put the finder first on ``sys.meta_path``, once: a module of an old package
    (``pytest_bluegreen.starter.checks``) must not be found again, under its old name, in the
    folder of the package it became."""
    if not any(isinstance(finder, MovedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _FINDER)


def forward(package: str, path: Sequence[str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of a folder named as an old module was (``pytest_bluegreen.haproxy``):
    the old module's names, from the module it became, with the warning; the folder's own
    modules (found in ``path``, its ``__path__``) are left to the import system."""
    new = f"{PACKAGE}.{MOVED[package.removeprefix(f'{PACKAGE}.')]}"

    def __getattr__(name: str) -> Any:
        if not name.startswith("__") and not _is_module(path, name):
            module = importlib.import_module(new)
            if hasattr(module, name):
                _warn(f"{package}.{name}", f"{new}.{name}")
                return getattr(module, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def _is_module(path: Sequence[str], name: str) -> bool:
    return any(
        os.path.exists(os.path.join(folder, f"{name}.py"))
        or os.path.isdir(os.path.join(folder, name))
        for folder in path
    )


def renamed(module: str, names: dict[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of a module some of whose names were renamed (issue 23): each old
    name of ``names`` gives the new one's object, with the warning, for one release. The new
    name is in the same module (``"judge_query"``) or a dotted path under the package
    (``"judge.judgement.Judgement"``). Put it under ``if not TYPE_CHECKING:``: the type checker
    sees only the new names.
    """

    def __getattr__(name: str) -> Any:
        if name in names:
            home, _, new = names[name].rpartition(".")
            home = f"{PACKAGE}.{home}" if home else module
            _warn(f"{module}.{name}", f"{home}.{new}")
            return getattr(importlib.import_module(home), new)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
