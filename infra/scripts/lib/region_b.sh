# shellcheck shell=bash
# Region b: the second region of the local two-region stack (docs/runbooks/geo-dr.md). Its own
# Kafka cluster (a second KRaft broker with its own ports, data and cluster id), its own Postgres
# database (`flk_b` on the stack's server) and its own Redis nodes. Region a is the rest of the
# stack. Object store, collector, Jaeger, Prometheus and the TSA are shared: they hold no
# region state (each region writes under its own prefixes).
# Sourced by stack.sh after lib/common.sh, lib/kafka.sh, lib/postgres.sh and lib/redis.sh.

FLK_KAFKA_B_PORT="${FLK_KAFKA_B_PORT:-19192}"
FLK_KAFKA_B_CONTROLLER_PORT="${FLK_KAFKA_B_CONTROLLER_PORT:-19193}"
FLK_KAFKA_B_LINK_PORT="${FLK_KAFKA_B_LINK_PORT:-19194}"
FLK_KAFKA_B_LINK_PROXY_PORT="${FLK_KAFKA_B_LINK_PROXY_PORT:-19195}"
FLK_POSTGRES_B_DB="${FLK_POSTGRES_B_DB:-flk_b}"
FLK_REDIS_B_PORTS="${FLK_REDIS_B_PORTS:-16389 16390}"

# Runs a lib/kafka.sh function against region b's broker: the library reads its paths and ports
# from these variables, and bash's dynamic scope hands the local values to everything it calls.
# The start/wait handshake flags are carried in _KAFKA_B_* between the two calls.
_kafka_b() {
  local KAFKA_NAME="kafka-b"
  local KAFKA_STATE="$FLK_STACK_DIR/kafka-b"
  local KAFKA_DATA="$KAFKA_STATE/data"
  local KAFKA_PROPS="$KAFKA_STATE/server.properties"
  local KAFKA_PID="$KAFKA_STATE/kafka.pid"
  local KAFKA_LOGS="$KAFKA_STATE/logs"
  local KAFKA_OUT="$KAFKA_STATE/kafka.out"
  local FLK_KAFKA_PORT="$FLK_KAFKA_B_PORT"
  local FLK_KAFKA_CONTROLLER_PORT="$FLK_KAFKA_B_CONTROLLER_PORT"
  local FLK_KAFKA_LINK_PORT="$FLK_KAFKA_B_LINK_PORT"
  local FLK_KAFKA_LINK_PROXY_PORT="$FLK_KAFKA_B_LINK_PROXY_PORT"
  local _KAFKA_LAUNCHED="${_KAFKA_B_LAUNCHED:-0}"
  local _KAFKA_T0="${_KAFKA_B_T0:-0}"
  local rc=0
  "$@" || rc=$?
  _KAFKA_B_LAUNCHED="$_KAFKA_LAUNCHED"
  _KAFKA_B_T0="$_KAFKA_T0"
  return "$rc"
}

region_b_install() {
  kafka_install
  redis_install
}

# Launches region b's broker and Redis nodes; its database is created by region_b_wait, once
# Postgres answers (stack.sh starts Postgres with any region b command).
region_b_start() {
  _kafka_b kafka_start
  # shellcheck disable=SC2086 # a list of ports
  redis_start $FLK_REDIS_B_PORTS
}

region_b_wait() {
  _kafka_b kafka_wait
  FLK_POSTGRES_DB="$FLK_POSTGRES_B_DB" _pg_ensure_db
}

region_b_stop() {
  _kafka_b kafka_stop
  # shellcheck disable=SC2086
  redis_stop $FLK_REDIS_B_PORTS
}

region_b_status() {
  local rc=0
  _kafka_b kafka_status || rc=1
  # shellcheck disable=SC2086
  redis_status $FLK_REDIS_B_PORTS || rc=1
  return "$rc"
}

region_b_running() {
  _kafka_b kafka_running
}

region_b_state_dirs() {
  printf '%s\n' "$FLK_STACK_DIR/kafka-b"
  local p
  for p in $FLK_REDIS_B_PORTS; do printf '%s\n' "$(_redis_dir "$p")"; done
}

# Region b's addresses, while its broker runs. Region a's are the plain FLK_* lines; a process of
# region b takes these as its FLK_KAFKA_BROKERS, FLK_POSTGRES_URL and FLK_REDIS_URLS.
region_b_env_lines() {
  region_b_running || return 0
  cat <<EOF
export FLK_REGION_B_KAFKA_BROKERS=$FLK_BIND_HOST:$FLK_KAFKA_B_PORT
export FLK_REGION_B_POSTGRES_URL=postgres://postgres@$FLK_BIND_HOST:$FLK_POSTGRES_PORT/$FLK_POSTGRES_B_DB
export FLK_REGION_B_REDIS_URLS=$(flk_redis_urls "$FLK_REDIS_B_PORTS")
export FLK_REGION_B_LINK_UPSTREAM=$FLK_BIND_HOST:$FLK_KAFKA_B_LINK_PORT
export FLK_REGION_B_LINK_BROKERS=$FLK_BIND_HOST:$FLK_KAFKA_B_LINK_PROXY_PORT
EOF
}
