"""Every import in the repository names the module that defines what it imports (issue 23):
no old path of a module that moved into a folder (``pytest_bluegreen/_moved.py``: those warn
for one release; tests/layout/test_moved.py tries them on purpose), and no name borrowed from a
module that only imports it (a module split in parts hands its parts' names on, for its old path's
sake: ``haproxy.runtime`` the rows of ``haproxy.answers``). The faces are the exceptions:
``pytest_bluegreen.testing`` (what a check author imports) and a folder's ``__init__`` that
lists the name in its ``__all__`` (``pytest_bluegreen.settings``).

Read with ``ast``, nothing imported: the package (the starter templates too), checks/,
conftest.py, scripts/, benchmarks/, tests/ and the Python blocks of the docs. A name read as
an attribute of a module (``transaction.plan``) is not checked: only what an import names."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from pytest_bluegreen import testing
from pytest_bluegreen._moved import FOLDERS, MOVED, PACKAGE, new_name

ROOT = Path(__file__).resolve().parents[2]
FACES = {PACKAGE, f"{PACKAGE}.testing"}
ON_PURPOSE = {Path("tests/layout/test_moved.py")}  # the old paths, tried
CODE = ("pytest_bluegreen", "checks", "scripts", "benchmarks", "tests")
DOCS = ("README.md", "CONTRIBUTING.md", "docs")
PYTHON_BLOCK = re.compile(r"^```(?:python|py)\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass
class Names:
    """What a module of ours holds at its top level: the names it defines, those it imports
    (name -> the module and the name there), its ``__all__``."""

    defined: set[str] = field(default_factory=set)
    imported: dict[str, tuple[str, str]] = field(default_factory=dict)
    exported: set[str] = field(default_factory=set)
    is_package: bool = False


def source_of(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def absolute(module: str | None, level: int, here: str, is_package: bool) -> str:
    """The dotted name ``from {'.' * level}{module} import`` means in ``here``."""
    if not level:
        return module or ""
    parts = here.split(".") if is_package else here.split(".")[:-1]
    parts = parts[: len(parts) - level + 1]
    return ".".join([*parts, *([module] if module else [])])


@cache
def names_of(module: str) -> Names:
    path = source_of(module)
    if path is None:
        return Names()
    names = Names(is_package=path.name == "__init__.py")
    _top_level(ast.parse(path.read_text()).body, module, names)
    return names


def _top_level(body: list[ast.stmt], module: str, names: Names) -> None:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.defined.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.defined.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            is_all = any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)
            if is_all and isinstance(node.value, ast.List | ast.Tuple):
                names.exported = {
                    e.value
                    for e in node.value.elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str)
                }
        elif isinstance(node, ast.ImportFrom):
            source = absolute(node.module, node.level, module, names.is_package)
            for alias in node.names:
                names.imported[alias.asname or alias.name] = (source, alias.name)
        elif isinstance(node, ast.If | ast.Try):
            for part in (node.body, node.orelse, getattr(node, "finalbody", [])):
                _top_level(part, module, names)
            for handler in getattr(node, "handlers", []):
                _top_level(handler.body, module, names)


def home_of(module: str, name: str) -> str:
    """The module of ours that defines ``name``, followed from ``module`` through imports."""
    for _ in range(20):
        names = names_of(module)
        if name in names.defined or name not in names.imported:
            return module
        source, there = names.imported[name]
        if not source.startswith(PACKAGE) or source_of(f"{source}.{there}"):
            return module
        module, name = source, there
    return module


def problem(module: str, name: str | None) -> str | None:
    """What is wrong with importing ``name`` from ``module`` (``import module``: None), if
    anything."""
    if module != PACKAGE and not module.startswith(f"{PACKAGE}."):
        return None
    return old_path(module, name) or handed_on(module, name)


def old_path(module: str, name: str | None) -> str | None:
    for old in (module, f"{module}.{name}" if name else None):
        if old and new_name(old):
            return f"{old} is an old path: {new_name(old)}"
    folder = module.removeprefix(f"{PACKAGE}.")
    if name is None or folder not in FOLDERS or source_of(f"{module}.{name}"):
        return None
    if name not in names_of(module).defined:
        now = home_of(f"{PACKAGE}.{MOVED[folder]}", name)
        return f"{module}.{name} is an old path (forwarded): {now}.{name}"
    return None


def handed_on(module: str, name: str | None) -> str | None:
    if name is None or module in FACES or source_of(f"{module}.{name}"):
        return None  # a module, the face, or a module of a folder
    names = names_of(module)
    if name in names.defined or (names.is_package and name in names.exported):
        return None
    home = home_of(module, name)
    return f"{module}.{name} is handed on from {home}.{name}" if home != module else None


def problems(code: str, here: str = "", is_package: bool = False) -> Iterator[str]:
    """Each import of ``code`` (the module ``here``) that is not from the module that defines
    what it imports, as ``line: what``."""
    imports = [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Import | ast.ImportFrom)]
    for node in sorted(imports, key=lambda n: n.lineno):
        if isinstance(node, ast.Import):
            found = [problem(alias.name, None) for alias in node.names]
        else:
            module = absolute(node.module, node.level, here, is_package)
            found = [problem(module, alias.name) for alias in node.names]
        yield from (f"{node.lineno}: {what}" for what in found if what)


def module_of(path: Path) -> tuple[str, bool]:
    parts = path.relative_to(ROOT).with_suffix("").parts
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def sources() -> Iterator[tuple[str, str, str, bool]]:
    """(where, code, module, is_package) of every Python file and docs block."""
    paths = [ROOT / "conftest.py"]
    for folder in CODE:
        paths += sorted((ROOT / folder).rglob("*.py"))
    for path in paths:
        if "__pycache__" in path.parts or path.relative_to(ROOT) in ON_PURPOSE:
            continue
        module, is_package = module_of(path)
        yield str(path.relative_to(ROOT)), path.read_text(), module, is_package
    docs = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for path in docs:
        text = path.read_text()
        for block in PYTHON_BLOCK.finditer(text):
            line = text.count("\n", 0, block.start(1)) + 1
            yield f"{path.relative_to(ROOT)} (block at line {line})", block.group(1), "", False


def test_every_import_names_the_module_that_defines_it() -> None:
    found = [
        f"{where}:{what}"
        for where, code, module, is_package in sources()
        for what in problems(code, module, is_package)
    ]
    assert found == [], "\n".join(found)


def test_the_face_names_the_module_each_name_lives_in() -> None:
    """``pytest_bluegreen.testing`` loads each name from where it is defined."""
    found = {
        name: problem(f"{PACKAGE}.{module}", there)
        for name, (module, there) in testing.EXPORTS.items()
    }
    assert {name: said for name, said in found.items() if said} == {}


def test_the_files_and_blocks_are_read() -> None:
    read = [where for where, *_ in sources()]
    assert len(read) > 200
    for sample in ("conftest.py", "pytest_bluegreen/init/starter/checks/conftest.py"):
        assert sample in read
    assert any(where.startswith("scripts/") for where in read)
    assert any(where.startswith("benchmarks/") for where in read)
    assert any(where.startswith("docs/") and "(block at line" in where for where in read)
    assert "tests/layout/test_moved.py" not in read


@pytest.mark.parametrize(
    ("code", "said"),
    [
        pytest.param(
            "from pytest_bluegreen.gaterun import GateRun",
            "pytest_bluegreen.gaterun is an old path: pytest_bluegreen.gate.run",
            id="old-module",
        ),
        pytest.param(
            "import pytest_bluegreen.haproxycfg as config",
            "pytest_bluegreen.haproxycfg is an old path: pytest_bluegreen.haproxy.config",
            id="import-old-module",
        ),
        pytest.param(
            "from pytest_bluegreen import gaterun",
            "pytest_bluegreen.gaterun is an old path",
            id="old-module-from-the-package",
        ),
        pytest.param(
            "from pytest_bluegreen.haproxy import RuntimeApi",
            "pytest_bluegreen.haproxy.RuntimeApi is an old path (forwarded): "
            "pytest_bluegreen.haproxy.runtime.RuntimeApi",
            id="forwarded-by-a-folder",
        ),
        pytest.param(
            "from pytest_bluegreen.haproxy.runtime import RuntimeApi, ServerRef",
            "pytest_bluegreen.haproxy.runtime.ServerRef is handed on from "
            "pytest_bluegreen.haproxy.answers.ServerRef",
            id="handed-on",
        ),
        pytest.param(
            "def f():\n    from pytest_bluegreen.haproxy.lock import GateLock",
            "pytest_bluegreen.haproxy.lock.GateLock is handed on from "
            "pytest_bluegreen.haproxy.lockfile.GateLock",
            id="lazy",
        ),
    ],
)
def test_the_check_sees_an_old_path_and_a_handed_on_name(code: str, said: str) -> None:
    [found] = problems(code)
    assert said in found


@pytest.mark.parametrize(
    "code",
    [
        "from pytest_bluegreen.testing import ServerRef, eventually",  # the face
        "from pytest_bluegreen.settings import Settings, resolve",  # a folder's __all__
        "from pytest_bluegreen.haproxy.answers import ServerRef",  # where it is defined
        "from pytest_bluegreen.switch import transaction as switch",  # a folder's module
        "import pytest_bluegreen.haproxy.runtime",
        "from pytest_bluegreen import __version__",
        "from os import path",
    ],
)
def test_the_check_passes_an_import_from_the_home(code: str) -> None:
    assert list(problems(code)) == []


def test_a_relative_import_is_read_where_it_is_written() -> None:
    code = "from .runtime import ServerRef\nfrom ..gaterun import GateRun\n"
    found = list(problems(code, "pytest_bluegreen.haproxy.instances"))
    assert [f.split(": ", 1)[0] for f in found] == ["1", "2"]
    assert "pytest_bluegreen.haproxy.runtime.ServerRef is handed on from" in found[0]
    assert "pytest_bluegreen.gaterun is an old path" in found[1]
