"""python3 -m standins {ollama|neo4j}: run one stand-in (see the package docstring)."""

from __future__ import annotations

import sys


def main() -> int:
    role = sys.argv[1] if len(sys.argv) == 2 else ""
    if role == "ollama":
        from standins.ollama import main as run  # noqa: PLC0415 (load one role only)
    elif role == "neo4j":
        from standins.neo4j import main as run  # noqa: PLC0415 (load one role only)
    else:
        print("usage: python3 -m standins {ollama|neo4j}", file=sys.stderr)
        return 2
    return run()


if __name__ == "__main__":
    sys.exit(main())
