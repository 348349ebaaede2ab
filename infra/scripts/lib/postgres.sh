# shellcheck shell=bash
# PostgreSQL (Debian's server binaries) in a private data directory.
# Sourced by stack.sh after lib/common.sh.

PG_STATE="$FLK_STACK_DIR/postgres"
PG_DATA="$PG_STATE/data"
PG_SOCK="$PG_STATE/run"
PG_LOG="$PG_STATE/postgres.log"
PG_BIN=""

# Find the server binaries: /usr/lib/postgresql/$FLK_PG_MAJOR/bin first, else the
# newest installed major version.
_pg_find_bin() {
  local d
  if [[ -x "/usr/lib/postgresql/$FLK_PG_MAJOR/bin/initdb" ]]; then
    PG_BIN="/usr/lib/postgresql/$FLK_PG_MAJOR/bin"
    return 0
  fi
  d="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n1)"
  [[ -n "$d" ]] || return 1
  PG_BIN="$(dirname "$d")"
}

# Run a command as the postgres OS user when we are root (postgres refuses to
# run as root), as ourselves otherwise.
_pg_as() {
  if [[ $EUID -eq 0 ]]; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

postgres_install() {
  if ! _pg_find_bin; then
    flk_apt_install postgresql
    _pg_find_bin || flk_die "postgres: installed 'postgresql' but found no /usr/lib/postgresql/*/bin/initdb"
  fi
  flk_need_cmd psql:postgresql-client
}

# Every parent of the state dir must be searchable by the postgres user.
_pg_check_path_access() {
  [[ $EUID -eq 0 ]] || return 0
  if ! runuser -u postgres -- test -w "$PG_STATE"; then
    flk_die "postgres: the 'postgres' user cannot write $PG_STATE (a parent folder is not
  world-searchable?). Use a FLK_STACK_DIR under a world-readable folder, e.g. FLK_STACK_DIR=/tmp/flk-stack"
  fi
}

postgres_running() {
  [[ -n "$PG_BIN" ]] || _pg_find_bin || return 1
  [[ -f "$PG_DATA/postmaster.pid" ]] || return 1
  _pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

_pg_ready() {
  "$PG_BIN/pg_isready" -q -h "$FLK_BIND_HOST" -p "$FLK_POSTGRES_PORT" -U postgres
}

_pg_ensure_db() {
  local has
  has="$(psql -h "$FLK_BIND_HOST" -p "$FLK_POSTGRES_PORT" -U postgres -d postgres -XtAq \
    -c "SELECT 1 FROM pg_database WHERE datname = '$FLK_POSTGRES_DB'")" \
    || flk_die "postgres: cannot query the server on $FLK_BIND_HOST:$FLK_POSTGRES_PORT"
  if [[ "$has" != 1 ]]; then
    flk_log "postgres: creating database $FLK_POSTGRES_DB"
    psql -h "$FLK_BIND_HOST" -p "$FLK_POSTGRES_PORT" -U postgres -d postgres -Xq \
      -c "CREATE DATABASE \"$FLK_POSTGRES_DB\"" >&2 \
      || flk_die "postgres: CREATE DATABASE $FLK_POSTGRES_DB failed"
  fi
}

postgres_start() {
  postgres_install
  if postgres_running; then
    flk_log "postgres: already running ($FLK_BIND_HOST:$FLK_POSTGRES_PORT, data $PG_DATA)"
    _pg_ensure_db
    return 0
  fi
  mkdir -p "$PG_STATE" "$PG_SOCK"
  if [[ $EUID -eq 0 ]]; then
    chown postgres:postgres "$PG_STATE" "$PG_SOCK"
    [[ -d "$PG_DATA" ]] && chown -R postgres:postgres "$PG_DATA"
    [[ -f "$PG_LOG" ]] && chown postgres:postgres "$PG_LOG"
  fi
  _pg_check_path_access
  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    flk_log "postgres: initdb $PG_DATA ($("$PG_BIN/postgres" --version))"
    _pg_as "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
      --no-instructions >"$PG_STATE/initdb.log" 2>&1 \
      || { flk_tail_log "$PG_STATE/initdb.log" 30; flk_die "postgres: initdb failed"; }
  fi
  if [[ -f "$PG_DATA/postmaster.pid" ]]; then
    flk_warn "postgres: removing stale $PG_DATA/postmaster.pid (server not running)"
    rm -f "$PG_DATA/postmaster.pid"
  fi
  flk_require_free_port "$FLK_POSTGRES_PORT" "postgres"
  flk_log "postgres: starting on $FLK_BIND_HOST:$FLK_POSTGRES_PORT"
  # pg_stat_statements is loaded so that bench.sh can count the statements each record costs
  # (it creates the extension in its database; the counting itself costs about a percent).
  if ! _pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$FLK_START_TIMEOUT" \
      -o "-p $FLK_POSTGRES_PORT -k $PG_SOCK -c listen_addresses=$FLK_BIND_HOST -c shared_preload_libraries=pg_stat_statements ${FLK_POSTGRES_OPTS:-}" \
      start >"$PG_STATE/pg_ctl.out" 2>&1 9>&-; then
    flk_tail_log "$PG_STATE/pg_ctl.out" 10
    flk_tail_log "$PG_LOG" 30
    flk_die "postgres: pg_ctl start failed"
  fi
  flk_wait_for "$FLK_START_TIMEOUT" "postgres on port $FLK_POSTGRES_PORT" _pg_ready \
    || { flk_tail_log "$PG_LOG" 30; flk_die "postgres: not accepting connections"; }
  _pg_ensure_db
  flk_log "postgres: ready on $FLK_BIND_HOST:$FLK_POSTGRES_PORT (database $FLK_POSTGRES_DB)"
}

postgres_stop() {
  if ! postgres_running; then
    flk_log "postgres: not running"
    return 0
  fi
  local mode="${FLK_POSTGRES_STOP_MODE:-fast}"
  flk_log "postgres: stopping (pg_ctl stop -m $mode)"
  _pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -m "$mode" -w -t 60 stop >/dev/null \
    || flk_die "postgres: pg_ctl stop failed (see $PG_LOG)"
  flk_log "postgres: stopped"
}

# A crash of the whole server: SIGKILL to the postmaster and every backend (so no shared memory
# is left attached); the next start runs crash recovery from the WAL.
postgres_kill() {
  if ! postgres_running; then
    flk_log "postgres: not running"
    return 0
  fi
  local pid
  pid="$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null | tr -dc '0-9')"
  flk_log "postgres: kill -9 (postmaster pid $pid and its backends)"
  pkill -KILL -P "$pid" 2>/dev/null || true
  kill -KILL "$pid" 2>/dev/null || true
  flk_wait_for 10 "postgres to be gone" bash -c "! kill -0 $pid 2>/dev/null && ! pgrep -P $pid >/dev/null" \
    || flk_die "postgres: postmaster $pid survived SIGKILL"
  flk_log "postgres: killed"
}

postgres_status() {
  if postgres_running && _pg_ready; then
    printf '%-10s running  %s:%s (db %s, pid %s)\n' postgres "$FLK_BIND_HOST" "$FLK_POSTGRES_PORT" \
      "$FLK_POSTGRES_DB" "$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null)"
  else
    printf '%-10s stopped  %s:%s\n' postgres "$FLK_BIND_HOST" "$FLK_POSTGRES_PORT"
    return 1
  fi
}

postgres_state_dirs() { printf '%s\n' "$PG_STATE"; }
