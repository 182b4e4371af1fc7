"""Neo4j stand-in: Neo4j 5's HTTP API on port 7474, with no graph behind it.

NOT NEO4J (see the package docstring): the real server cannot be pulled on this machine.

    GET  /                           discovery document, like Neo4j 5:
                                     {"bolt_routing": "neo4j://HOST:7687",
                                      "bolt_direct": "bolt://HOST:7687",
                                      "transaction": "http://HOST:PORT/db/{databaseName}/tx",
                                      "neo4j_version": "5.26.0", "neo4j_edition": "community"}
                                     (HOST:PORT from the request's Host header, as Neo4j does;
                                     from inside the network that is sutazai-neo4j:7474)
    POST /db/<db>/tx/commit          run statements in an implicit transaction
    POST /db/<db>/tx                 "open" a transaction (answers a commit URL)
    POST /db/<db>/tx/<id>/commit     commit it;  DELETE /db/<db>/tx/<id>: roll back

Statements: only RETURN of literals, parameters and simple arithmetic is evaluated
(``RETURN 1``, ``RETURN 1 + 1 AS two, 'x' AS s, $p AS p, [1, 2] AS l, {a: 1} AS m``); the answer
is Neo4j's shape: {"results": [{"columns": [...], "data": [{"row": [...], "meta": [null]}]}],
"errors": []}. Anything else is answered with a Neo4j-style error in "errors". There is no Bolt
listener on 7687.

Environment: NEO4J_AUTH ("none", the default, or "neo4j/<password>": then the tx endpoints
want HTTP basic auth, like Neo4j), NEO4J_VERSION (default 5.26.0), PORT (default 7474).
"""

from __future__ import annotations

import ast
import base64
import binascii
import itertools
import json
import operator
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from standins.common import Handler, env_int, serve

