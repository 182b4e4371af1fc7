#!/usr/bin/env python3
"""The seed's manage-environments.py, as a thin wrapper over ``bluegreen`` (same flags).

scripts/manage-environments.py --status
scripts/manage-environments.py --switch-to green [--force] [--dry-run]
scripts/manage-environments.py --rollback [--force] [--dry-run]
scripts/manage-environments.py --export-state > debug-state.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parents[1]


class _Parser(argparse.ArgumentParser):
    """A usage error exits 4, as bluegreen's (argparse's 2 is "interrupted" there)."""

    def error(self, message: str) -> NoReturn:
        self.exit(4, f"{self.prog}: error: {message} ({self.prog} --help)\n")


def main() -> int:
    parser = _Parser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--status", action="store_true", help="live color, servers, last switch")
    action.add_argument("--switch-to", metavar="COLOR", help="verify COLOR, then switch to it")
    action.add_argument("--rollback", action="store_true", help="back to the previous color")
    action.add_argument("--export-state", action="store_true", help="the full state as JSON")
    parser.add_argument("--json", action="store_true", help="with --status: JSON")
    parser.add_argument("--force", action="store_true", help="skip the checks (recorded)")
    parser.add_argument("--dry-run", action="store_true", help="say what; change nothing")
    args = parser.parse_args()
    if args.status:
        command = ["status", *(["--json"] if args.json else [])]
    elif args.switch_to or args.rollback:
        command = ["switch-to", args.switch_to] if args.switch_to else ["rollback"]
        command += ["--force"] if args.force else []
        command += ["--dry-run"] if args.dry_run else []
    else:
        command = ["export-state"]
    local = ROOT / ".venv" / "bin" / "bluegreen"
    program = os.environ.get("BLUEGREEN") or (str(local) if local.exists() else None)
    program = program or shutil.which("bluegreen")
    if program is None:
        print("manage-environments: bluegreen is not installed (scripts/setup)", file=sys.stderr)
        return 4
    os.chdir(ROOT)
    os.execv(program, [program, *command])  # noqa: S606 - a fixed program, no shell
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
