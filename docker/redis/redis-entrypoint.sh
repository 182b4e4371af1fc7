#!/bin/sh
# Entry point of bluegreen/redis:7: adds requirepass when REDIS_PASSWORD is set. The password
# goes in through a config read from stdin ("redis-server -"), not on the command line.
set -eu
if [ "${1:-}" = redis-server ] && [ -n "${REDIS_PASSWORD:-}" ]; then
    shift
    escaped=$(printf '%s' "$REDIS_PASSWORD" | sed 's/["\\]/\\&/g')
    exec redis-server - "$@" <<CONF
requirepass "$escaped"
CONF
fi
exec "$@"
