"""One hierarchy of errors and one table of exit codes (issue 23), both in ``errors.py``.

Every exception class the package defines is a :class:`BluegreenError` (so the plugin and the
``bluegreen`` command each need one ``except``, and each class says its exit code), unless
``errors.OUTSIDE_THE_TREE`` names it with the reason. ``errors.py``'s docstring draws the tree:
every class in it, under its base, with its exit code. And no exit status is written as a bare
number outside ``errors.py``: ``ExitCode``'s members say which one is meant.

The templates ``bluegreen init`` copies into a user's project (``init/starter/checks``) are the
user's code, not the package's: left out, as in tests/layout/test_architecture.py.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

from pytest_bluegreen import errors
from pytest_bluegreen.errors import BluegreenError

PACKAGE = Path(__file__).resolve().parents[2] / "pytest_bluegreen"
NAME = "pytest_bluegreen"
TEMPLATES = PACKAGE / "init" / "starter" / "checks"


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if TEMPLATES in path.parents:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _visit(
    body: list[ast.stmt], owner: object, prefix: str, found: dict[str, type[BaseException]]
) -> None:
    for node in body:
        if not isinstance(node, ast.ClassDef):
            continue
        cls = getattr(owner, node.name, None)
        if not inspect.isclass(cls):
            continue  # defined under a condition that did not hold
        if issubclass(cls, BaseException):
            found[f"{prefix}.{node.name}"] = cls
        _visit(node.body, cls, f"{prefix}.{node.name}", found)


def _defined_exceptions() -> dict[str, type[BaseException]]:
    """``module.Class`` (nested ones as ``module.Outer.Inner``) of every exception class
    written in the package, read with ``ast`` and found on the imported module."""
    found: dict[str, type[BaseException]] = {}
    for module_name, path in _modules():
        module = importlib.import_module(module_name)
        _visit(ast.parse(path.read_text()).body, module, module_name, found)
    return found


def test_every_exception_of_the_package_is_a_bluegreen_error() -> None:
    outside = getattr(errors, "OUTSIDE_THE_TREE", {})
    defined = _defined_exceptions()
    stray = sorted(
        name
        for name, cls in defined.items()
        if not issubclass(cls, BluegreenError) and name not in outside
    )
    assert not stray, (
        "exceptions that are not a BluegreenError (derive them from errors.py's tree, or "
        f"name them with the reason in errors.OUTSIDE_THE_TREE): {', '.join(stray)}"
    )
    for name, reason in outside.items():
        assert name in defined, f"errors.OUTSIDE_THE_TREE names {name}, which is not defined"
        assert not issubclass(defined[name], BluegreenError), f"{name} is in the tree now"
        assert reason.strip(), f"errors.OUTSIDE_THE_TREE gives no reason for {name}"


# ``    ThresholdError (ValueError)   judge.thresholds   4``: indent, class, other bases, the
# module under pytest_bluegreen, the exit code
_TREE_LINE = re.compile(
    r"^(?P<indent> *)(?P<name>\w+)(?: \((?P<also>[\w, ]+)\))? +(?P<module>[\w.]+) +(?P<code>\d+)"
    r"(?: .*)?$"
)


def _drawn_tree() -> list[tuple[int, str, str, int]]:
    """(depth, class, module, exit code) of each line of the docstring's tree, in order."""
    doc = errors.__doc__ or ""
    lines = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0].splitlines() if "::\n\n" in doc else []
    drawn = []
    for line in lines:
        match = _TREE_LINE.match(line)
        assert match, f"errors.py's tree: {line!r} is not 'Class [(bases)] module code'"
        depth, odd = divmod(len(match["indent"]) - 4, 2)
        assert not odd, f"errors.py's tree: {line!r} is not indented by twos"
        assert depth >= 0, f"errors.py's tree: {line!r} is indented less than the tree"
        drawn.append((depth, match["name"], match["module"], int(match["code"])))
    return drawn


