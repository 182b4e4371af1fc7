#!/usr/bin/env bash
# The seed's health-checks.sh, as a thin wrapper over `bluegreen check` (same flags):
#
#   scripts/health-checks.sh --environment blue
#   scripts/health-checks.sh --environment all --quick
#   scripts/health-checks.sh --environment blue --verbose     (or VERBOSE=true)
#   scripts/health-checks.sh --environment shared
#
# Extra arguments go to pytest (e.g. -n 2, -k health). Exit codes: see `bluegreen --help`.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bluegreen=${BLUEGREEN:-$here/.venv/bin/bluegreen}
[ -x "$bluegreen" ] || bluegreen=bluegreen
cd "$here"
exec "$bluegreen" check "$@"
