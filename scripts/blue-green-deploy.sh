#!/usr/bin/env bash
# The seed's blue-green-deploy.sh, as a thin wrapper over `bluegreen deploy` (same flags):
#
#   scripts/blue-green-deploy.sh --target-color green --deployment-tag v2.0.0 --auto-switch
#   scripts/blue-green-deploy.sh --target-color green --deployment-tag v2.0.0 \
#       --skip-tests --skip-backup --auto-switch
#   scripts/blue-green-deploy.sh --target-color green --skip-tests --skip-switch
#   scripts/blue-green-deploy.sh --rollback
#
# Flags: --target-color C, --deployment-tag T, --auto-switch, --skip-tests, --skip-backup,
# --skip-switch, --rollback; anything else goes to pytest. Exit codes: see `bluegreen --help`.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bluegreen=${BLUEGREEN:-$here/.venv/bin/bluegreen}
[ -x "$bluegreen" ] || bluegreen=bluegreen
cd "$here"
exec "$bluegreen" deploy "$@"
