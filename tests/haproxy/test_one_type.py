"""One HAProxy type (haproxy/instances.py's ``Haproxies``) and the Runtime API's transport
apart from its commands (haproxy/transport.py, haproxy/runtime.py): issue 23.

The gate, the switch, the lock, the bake and the metrics take a ``Haproxies`` (a group of one
for one instance) and never ask which of two types they were given; ``RuntimeApi`` is one
HAProxy's client: its commands, sent through a ``Transport`` that knows no command.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pytest_bluegreen
from pytest_bluegreen.haproxy.address import RuntimeApiAddress
from pytest_bluegreen.haproxy.answers import RuntimeApiError, RuntimeApiUnreachable
from pytest_bluegreen.haproxy.instances import DEFAULT_INSTANCE, Haproxies
from pytest_bluegreen.haproxy.runtime import RuntimeApi
from pytest_bluegreen.haproxy.transport import Transport
from tests.support.stack import Stack

PACKAGE = Path(pytest_bluegreen.__file__).parent
HAPROXY_TYPES = {"RuntimeApi", "Haproxies"}


def sources() -> dict[Path, ast.Module]:
    return {
        path: ast.parse(path.read_text(), str(path))
        for path in sorted(PACKAGE.rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def named(node: ast.expr) -> set[str]:
    """The names an ``isinstance`` second argument or an annotation mentions."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
    }


def test_no_module_asks_which_haproxy_type_it_was_given() -> None:
    """No ``isinstance(x, RuntimeApi | Haproxies)``, no ``AnyHaproxy``, no annotation that
    takes either of the two: a caller with one client makes a group of one."""
    found = []
    for path, tree in sources().items():
        where = path.relative_to(PACKAGE.parent)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "isinstance"
                and len(node.args) == 2
                and named(node.args[1]) & HAPROXY_TYPES
            ):
                found.append(f"{where}:{node.lineno}: isinstance(..., {ast.unparse(node.args[1])})")
            elif isinstance(node, ast.Name) and node.id == "AnyHaproxy":
                found.append(f"{where}:{node.lineno}: AnyHaproxy")
            elif (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.BitOr)
                and named(node) >= HAPROXY_TYPES
            ):
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_the_runtime_api_commands_do_not_open_sockets() -> None:
    """runtime.py sends its commands through transport.py; transport.py knows no command."""
    imported: dict[str, set[str]] = {}
    for name in ("runtime", "transport"):
        tree = ast.parse((PACKAGE / "haproxy" / f"{name}.py").read_text())
        imported[name] = {
            alias.name.split(".")[0]
            for n in ast.walk(tree)
            if isinstance(n, ast.Import)
            for alias in n.names
        } | {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported["runtime"] & {"socket", "ssl"}, imported["runtime"]
    assert "transport" in imported["runtime"]
    assert not imported["transport"] & {"runtime", "instances"}, imported["transport"]


def test_a_group_of_one_around_a_client() -> None:
    api = RuntimeApi("/nonexistent/bluegreen.sock", timeout=0.5)
    group = Haproxies.single(api)
    assert (group.names, group.several, group.first) == ((DEFAULT_INSTANCE,), False, api)
    assert group.addresses == ("unix:/nonexistent/bluegreen.sock",)
    with pytest.raises(RuntimeApiUnreachable, match="is unreachable"):  # not an InstanceFailed
        group.require_admin()


def test_a_tls_address_without_its_files_is_refused_by_the_transport() -> None:
    address = RuntimeApiAddress.parse("tls://127.0.0.1:9999")
    with pytest.raises(ValueError, match="needs TlsFiles"):
        Transport(address, 1.0, None)
    with pytest.raises(ValueError, match="needs TlsFiles"):
        RuntimeApi(address)


def test_a_multi_command_line_is_refused_before_connecting() -> None:
    transport = Transport(RuntimeApiAddress.parse("/nonexistent/bluegreen.sock"), 0.5, None)
    with pytest.raises(RuntimeApiError, match="refusing to send a multi-command line") as raised:
        transport.exchange("show info; show stat")
    assert not isinstance(raised.value, RuntimeApiUnreachable)  # nothing was tried


@pytest.mark.parametrize("spelling", ["tcp", "unix"])
def test_the_transport_carries_any_command_and_its_whole_answer(
    stack: Stack, spelling: str
) -> None:
    where = stack.runtime if spelling == "tcp" else f"unix:{stack.socket_path}"
    transport = Transport(RuntimeApiAddress.parse(where), 2.0, None)
    assert transport.exchange("show cli level") == "admin\n\n"  # as sent: its blank line too
    stat = transport.exchange("show stat")  # longer than one line, read until HAProxy closes
    assert stat.startswith("# pxname,svname,")
    assert "\napi_backend,blue-api," in stat
    assert "\napi_backend,green-api," in stat
