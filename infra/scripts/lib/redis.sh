# shellcheck shell=bash
# Redis: one daemonized redis-server per port in $FLK_REDIS_PORTS (the hot tier
# spreads keys over N nodes). No persistence. Sourced by stack.sh after lib/common.sh.
#
# Functions take an optional list of ports (default: all of $FLK_REDIS_PORTS), so
# `stack.sh stop redis:16380` stops one node.

REDIS_STATE="$FLK_STACK_DIR/redis"

_redis_dir() { printf '%s/%s' "$REDIS_STATE" "$1"; }
_redis_pid() { printf '%s/%s/redis.pid' "$REDIS_STATE" "$1"; }

# Sets the array REDIS_SEL to the given ports, or to all of $FLK_REDIS_PORTS.
_redis_select() {
  REDIS_SEL=("$@")
  if [[ ${#REDIS_SEL[@]} -eq 0 ]]; then
    read -r -a REDIS_SEL <<<"$FLK_REDIS_PORTS"
  fi
}

redis_install() {
  flk_need_cmd redis-server:redis-server redis-cli:redis-tools
}

redis_node_running() {
  flk_pid_alive "$(_redis_pid "$1")" "redis-server"
}

_redis_ping() {
  [[ "$(redis-cli -h "$FLK_BIND_HOST" -p "$1" ping 2>/dev/null)" == PONG ]]
}

redis_start() {
  redis_install
  local port dir pidfile
  _redis_select "$@"
  for port in "${REDIS_SEL[@]}"; do
    dir="$(_redis_dir "$port")"; pidfile="$(_redis_pid "$port")"
    if redis_node_running "$port"; then
      flk_log "redis: already running on $FLK_BIND_HOST:$port (pid $(flk_pid_of "$pidfile"))"
      continue
    fi
    flk_clear_stale_pid "$pidfile" "redis-server"
    flk_require_free_port "$port" "redis"
    mkdir -p "$dir"
    # shellcheck disable=SC2086 # FLK_REDIS_OPTS is a list of extra arguments
    redis-server --daemonize yes --bind "$FLK_BIND_HOST" --port "$port" --dir "$dir" \
      --pidfile "$pidfile" --logfile "$dir/redis.log" --save "" --appendonly no \
      ${FLK_REDIS_OPTS:-} 9>&- \
      || { flk_tail_log "$dir/redis.log" 20; flk_die "redis: redis-server on port $port failed to start"; }
    flk_wait_for "$FLK_START_TIMEOUT" "redis on port $port" _redis_ping "$port" \
      || { flk_tail_log "$dir/redis.log" 20; flk_die "redis: no PONG on port $port"; }
    flk_log "redis: ready on $FLK_BIND_HOST:$port"
  done
}

redis_stop() {
  local port
  _redis_select "$@"
  for port in "${REDIS_SEL[@]}"; do
    flk_stop_pidfile "$(_redis_pid "$port")" "redis-server" "redis:$port" 20
  done
}

redis_kill() {
  local port
  _redis_select "$@"
  for port in "${REDIS_SEL[@]}"; do
    flk_kill_pidfile "$(_redis_pid "$port")" "redis-server" "redis:$port"
    rm -f "$(_redis_pid "$port")"
  done
}

redis_status() {
  local port rc=0
  _redis_select "$@"
  for port in "${REDIS_SEL[@]}"; do
    if redis_node_running "$port" && _redis_ping "$port"; then
      printf '%-10s running  %s:%s (pid %s)\n' "redis" "$FLK_BIND_HOST" "$port" "$(flk_pid_of "$(_redis_pid "$port")")"
    else
      printf '%-10s stopped  %s:%s\n' "redis" "$FLK_BIND_HOST" "$port"
      rc=1
    fi
  done
  return "$rc"
}

redis_state_dirs() { printf '%s\n' "$REDIS_STATE"; }