DATABASES = ("neo4j", "system")
TX_PATH = re.compile(r"^/db/([^/]+)/tx(?:/(\d+))?(/commit)?/?$")
RETURN = re.compile(r"^\s*RETURN\s+(.+?)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<number>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)
      | (?P<param>\$(?:[A-Za-z_][A-Za-z0-9_]*|`[^`]+`|\d+))
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)
      | (?P<punct>[\[\]{}(),:+\-*/%^])""",
    re.VERBOSE,
)
_tx_ids = itertools.count(1)


class CypherError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def unsupported(what: str) -> CypherError:
    return CypherError(
        "Neo.ClientError.Statement.SyntaxError",
        f"{what}: the Neo4j stand-in only evaluates RETURN of literals and parameters",
    )


def tokenize(text: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            raise unsupported(f"unexpected character {text[pos]!r} at offset {pos}")
        if m.lastgroup != "ws":
            out.append((m.lastgroup or "", m.group(), pos))
        pos = m.end()
    return out


def to_python(tokens: list[tuple[str, str, int]]) -> str:
    """Rewrite Cypher expression tokens as a Python expression (walked by evaluate())."""
    parts: list[str] = []
    stack: list[str] = []
    for i, (kind, text, _pos) in enumerate(tokens):
        if kind == "string":
            parts.append(repr(ast.literal_eval(text)))
        elif kind == "number":
            parts.append(text)
        elif kind == "param":
            parts.append(f"__p[{text[1:].strip('`')!r}]")
        elif kind == "ident":
            prev = tokens[i - 1][1] if i else ""
            nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
            if stack and stack[-1] == "{" and prev in ("{", ",") and nxt == ":":
                parts.append(repr(text.strip("`")))
            elif text.lower() in ("true", "false", "null"):
                parts.append({"true": "True", "false": "False", "null": "None"}[text.lower()])
            else:
                raise unsupported(f"'{text}' (variables, functions and clauses)")
        else:
            if text in "[{(":
                stack.append(text)
            elif text in "]})" and stack:
                stack.pop()
            parts.append("**" if text == "^" else text)
    return " ".join(parts)


def cypher_div(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        if b == 0:
            raise CypherError("Neo.ClientError.Statement.ArithmeticError", "/ by zero")
        q = abs(a) // abs(b)
        return q if (a >= 0) == (b >= 0) else -q
    return a / b


def cypher_add(a: Any, b: Any) -> Any:
    if isinstance(a, str) or isinstance(b, str):
        return f"{cypher_str(a)}{cypher_str(b)}"
    return a + b


def cypher_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def cypher_pow(a: Any, b: Any) -> float:
    return float(float(a) ** b)


BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: cypher_add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: cypher_div,
    ast.Mod: operator.mod,
    ast.Pow: cypher_pow,
}


def evaluate(node: ast.AST, params: dict[str, Any]) -> Any:  # noqa: PLR0911 - one return per node kind
    if isinstance(node, ast.Expression):
        return evaluate(node.body, params)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List):
        return [evaluate(e, params) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {
            evaluate(k, params): evaluate(v, params)
            for k, v in zip(node.keys, node.values, strict=True)
            if k
        }
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = evaluate(node.operand, params)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in BINOPS:
        left, right = evaluate(node.left, params), evaluate(node.right, params)
        if left is None or right is None:
            return None
        try:
            return BINOPS[type(node.op)](left, right)
        except TypeError as exc:
            raise CypherError("Neo.ClientError.Statement.TypeError", str(exc)) from None
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id == "__p"
        and isinstance(node.slice, ast.Constant)
    ):
        name = str(node.slice.value)
        if name not in params:
            raise CypherError(
                "Neo.ClientError.Statement.ParameterMissing", f"Expected parameter(s): {name}"
            )
        return params[name]
    raise unsupported("expression")


def split_items(tokens: list[tuple[str, str, int]]) -> list[list[tuple[str, str, int]]]:
    items: list[list[tuple[str, str, int]]] = [[]]
    depth = 0
    for tok in tokens:
        if tok[1] in "[{(" and tok[0] == "punct":
            depth += 1
        elif tok[1] in "]})" and tok[0] == "punct":
            depth -= 1
        if tok[0] == "punct" and tok[1] == "," and depth == 0:
            items.append([])
        else:
            items[-1].append(tok)
    return items


def run_statement(statement: str, params: dict[str, Any]) -> dict[str, Any]:
    m = RETURN.match(statement)
    if not m:
        first = statement.strip().split(None, 1)[0] if statement.strip() else "(empty)"
        raise unsupported(f"'{first}' statements")
    body, offset = m.group(1), m.start(1)
    columns, row = [], []
    for raw_item in split_items(tokenize(body)):
        if not raw_item:
            raise unsupported("empty RETURN item")
        alias, item = None, raw_item
        if len(item) >= 3 and item[-2][0] == "ident" and item[-2][1].upper() == "AS":
            alias, item = item[-1][1].strip("`"), item[:-2]
        start = item[0][2]
        end = item[-1][2] + len(item[-1][1])
        expr_text = statement[offset + start : offset + end]
        try:
            tree = ast.parse(to_python(item), mode="eval")
        except SyntaxError:
            raise CypherError(
                "Neo.ClientError.Statement.SyntaxError", f"Invalid input: {expr_text}"
            ) from None
        columns.append(alias or expr_text)
        row.append(evaluate(tree, params))
    return {"columns": columns, "data": [{"row": row, "meta": [None] * len(row)}]}


class Neo4jHandler(Handler):
    server_version = "neo4j-standin"
    auth: tuple[str, str] | None = None
    version = "5.26.0"

    def base(self) -> tuple[str, str]:
        host = self.headers.get("Host") or f"localhost:{env_int('PORT', 7474)}"
        return host, host.rsplit(":", 1)[0] if not host.endswith("]") else host

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/":
            self.send_json(
                404,
                {"errors": [{"code": "Neo.ClientError.Request.Invalid", "message": "Not Found"}]},
            )
            return
        host_port, host = self.base()
        self.send_json(
            200,
            {
                "bolt_routing": f"neo4j://{host}:7687",
                "bolt_direct": f"bolt://{host}:7687",
                "transaction": f"http://{host_port}/db/{{databaseName}}/tx",
                "neo4j_version": self.version,
                "neo4j_edition": "community",
            },
        )

    def authorized(self) -> bool:
        if self.auth is None:
            return True
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user, password = "", ""
            if (user, password) == self.auth:
                return True
            message = "Invalid username or password."
        else:
            message = "No authentication header supplied."
        self.send_response(401)
        body = json.dumps(
            {"errors": [{"code": "Neo.ClientError.Security.Unauthorized", "message": message}]},
            separators=(",", ":"),
        ).encode()
        self.send_header("WWW-Authenticate", 'Basic realm="Neo4j"')
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return False

    def do_DELETE(self) -> None:
        m = TX_PATH.match(self.path)
        self.read_body()
        if not m or not m.group(2) or m.group(3):
            self.send_json(404, {"errors": []})
        elif self.authorized():
            self.send_json(200, {"results": [], "errors": []})

    def do_POST(self) -> None:
        m = TX_PATH.match(self.path.split("?", 1)[0])
        raw = self.read_body()
        if not m:
            self.send_json(
                404,
                {"errors": [{"code": "Neo.ClientError.Request.Invalid", "message": "Not Found"}]},
            )
            return
        if not self.authorized():
            return
        database, tx_id, commit = m.groups()
        if database not in DATABASES:
            self.send_json(
                404,
                {
                    "errors": [
                        {
                            "code": "Neo.ClientError.Database.DatabaseNotFound",
                            "message": f"Database {database} not found",
                        }
                    ]
                },
            )
            return
        results, errors = [], []
        try:
            request = json.loads(raw or b"{}")
            statements = request.get("statements", [])
            if not isinstance(statements, list):
                raise ValueError("statements must be a list")
        except (ValueError, AttributeError) as exc:
            errors.append(
                {
                    "code": "Neo.ClientError.Request.InvalidFormat",
                    "message": f"Unable to deserialize request: {exc}",
                }
            )
            statements = []
        for stmt in statements:
            try:
                text = stmt.get("statement", "") if isinstance(stmt, dict) else ""
                params = (stmt.get("parameters") or {}) if isinstance(stmt, dict) else {}
                results.append(run_statement(str(text), params))
            except CypherError as exc:
                errors.append({"code": exc.code, "message": str(exc)})
                results = []  # Neo4j rolls the transaction back: no results
                break
        body: dict[str, Any] = {"results": results, "errors": errors}
        if commit or errors:
            if commit:
                body["lastBookmarks"] = ["FB:standin"]
            self.send_json(200, body)
            return
        # an open transaction: hand out its commit URL
        tx = tx_id or str(next(_tx_ids))
        host_port, _ = self.base()
        body["commit"] = f"http://{host_port}/db/{database}/tx/{tx}/commit"
        body["transaction"] = {"expires": "Thu, 01 Jan 2099 00:00:00 GMT"}
        self.send_response(201 if tx_id is None else 200)
        data = json.dumps(body, separators=(",", ":")).encode()
        if tx_id is None:
            self.send_header("Location", f"http://{host_port}/db/{database}/tx/{tx}")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> int:
    auth = os.environ.get("NEO4J_AUTH", "none").strip()
    if auth and auth.lower() != "none":
        user, _, password = auth.partition("/")
        Neo4jHandler.auth = (user, password)
    Neo4jHandler.version = os.environ.get("NEO4J_VERSION", Neo4jHandler.version)
    return serve(Neo4jHandler, env_int("PORT", 7474), "neo4j-standin")


if __name__ == "__main__":
    sys.exit(main())
