"""The package's layout (issue 23): rooms in one order, every import running down it, no
circle, no crowded folder.

The order is written once, here (``ROOMS``); ``docs/architecture.md`` lists the same rooms in
the same order (a test below reads its table). A room is a folder of ``pytest_bluegreen`` or a
group of modules at its root. Every import counts, wherever it is written: at the top of a
module, inside a function (a lazy import is a dependency all the same) and under
``if TYPE_CHECKING:`` (so is a type). The templates ``bluegreen init`` copies into a user's
project (``init/starter/checks``) are the user's code, not the package's.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pytest_bluegreen"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"
NAME = "pytest_bluegreen"
TEMPLATES = PACKAGE / "init" / "starter" / "checks"
MOST_MODULES = 15  # in any one folder, the package's root included

# bottom to top: a room imports its own modules and the rooms below it, never one above
ROOMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",
        ("__init__", "_moved", "errors", "extras", "redaction", "envfile", "frozen", "eventually"),
    ),
    ("process", ()),
    ("haproxy", ()),
    ("judge", ()),
    ("settings", ()),
    ("record", ()),
    ("engines", ()),
    ("switch", ()),
    ("gate", ()),
    ("report", ()),
    ("init", ()),
    ("local", ()),
    ("face", ("hookspecs", "keys", "httpclient", "fixtures", "gateplugin", "plugin")),
    ("contrib", ()),
    ("cli", ()),
    ("public", ("testing",)),  # what check authors import: the checks, the starter, the docs
)
RANK = {room: rank for rank, (room, _) in enumerate(ROOMS)}
AT_THE_ROOT = {module: room for room, modules in ROOMS for module in modules}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module (a name imported from a package: the package)
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for path in sorted(PACKAGE.rglob("*.py"))
        if TEMPLATES not in path.parents and "__pycache__" not in path.parts
    }


MODULES = package_modules()


def imports_of(module: str, path: Path) -> Iterator[Import]:
    """Every import of ours in the module, lazy and TYPE_CHECKING ones included."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == NAME or alias.name.startswith(f"{NAME}."):
                    yield Import(module, known(alias.name), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: None if is_package else -1]
                base = base[: len(base) - node.level + 1]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            if origin != NAME and not origin.startswith(f"{NAME}."):
                continue
            for alias in node.names:  # a module imported from its package, or a name
                full = f"{origin}.{alias.name}"
                yield Import(module, full if full in MODULES else known(origin), node.lineno)


def known(name: str) -> str:
    """The module of ours ``name`` is, or the closest package of ours above it."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    assert name in MODULES, f"{name}: no such module in the package"
    return name


EDGES = [edge for module, path in MODULES.items() for edge in imports_of(module, path)]


def room_of(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts:
        return AT_THE_ROOT["__init__"]
    if len(parts) == 1 and (PACKAGE / f"{parts[0]}.py").exists():
        return AT_THE_ROOT.get(parts[0], f"? {parts[0]}.py at the root")
    return parts[0]


def test_every_module_is_in_a_room() -> None:
    rooms = {room_of(module) for module in MODULES}
    assert sorted(rooms - set(RANK)) == []  # a new module at the root, a new folder: place it
    assert sorted(set(RANK) - rooms) == []  # a room that no longer exists


def test_every_import_runs_down() -> None:
    upward = sorted(
        f"{e.source}:{e.line} imports {e.target} ({room_of(e.source)} below {room_of(e.target)})"
        for e in EDGES
        if RANK[room_of(e.source)] < RANK[room_of(e.target)]
    )
    assert upward == []


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of ``graph`` with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            part = []
            while True:
                member = stack.pop()
                part.append(member)
                if member == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for e in EDGES:
        if e.target != e.source:
            graph.setdefault(e.source, set()).add(e.target)
    assert circles(graph) == []


def test_no_import_circle_between_rooms() -> None:
    graph: dict[str, set[str]] = {}
    for e in EDGES:
        if room_of(e.target) != room_of(e.source):
            graph.setdefault(room_of(e.source), set()).add(room_of(e.target))
    assert circles(graph) == []


def test_the_checks_find_what_they_look_for() -> None:
    """The walk sees lazy and TYPE_CHECKING imports, relative and absolute ones."""
    seen = {(e.source, e.target) for e in EDGES}
    assert ("pytest_bluegreen.plugin", "pytest_bluegreen.gateplugin") in seen  # lazy
    assert ("pytest_bluegreen.keys", "pytest_bluegreen.report.metrics") in seen  # TYPE_CHECKING
    assert ("pytest_bluegreen.gate.run", "pytest_bluegreen.switch.transaction") in seen
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert len(EDGES) > 200


def in_functions(path: Path) -> set[int]:
    """The lines of the imports written inside a function of the module (lazy imports)."""
    return {
        node.lineno
        for function in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.Import | ast.ImportFrom)
    }


def test_the_settings_import_judges_grammars_at_the_top() -> None:
    """The settings parse the judging tables with judge/'s grammars (``thresholds``,
    ``comparerules``, ``queries``: none loads the load, the statistics or the bake), imported
    at the top; no grammar is imported lazily in a function (issue 23). The imports of judge/
    left in a function are the bake's plan, a gate's only (``BakeSettings.plan``), and
    Prometheus' client (``PrometheusSettings.client``), when asked."""
    lazy = sorted(
        {
            (e.source, e.target)
            for e in EDGES
            if room_of(e.source) == "settings"
            and room_of(e.target) == "judge"
            and e.line in in_functions(MODULES[e.source])
        }
    )
    assert lazy == [
        ("pytest_bluegreen.settings.judging", "pytest_bluegreen.judge.bake"),
        ("pytest_bluegreen.settings.judging", "pytest_bluegreen.judge.prometheus"),
    ]
    grammars = {"thresholds", "comparerules", "queries"}
    seen = {e.target.rsplit(".", 1)[1] for e in EDGES if e.source.endswith("settings.tables")}
    assert grammars <= seen


