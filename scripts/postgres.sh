#!/usr/bin/env bash
# A PostgreSQL of the project's own, for the tests and the demo: Debian's
# postgresql-15 (scripts/setup.sh installs it), a cluster in a folder of its
# own run as the postgres user (initdb refuses root), listening on a Unix
# socket in that folder (and on 127.0.0.1:PORT when a PORT is given). Never
# the system's cluster.
#
#   scripts/postgres.sh start DIR [PORT]   make (if new) and start; prints the URL
#   scripts/postgres.sh ensure DIR [PORT]  start unless running (safe to race)
#   scripts/postgres.sh url DIR            the URL of a running cluster
#   scripts/postgres.sh stop DIR           stop it (the folder stays)
#   scripts/postgres.sh destroy DIR        stop it and delete the folder
#
# The URL names the database `daas` as user `postgres` over the socket,
# with no password (the cluster trusts local connections: a test cluster).
set -euo pipefail

bin=${DAAS_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
die() { printf 'postgres.sh: error: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '7,11p' "$0" | sed 's/^# *//' >&2; exit 2; }
(($# >= 2)) || usage
cmd=$1
dir=$(realpath -m "$2")
port=${3:-5432}
listen=${3:+127.0.0.1}

[[ -x $bin/initdb ]] || die "no $bin/initdb: run scripts/setup.sh (it installs Debian's postgresql-15)"

as_postgres() { runuser -u postgres -- "$@"; }
running() { [[ -f $dir/data/postmaster.pid ]] && as_postgres "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; }
url() {
  local p
  p=$(sed -n 4p "$dir/data/postmaster.pid")
  printf 'postgres://postgres@localhost/daas?host=%s&port=%s\n' "$dir/sock" "$p"
}

start() {
  if [[ ! -f $dir/data/PG_VERSION ]]; then
    mkdir -p "$dir"
    chown postgres: "$dir"
    as_postgres mkdir -p "$dir/data" "$dir/sock"
    as_postgres "$bin/initdb" -D "$dir/data" --auth=trust --encoding=UTF8 --locale=C.UTF-8 -U postgres >"$dir/initdb.log" 2>&1 \
      || die "initdb failed: $(tail -n 5 "$dir/initdb.log")"
    # Enough connections for three replicas' pools and the tests.
    printf '%s\n' "max_connections = 300" "fsync = off" "synchronous_commit = off" "full_page_writes = off" \
      | as_postgres tee -a "$dir/data/postgresql.conf" >/dev/null
  fi
  if ! running; then
    as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
      -o "-k $dir/sock -p $port -c listen_addresses=$listen" start >/dev/null 9>&- \
      || die "PostgreSQL did not start: $(tail -n 5 "$dir/postgres.log")"
  fi
  local exists
  exists=$(as_postgres "$bin/psql" -h "$dir/sock" -p "$port" -U postgres -d postgres -Atc \
    "SELECT 1 FROM pg_database WHERE datname = 'daas'")
  [[ $exists == 1 ]] || as_postgres "$bin/createdb" -h "$dir/sock" -p "$port" -U postgres daas
  url
}

case $cmd in
  start) start ;;
  ensure)
    mkdir -p "$(dirname "$dir")"
    exec 9>"$dir.lock"
    flock 9
    start
    ;;
  url) running || die "no PostgreSQL runs in $dir"; url ;;
  stop) if running; then as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null; fi ;;
  destroy)
    if running; then as_postgres "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null; fi
    rm -rf "$dir" "$dir.lock"
    ;;
  *) usage ;;
esac