def test_the_docstring_draws_the_whole_tree() -> None:
    """Each class of the tree once, under the base it derives from, with its exit code."""
    tree = {
        name: cls for name, cls in _defined_exceptions().items() if issubclass(cls, BluegreenError)
    }
    drawn = _drawn_tree()
    assert drawn, "errors.py's docstring draws no tree (a '::' block of 'Class module code')"
    parents: list[str] = []
    seen = set()
    for depth, name, module, code in drawn:
        key = f"{NAME}.{module}.{name}" if module != "." else f"{NAME}.{name}"
        assert key in tree, f"errors.py's tree draws {module}.{name}, which is not in the tree"
        assert key not in seen, f"errors.py's tree draws {key} twice"
        seen.add(key)
        cls = tree[key]
        assert depth <= len(parents), f"errors.py's tree: {name} is indented too far"
        del parents[depth:]
        base = next((b for b in cls.__bases__ if issubclass(b, BluegreenError)), None)
        drawn_base = parents[-1] if parents else None
        real_base = None if base is None else f"{base.__module__}.{base.__qualname__}"
        assert drawn_base == real_base, f"{key} derives from {real_base}, drawn under {drawn_base}"
        assert code == cls.exit_code, f"{key}: exit code {cls.exit_code}, drawn as {code}"
        parents.append(key)
    missing = sorted(set(tree) - seen)
    assert not missing, f"errors.py's tree does not draw {', '.join(missing)}"


# --- no bare exit codes ------------------------------------------------------------------------

EXIT_NAMES = {"exit_code", "exitstatus"}  # an attribute or a variable holding an exit status
EXIT_KEYWORDS = EXIT_NAMES | {"returncode"}  # pytest.exit(returncode=...), GateReport(...)
EXIT_CALLS = {"exit", "_exit"}  # sys.exit(3), os._exit(3), pytest.exit(..., 3)
# where a name of EXIT_NAMES holds another program's exit status, not the gate's
NOT_OURS = {
    ("engines/serving.py", "self.exit_code == 0"): "a container health check's exit status",
}


def _bare(node: ast.AST | None) -> bool:
    """An int literal that could be an exit code, or a tuple/set of them, or a conditional
    expression with one as a branch."""
    if isinstance(node, ast.Constant):
        return type(node.value) is int and 0 <= node.value <= max(errors.ExitCode)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts) and all(_bare(e) for e in node.elts)
    if isinstance(node, ast.IfExp):
        return _bare(node.body) or _bare(node.orelse)
    return False


def _named(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _bare_exit_codes(tree: ast.AST) -> Iterator[ast.AST]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_named(s) in EXIT_NAMES for s in sides) and any(_bare(s) for s in sides):
                yield node
        elif isinstance(node, ast.keyword):
            if node.arg in EXIT_KEYWORDS and _bare(node.value):
                yield node.value
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(_named(t) in EXIT_NAMES for t in targets) and _bare(node.value):
                yield node
        elif isinstance(node, ast.Call):
            called = _named(node.func)
            if called in EXIT_CALLS and any(_bare(a) for a in node.args):
                yield node
            if called == "GateReport" and len(node.args) > 1 and _bare(node.args[1]):
                yield node.args[1]  # GateReport(decision, exit_code, lines, ...)


def test_no_bare_exit_code_outside_errors_py() -> None:
    found = []
    for _, path in _modules():
        where = path.relative_to(PACKAGE).as_posix()
        if where == "errors.py":
            continue
        for node in _bare_exit_codes(ast.parse(path.read_text())):
            text = ast.unparse(node)
            if (where, text) not in NOT_OURS:
                found.append(f"{where}:{getattr(node, 'lineno', '?')}: {text}")
    assert not found, "exit codes as bare numbers (use errors.ExitCode):\n" + "\n".join(found)


def test_the_scan_finds_bare_exit_codes() -> None:
    """The scan above is not blind: each shape it looks for, written with a bare number."""
    shapes = [
        "facts.exitstatus not in (0, 1, 2, 5)",
        "report.exit_code == 0",
        "exit_code = 7",
        "pytest.exit('x', returncode=4)",
        "sys.exit(3)",
        "GateReport(None, 0 if passed else code, lines)",
    ]
    for shape in shapes:
        assert list(_bare_exit_codes(ast.parse(shape))), shape
    fine = [
        "facts.exitstatus not in CHECKS_RAN",
        "report.exit_code == ExitCode.OK",
        "done.returncode != 0",  # another program's status
        "GateReport(None, ExitCode.OK if passed else code, lines)",
    ]
    for shape in fine:
        assert not list(_bare_exit_codes(ast.parse(shape))), shape