@pytest.mark.parametrize(
    "folder",
    [
        PACKAGE,
        *sorted(p.parent for p in PACKAGE.rglob("__init__.py") if TEMPLATES not in p.parents),
    ],
    ids=lambda p: str(p.relative_to(PACKAGE.parent)),
)
def test_no_folder_is_crowded(folder: Path) -> None:
    modules = sorted(p.name for p in folder.glob("*.py"))
    assert len(modules) <= MOST_MODULES, modules


def test_the_architecture_page_lists_the_rooms_in_the_order_they_import() -> None:
    """docs/architecture.md's table: one row per room, bottom first, as ``ROOMS`` says."""
    text = ARCHITECTURE.read_text()
    table = text.split("## The rooms", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| \*\*(\w+)\*\* ", table, flags=re.MULTILINE)
    assert rows == [room for room, _ in ROOMS]
    for room, modules in ROOMS:
        row = re.search(rf"^\| \*\*{room}\*\* .*$", table, flags=re.MULTILINE)
        assert row is not None
        for module in modules:
            assert f"`{module}" in row[0], f"{module} is in {room}: say so on its row"


# --- one home for each repeated constant or shape (issue 23) ----------------------------------

TREES = {module: ast.parse(path.read_text(), str(path)) for module, path in MODULES.items()}


def string_homes(value: str) -> list[str]:
    """The modules whose code holds the string ``value`` as a literal (docstrings aside)."""
    homes: list[str] = []
    for module, tree in TREES.items():
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        homes.extend(
            module
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value == value and id(node) not in docstrings
        )
    return sorted(homes)


@pytest.mark.parametrize(
    ("value", "home"),
    [
        ("X-Bluegreen-Color", "pytest_bluegreen.judge.headers"),
        ("X-Bluegreen-Version", "pytest_bluegreen.judge.headers"),
        ("X-Bluegreen-Server", "pytest_bluegreen.judge.headers"),
        ("^[a-z][a-z0-9_-]{0,31}$", "pytest_bluegreen.settings.parsers"),  # a color's name
    ],
)
def test_a_repeated_constant_is_written_once(value: str, home: str) -> None:
    assert string_homes(value) == [home]


def test_haproxy_unreadable_is_caught_by_its_name() -> None:
    """``except (RuntimeApiError, InstancesDisagree)`` is ``except HAPROXY_UNREADABLE``."""
    pair = {"RuntimeApiError", "InstancesDisagree"}
    by_hand = sorted(
        f"{module}:{node.lineno}"
        for module, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ExceptHandler)
        and isinstance(node.type, ast.Tuple)
        and pair <= {ast.unparse(element).rsplit(".", 1)[-1] for element in node.type.elts}
    )
    assert by_hand == []
    users = sorted(
        module
        for module, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ExceptHandler)
        and isinstance(node.type, ast.Name)
        and node.type.id == "HAPROXY_UNREADABLE"
    )
    assert len(users) >= 5, users  # the walk sees the handlers it looks for


def test_no_two_enums_have_the_same_members() -> None:
    """Passed/failed/inconclusive is one enum (``judge/judgement.py``), not one per judge."""
    members: dict[tuple[tuple[str, object], ...], list[str]] = {}
    for module, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                ast.unparse(base).rsplit(".", 1)[-1].endswith("Enum") for base in node.bases
            ):
                values = tuple(
                    sorted(
                        (target.id, statement.value.value)
                        for statement in node.body
                        if isinstance(statement, ast.Assign)
                        and isinstance(statement.value, ast.Constant)
                        for target in statement.targets
                        if isinstance(target, ast.Name)
                    )
                )
                members.setdefault(values, []).append(f"{module}.{node.name}")
    assert len(members) >= 5  # the walk sees the package's enums
    assert [names for names in members.values() if len(names) > 1] == []


# where ``isdigit`` reads no number: a Unicode digit there only redacts more
DIGITS_NOT_READ = {"settings/webhooks.py"}


def test_a_number_is_read_from_ascii_digits() -> None:
    """``str.isdigit`` says yes to ``²`` (``int`` then raises) and to ``٣`` (``int`` reads 3;
    HAProxy, a header or a port does not): each test of it is paired with ``isascii``."""
    unpaired = sorted(
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if str(path.relative_to(PACKAGE)) not in DIGITS_NOT_READ
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if ".isdigit()" in line and ".isascii()" not in line
    )
    assert unpaired == []
    assert sum(".isdigit()" in p.read_text() for p in PACKAGE.rglob("*.py")) >= 5


def test_no_assert_holds_a_runtime_invariant() -> None:
    """``python -O`` strips ``assert``: an invariant the package relies on is an ``if`` that
    raises (or a type that says it), never an ``assert``."""
    asserts = sorted(
        f"{module}:{node.lineno}"
        for module, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Assert)
    )
    assert asserts == []
    assert len(TREES) > 50  # the walk sees the package
