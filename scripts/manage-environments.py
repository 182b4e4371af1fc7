#!/usr/bin/env python3
"""The seed's manage-environments.py, as a thin wrapper over ``bluegreen`` (same flags).

scripts/manage-environments.py --status
scripts/manage-environments.py --switch-to green [--force]
scripts/manage-environments.py --rollback
scripts/manage-environments.py --export-state > debug-state.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--status", action="store_true", help="live color, servers, last switch")
    action.add_argument("--switch-to", metavar="COLOR", help="verify COLOR, then switch to it")
    action.add_argument("--rollback", action="store_true", help="back to the previous color")
    action.add_argument("--export-state", action="store_true", help="the full state as JSON")
    parser.add_argument("--json", action="store_true", help="with --status: JSON")
    parser.add_argument("--force", action="store_true", help="skip the checks (recorded)")
    args = parser.parse_args()
    if args.status:
        command = ["status", *(["--json"] if args.json else [])]
    elif args.switch_to:
        command = ["switch-to", args.switch_to, *(["--force"] if args.force else [])]
    elif args.rollback:
        command = ["rollback", *(["--force"] if args.force else [])]
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
