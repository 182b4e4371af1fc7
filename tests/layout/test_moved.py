"""The old import paths of the modules that moved into folders (issue 23) still import, for
one release, as the same objects, with a DeprecationWarning naming the new path
(``pytest_bluegreen/_moved.py``); the package's own code, checks and templates use none."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
from pathlib import Path

import pytest

import pytest_bluegreen
from pytest_bluegreen._moved import FOLDERS, MOVED, MOVED_NAMES, new_name

ROOT = Path(__file__).resolve().parents[2]
OLD_PATH = r"pytest_bluegreen\.\S+ is now pytest_bluegreen\.\S+; the old path goes"


def forget(monkeypatch: pytest.MonkeyPatch, old: str) -> None:
    """As if ``old`` had never been imported in this process (the warning comes once)."""
    monkeypatch.delitem(sys.modules, old, raising=False)
    parent, _, leaf = old.rpartition(".")
    if parent in sys.modules:
        monkeypatch.delattr(sys.modules[parent], leaf, raising=False)


def test_new_names() -> None:
    assert new_name("pytest_bluegreen.gaterun") == "pytest_bluegreen.gate.run"
    assert new_name("pytest_bluegreen.settings.reference") == "pytest_bluegreen.cli.reference"
    assert new_name("pytest_bluegreen.starter.checks") == "pytest_bluegreen.init.starter.checks"
    assert new_name("pytest_bluegreen.settings") is None  # did not move
    assert new_name("pytest_bluegreen.haproxy") is None  # a folder now (it forwards)
    assert new_name("pytest_bluegreen.gate.run") is None  # a new name is not an old one
    assert new_name("pytest_bluegreenish.gaterun") is None
    assert new_name("other.gaterun") is None


@pytest.mark.parametrize("old", sorted(set(MOVED) - FOLDERS))
def test_an_old_module_path_gives_the_new_module_and_warns(
    old: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    forget(monkeypatch, f"pytest_bluegreen.{old}")
    new = importlib.import_module(f"pytest_bluegreen.{MOVED[old]}")
    with pytest.warns(DeprecationWarning, match=OLD_PATH) as caught:
        module = importlib.import_module(f"pytest_bluegreen.{old}")
    assert str(caught[0].message).startswith(
        f"pytest_bluegreen.{old} is now pytest_bluegreen.{MOVED[old]};"
    )
    if old in MOVED_NAMES:  # a stand-in: every name the same object, wherever it is now
        names = [n for n in dir(new) if not n.startswith("__")]
        assert all(getattr(module, n) is getattr(new, n) for n in names)
        for name, home in MOVED_NAMES[old].items():
            with pytest.warns(DeprecationWarning, match=f"{name} is now pytest_bluegreen.{home}"):
                found = getattr(module, name)
            assert found is getattr(importlib.import_module(f"pytest_bluegreen.{home}"), name)
    else:
        assert module is new


def test_from_import_of_an_old_module_warns_where_it_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    forget(monkeypatch, "pytest_bluegreen.gaterun")
    with pytest.warns(DeprecationWarning, match=OLD_PATH) as caught:
        from pytest_bluegreen.gaterun import GateRun  # type: ignore[import-not-found]  # noqa: PLC0415
    from pytest_bluegreen.gate.run import GateRun as now  # noqa: PLC0415

    assert GateRun is now
    assert sys.modules["pytest_bluegreen.gaterun"] is sys.modules["pytest_bluegreen.gate.run"]
    assert caught[0].filename == __file__  # the warning points at the import, not at _moved


# (a folder named as the old module was, an old name of that module, the module it is in now)
FORWARDED = [  # every folder of FOLDERS
    ("haproxy", "RuntimeApi", "haproxy.runtime"),
    ("haproxy", "supported_version", "haproxy.runtime"),
    ("gate", "decide", "gate.decision"),
    ("gate", "Verdict", "gate.decision"),
    ("switch", "apply", "switch.transaction"),
    ("switch", "live_color", "switch.transaction"),
    ("cli", "main", "cli.command"),
]


def test_every_folder_named_as_an_old_module_is_tried() -> None:
    assert {folder for folder, _, _ in FORWARDED} == FOLDERS


@pytest.mark.parametrize(("folder", "name", "home"), FORWARDED)
def test_a_folder_hands_on_the_old_modules_names(folder: str, name: str, home: str) -> None:
    namespace: dict[str, object] = {}
    with pytest.warns(DeprecationWarning, match=OLD_PATH) as caught:
        exec(f"from pytest_bluegreen.{folder} import {name}", namespace)  # noqa: S102
    assert namespace[name] is getattr(importlib.import_module(f"pytest_bluegreen.{home}"), name)
    assert str(caught[0].message).startswith(
        f"pytest_bluegreen.{folder}.{name} is now pytest_bluegreen.{home}.{name};"
    )


def test_an_old_packages_modules_moved_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    forget(monkeypatch, "pytest_bluegreen.starter")
    forget(monkeypatch, "pytest_bluegreen.starter.checks")
    with pytest.warns(DeprecationWarning, match=OLD_PATH):
        module = importlib.import_module("pytest_bluegreen.starter.checks")
    assert module is importlib.import_module("pytest_bluegreen.init.starter.checks")


def test_a_folders_own_modules_import_without_a_warning(recwarn: pytest.WarningsRecorder) -> None:
    from pytest_bluegreen.gate import decision, run  # noqa: PLC0415
    from pytest_bluegreen.haproxy import config  # noqa: PLC0415

    assert isinstance(decision, types.ModuleType)
    assert isinstance(run, types.ModuleType)
    assert config.__name__ == "pytest_bluegreen.haproxy.config"
    assert [w for w in recwarn if issubclass(w.category, DeprecationWarning)] == []


def test_a_name_the_old_module_never_had_is_an_error() -> None:
    with pytest.raises(ImportError, match="no_such_name"):
        exec("from pytest_bluegreen.haproxy import no_such_name", {})  # noqa: S102
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("pytest_bluegreen.no_such_module")
    assert not hasattr(pytest_bluegreen.gate, "no_such_name")


# every module of the package by its new name, the plugin as pytest loads it, the checks and
# the templates: none of them may use an old path (the suite's filterwarnings fails the tests
# that do; this fails a module no test imports)
IMPORT_EVERYTHING = """
import importlib, pkgutil, sys
sys.path.insert(0, sys.argv[1])
import checks, pytest_bluegreen
for package in (pytest_bluegreen, checks):  # the templates are pytest_bluegreen.init.starter.checks
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        importlib.import_module(info.name)
print("imported", len(sys.modules))
"""


def test_the_package_the_checks_and_the_templates_use_no_old_path() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error:pytest_bluegreen:DeprecationWarning",
            "-c",
            IMPORT_EVERYTHING,
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("imported")


def test_an_old_path_fails_under_the_same_filter() -> None:
    """The filter above does catch our warning (the test above could not pass vacuously)."""
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error:pytest_bluegreen:DeprecationWarning",
            "-c",
            "import pytest_bluegreen.gaterun",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "DeprecationWarning: pytest_bluegreen.gaterun is now pytest_bluegreen.gate.run" in (
        done.stderr
    )


# (a module, a name it had, the name it has now): renamed in their module (issue 23's names)
RENAMED = [
    ("switch.serverstate", "StateFileError", "ServerStateFileError"),
    ("switch.transaction", "StateFileError", "ServerStateFileError"),
    ("engines.serving", "judge", "judge_serving"),
    ("judge.promql", "judge", "judge_query"),
    ("judge.queries", "judge", "judge_query"),
    ("judge.bake", "IntervalVerdict", "judge.judgement.Judgement"),
]


@pytest.mark.parametrize(("module", "old", "new"), RENAMED)
def test_a_renamed_name_gives_the_new_one_and_warns(module: str, old: str, new: str) -> None:
    home = importlib.import_module(f"pytest_bluegreen.{module}")
    there, _, new = new.rpartition(".")  # a dotted new name: in another module
    now = importlib.import_module(f"pytest_bluegreen.{there or module}")
    namespace: dict[str, object] = {}
    with pytest.warns(DeprecationWarning, match=OLD_PATH) as caught:
        exec(f"from pytest_bluegreen.{module} import {old}", namespace)  # noqa: S102
    assert namespace[old] is getattr(now, new)
    assert str(caught[0].message).startswith(
        f"pytest_bluegreen.{module}.{old} is now pytest_bluegreen.{there or module}.{new};"
    )
    with pytest.warns(DeprecationWarning, match=OLD_PATH) as caught:
        found = getattr(home, old)
    assert found is getattr(now, new)
    assert caught[0].filename == __file__  # the warning points at the use, not at _moved
    assert old not in home.__all__
    assert new in now.__all__
