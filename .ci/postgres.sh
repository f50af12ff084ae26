#!/usr/bin/env bash
# Start a local PostgreSQL for the SMS store's integration tests (run as root on Debian).
#
# Installs Debian's postgresql package if missing, starts the "main" cluster of the newest installed
# major version on 127.0.0.1 (port 5432, or 5433 when an unrelated server already holds 5432), and
# creates role "sms" (password "sms") and database "sms_test". Idempotent, quick when already set up,
# reads no standard input. Progress goes to stderr; the last stdout line is for eval:
#
#   eval "$(bash .ci/postgres.sh | tail -1)"      # sets SMS_TEST_POSTGRES_URI
set -euo pipefail
exec </dev/null
cd /  # the postgres user runs commands below; it may not enter the caller's (private) directory

CLUSTER=${SMS_PG_CLUSTER:-main}  # another name gives a separate cluster (used to test this script)
ROLE=sms
PASSWORD=sms
DATABASE=sms_test

log() { echo "postgres.sh: $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    log "must run as root (it installs packages and starts the cluster as the postgres user)"
    exit 1
fi

newest_major() {
    local dir=""
    if [[ -d /usr/lib/postgresql ]]; then
        dir=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V | tail -1)
    fi
    if [[ -n $dir && -x /usr/lib/postgresql/$dir/bin/postgres ]]; then echo "$dir"; fi
    return 0
}

VERSION=$(newest_major)
if [[ -z $VERSION ]] || ! command -v pg_ctlcluster >/dev/null 2>&1; then
    log "installing postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
    VERSION=$(newest_major)
fi
if [[ -z $VERSION ]]; then
    log "postgresql was installed but no server binary was found under /usr/lib/postgresql"
    exit 1
fi

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pg_lsclusters --no-header: Ver Cluster Port Status Owner Data-directory Log-file
cluster_field() { pg_lsclusters --no-header 2>/dev/null | awk -v v="$VERSION" -v c="$CLUSTER" -v f="$1" '$1 == v && $2 == c { print $f }'; }

if [[ -z $(cluster_field 3) ]]; then
    PORT=5432
    if port_in_use "$PORT"; then PORT=5433; fi
    log "creating cluster $VERSION/$CLUSTER on port $PORT"
    pg_createcluster "$VERSION" "$CLUSTER" --port "$PORT" >&2
fi

PORT=$(cluster_field 3)
if [[ $(cluster_field 4) != online* ]]; then
    if port_in_use "$PORT"; then
        # Our cluster is down, so whatever listens there is some other server: move aside.
        if [[ $PORT == 5432 ]] && ! port_in_use 5433; then
            PORT=5433
        else
            log "port $PORT is held by another server and no free fallback port is left"
            exit 1
        fi
        log "port 5432 is taken by another server; moving cluster $VERSION/$CLUSTER to port $PORT"
        pg_conftool "$VERSION" "$CLUSTER" set port "$PORT" >&2
    fi
    log "starting cluster $VERSION/$CLUSTER on port $PORT"
    pg_ctlcluster "$VERSION" "$CLUSTER" start >&2
fi

for _ in $(seq 1 60); do
    if pg_isready -q -h 127.0.0.1 -p "$PORT"; then break; fi
    sleep 0.5
done
if ! pg_isready -q -h 127.0.0.1 -p "$PORT"; then
    log "PostgreSQL did not become ready on 127.0.0.1:$PORT"
    exit 1
fi

as_postgres() { runuser -u postgres -- "$@"; }
psql_admin() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -d postgres -tA "$@"; }

if [[ -z $(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'") ]]; then
    log "creating role $ROLE"
    psql_admin -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'" >&2
fi
if [[ -z $(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'") ]]; then
    log "creating database $DATABASE"
    as_postgres createdb -p "$PORT" -O "$ROLE" "$DATABASE" >&2
fi

URI="postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DATABASE"
if ! PGPASSWORD=$PASSWORD psql -X -q -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d "$DATABASE" -tAc "SELECT 1" >/dev/null; then
    log "cannot log in as $ROLE over TCP on 127.0.0.1:$PORT (check pg_hba.conf)"
    exit 1
fi
log "ready: $URI"
echo "export SMS_TEST_POSTGRES_URI=$URI"
