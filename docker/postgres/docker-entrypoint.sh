#!/bin/sh
# Entry point of bluegreen/postgres:15.
#
#   first start (empty PGDATA): initdb (UTF-8, scram-sha-256), pg_hba.conf allowing password
#     logins from any address and trusted local socket logins inside the container
#   every start: role POSTGRES_USER (default sutazai) exists with password POSTGRES_PASSWORD
#     (default sutazai-dev: so changing the password in secrets.env takes effect on restart),
#     database POSTGRES_DB (default sutazai) exists, owned by it
#   then: exec postgres in the foreground, listening on all addresses (-c listen_addresses=*)
#
# Started as root it fixes the ownership of PGDATA and re-executes itself as postgres.
set -eu

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=sutazai}"
: "${POSTGRES_DB:=sutazai}"
: "${POSTGRES_PASSWORD:=sutazai-dev}"
export PGDATA

log() { printf '[entrypoint] %s\n' "$*" >&2; }

if [ "${1:-}" = postgres ] || [ "${1#-}" != "${1:-}" ]; then
    [ "${1:-}" = postgres ] && shift

    if [ "$(id -u)" = 0 ]; then
        mkdir -p "$PGDATA" /var/run/postgresql
        chown postgres:postgres "$PGDATA" /var/run/postgresql
        chmod 0700 "$PGDATA"
        chmod 2775 /var/run/postgresql
        exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" postgres "$@"
    fi

    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        log "initialising a new cluster in $PGDATA"
        initdb --pgdata="$PGDATA" --username=postgres --encoding=UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=scram-sha-256 >/dev/null
        cat >"$PGDATA/pg_hba.conf" <<'HBA'
# bluegreen/postgres: trusted socket logins inside the container, passwords over TCP
local all all                trust
host  all all 127.0.0.1/32   scram-sha-256
host  all all ::1/128        scram-sha-256
host  all all 0.0.0.0/0      scram-sha-256
host  all all ::/0           scram-sha-256
HBA
        fresh=1
    else
        fresh=0
    fi

    # Role, password and database, in single-user mode (no listening socket: nothing can
    # connect, and health checks do not see a half-initialised server).
    sql_literal() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }
    sql_ident() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }
    user_lit=$(sql_literal "$POSTGRES_USER")
    user_id=$(sql_ident "$POSTGRES_USER")
    out=$(postgres --single -D "$PGDATA" -c listen_addresses='' -c log_statement=none postgres 2>&1 <<SQL
DO \$bg\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = $user_lit) THEN CREATE ROLE $user_id LOGIN; END IF; END \$bg\$;
ALTER ROLE $user_id WITH LOGIN PASSWORD $(sql_literal "$POSTGRES_PASSWORD");
SQL
) || { printf '%s\n' "$out" >&2; log "setting up role $POSTGRES_USER failed"; exit 1; }
    if printf '%s\n' "$out" | grep -q 'ERROR:'; then
        printf '%s\n' "$out" | grep -v -i password >&2
        log "setting up role $POSTGRES_USER failed"
        exit 1
    fi
    if [ "$fresh" = 1 ] || [ ! -e "$PGDATA/.bluegreen-db-$POSTGRES_DB" ]; then
        out=$(postgres --single -D "$PGDATA" -c listen_addresses='' postgres 2>&1 <<SQL
CREATE DATABASE $(sql_ident "$POSTGRES_DB") OWNER $user_id;
SQL
) || { printf '%s\n' "$out" >&2; exit 1; }
        if printf '%s\n' "$out" | grep 'ERROR:' | grep -qv 'already exists'; then
            printf '%s\n' "$out" >&2
            log "creating database $POSTGRES_DB failed"
            exit 1
        fi
        : >"$PGDATA/.bluegreen-db-$POSTGRES_DB"
        log "database $POSTGRES_DB owned by $POSTGRES_USER"
    fi
    log "role $POSTGRES_USER ready; starting postgres"
    exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
fi

exec "$@"
