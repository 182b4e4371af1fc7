"""python3 -m jarvis {api|frontend|agents} [--check]: the same as the jarvis-* commands."""

from __future__ import annotations

import sys

ROLES = ("api", "frontend", "agents")


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ROLES:
        print(f"usage: python3 -m jarvis {{{'|'.join(ROLES)}}} [--check]", file=sys.stderr)
        return 2
    role, rest = sys.argv[1], sys.argv[2:]
    if role == "api":
        from jarvis.api import main as run  # noqa: PLC0415 (load one role only)
    elif role == "frontend":
        from jarvis.frontend import main as run  # noqa: PLC0415 (load one role only)
    else:
        from jarvis.agents import main as run  # noqa: PLC0415 (load one role only)
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
