#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Local FLK stack on 127.0.0.1 without systemd or docker:
#   Kafka (KRaft, jars from Maven Central), PostgreSQL, 3 x Redis, S3 (moto), an
#   OpenTelemetry Collector (built from the Go module proxy) receiving traces and passing
#   them to Jaeger (the trace backend, also built from its Go module), Prometheus, and an
#   RFC 3161 time-stamping authority (openssl ts behind a small Python HTTP server).
#
# Usage: infra/scripts/stack.sh COMMAND [SERVICE...]
# See usage() below and docs/runbooks/local-stack.md.
set -euo pipefail

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/kafka.sh
source "$FLK_SCRIPTS_DIR/lib/kafka.sh"
# shellcheck source=lib/postgres.sh
source "$FLK_SCRIPTS_DIR/lib/postgres.sh"
# shellcheck source=lib/redis.sh
source "$FLK_SCRIPTS_DIR/lib/redis.sh"
# shellcheck source=lib/s3.sh
source "$FLK_SCRIPTS_DIR/lib/s3.sh"
# shellcheck source=lib/jaeger.sh
source "$FLK_SCRIPTS_DIR/lib/jaeger.sh"
# shellcheck source=lib/otel.sh
source "$FLK_SCRIPTS_DIR/lib/otel.sh"
# shellcheck source=lib/tsa.sh
source "$FLK_SCRIPTS_DIR/lib/tsa.sh"
# shellcheck source=lib/prometheus.sh
source "$FLK_SCRIPTS_DIR/lib/prometheus.sh"
# shellcheck source=lib/region_b.sh
source "$FLK_SCRIPTS_DIR/lib/region_b.sh"

# What `up` starts when no service is named.
ALL_SERVICES=(postgres redis s3 jaeger otel tsa prometheus kafka)
# Every service, in stack order (region b only when asked for: `up --regions a,b`).
ORDERED_SERVICES=("${ALL_SERVICES[@]}" region_b)

usage() {
  cat <<EOF
Usage: $(basename "$0") COMMAND [--regions a,b] [SERVICE...]

Commands:
  up [SVC...]       install what is missing, start services (default: all), wait until
                    each answers, write $FLK_STACK_DIR/env.sh and print its export lines
  down [SVC...]     stop services (default: all); state is kept
  start SVC...      same as up for the given services, without printing the env
                    (e.g. after 'stop postgres')
  stop SVC...       same as down, for the given services
  kill SVC...       SIGKILL (a crash) of kafka, postgres or redis; 'start SVC' brings it back
  pause SVC...      SIGSTOP (a frozen process: sockets open, nothing answers) of kafka,
                    postgres (with its backends), redis or s3; 'resume SVC' thaws it
  restart SVC...    stop then start
  status [SVC...]   one line per service; exit status 1 if any is not running
  env               print the export lines (source them: eval "\$($0 env)")
  reset [SVC...]    stop, then delete the services' state (Kafka topics, Postgres data, TSA CA)
  help              this text

--regions a,b adds region b (the second region of a geo setup) to the services; with no other
service named, up starts region a's whole stack and region b.

Services: postgres (pg), redis, redis:PORT (one node), s3 (moto), jaeger (trace backend),
  otel (collector; sends spans to Jaeger when it runs),
  tsa (RFC 3161 time-stamping), prometheus (scrapes flk processes registered in
  FLK_PROMETHEUS_TARGETS_DIR), kafka, region-b (a second Kafka cluster on
  FLK_KAFKA_B_PORT=$FLK_KAFKA_B_PORT, database $FLK_POSTGRES_B_DB on the same Postgres, Redis on
  FLK_REDIS_B_PORTS="$FLK_REDIS_B_PORTS"; its addresses are the FLK_REGION_B_* lines of env.sh).
Ports (env): FLK_KAFKA_PORT=$FLK_KAFKA_PORT FLK_KAFKA_CONTROLLER_PORT=$FLK_KAFKA_CONTROLLER_PORT
  FLK_POSTGRES_PORT=$FLK_POSTGRES_PORT FLK_REDIS_PORTS="$FLK_REDIS_PORTS" FLK_S3_PORT=$FLK_S3_PORT
  FLK_OTEL_PORT=$FLK_OTEL_PORT (OTLP/HTTP; spans to FLK_OTEL_FILE=$FLK_OTEL_FILE and Jaeger)
  FLK_JAEGER_PORT=$FLK_JAEGER_PORT (query API) FLK_JAEGER_OTLP_PORT=$FLK_JAEGER_OTLP_PORT
  FLK_TSA_PORT=$FLK_TSA_PORT (RFC 3161 over HTTP; CA and keys in $FLK_STACK_DIR/tsa)
  FLK_PROMETHEUS_PORT=$FLK_PROMETHEUS_PORT (scrape interval $FLK_PROMETHEUS_SCRAPE_INTERVAL)
State: FLK_STACK_DIR=$FLK_STACK_DIR   Cache: $FLK_CACHE_DIR
EOF
}

# Parse service names into SVCS (canonical names, in stack order) and
# REDIS_PORTS_SEL (empty = all nodes).
parse_services() {
  SVCS=()
  REDIS_PORTS_SEL=()
  local want=() args=() a s regions=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --regions) [[ $# -ge 2 ]] || flk_die "--regions needs a list, e.g. --regions a,b"; regions="$2"; shift 2 ;;
      --regions=*) regions="${1#--regions=}"; shift ;;
      *) args+=("$1"); shift ;;
    esac
  done
  case ",$regions," in
    ,, | ,a,) ;;
    ,a,b, | ,b,a,) [[ ${#args[@]} -gt 0 ]] || want=("${ALL_SERVICES[@]}"); args+=(region-b) ;;
    *) flk_die "--regions: the local stack has regions a and b (got '$regions')" ;;
  esac
  if [[ ${#args[@]} -eq 0 ]]; then
    want=("${ALL_SERVICES[@]}")
  fi
  for a in "${args[@]}"; do
    case "$a" in
      all) want+=("${ALL_SERVICES[@]}") ;;
      kafka) want+=(kafka) ;;
      postgres | postgresql | pg) want+=(postgres) ;;
      redis) want+=(redis); _REDIS_ALL=1 ;;
      redis:[0-9]*) want+=(redis); REDIS_PORTS_SEL+=("${a#redis:}") ;;
      s3 | moto) want+=(s3) ;;
      otel | otelcol | collector) want+=(otel) ;;
      jaeger) want+=(jaeger) ;;
      tsa | timestamp | rfc3161) want+=(tsa) ;;
      prometheus | prom) want+=(prometheus) ;;
      region-b | region_b | b) want+=(region_b) ;;
      *) flk_die "unknown service '$a' (known: postgres redis redis:PORT s3 jaeger otel tsa prometheus kafka region-b all)" ;;
    esac
  done
  if [[ "${_REDIS_ALL:-0}" == 1 ]]; then
    REDIS_PORTS_SEL=()
  fi
  for s in "${ORDERED_SERVICES[@]}"; do
    if [[ " ${want[*]} " == *" $s "* ]]; then
      SVCS+=("$s")
    fi
  done
}

has_svc() { [[ " ${SVCS[*]} " == *" $1 "* ]]; }

take_lock() {
  mkdir -p "$FLK_STACK_DIR"
  exec 9>"$FLK_STACK_DIR/.lock"
  if ! flock -n 9; then
    flk_log "another stack.sh is running; waiting for its lock ($FLK_STACK_DIR/.lock)"
    flock -w 900 9 || flk_die "could not take the lock $FLK_STACK_DIR/.lock within 15 min"
  fi
}

write_env_file() {
  mkdir -p "$FLK_STACK_DIR"
  {
    echo "# Written by infra/scripts/stack.sh up at $(date -Is). Source it: . $FLK_STACK_DIR/env.sh"
    flk_env_lines
  } >"$FLK_STACK_DIR/env.sh.tmp"
  mv "$FLK_STACK_DIR/env.sh.tmp" "$FLK_STACK_DIR/env.sh"
}

# cmd_up [quiet]: quiet = do not print the export lines on stdout (start/restart).
cmd_up() {
  local quiet="${1:-}" t0; t0="$(flk_now_ms)"
  take_lock
  local s
  # 1. Install / download whatever is missing (no-op when cached).
  for s in "${SVCS[@]}"; do
    "${s}_install"
  done
  # 2. Launch Kafka first (slowest to boot), start the others meanwhile, then
  #    wait for Kafka to answer.
  if has_svc kafka; then kafka_start; fi
  if has_svc region_b; then region_b_start; fi
  # Region b's database lives on the stack's Postgres server.
  if has_svc postgres || has_svc region_b; then postgres_start; fi
  if has_svc redis; then redis_start "${REDIS_PORTS_SEL[@]}"; fi
  if has_svc s3; then s3_start; fi
  # Jaeger before the collector: the collector exports to it only if it runs.
  if has_svc jaeger; then jaeger_start; fi
  if has_svc otel; then otel_start; fi
  if has_svc tsa; then tsa_start; fi
  if has_svc prometheus; then prometheus_start; fi
  if has_svc kafka; then kafka_wait; fi
  if has_svc region_b; then region_b_wait; fi
  write_env_file
  flk_log "up: ${SVCS[*]} ready in $(( ($(flk_now_ms) - t0) / 1000 )).$(( ($(flk_now_ms) - t0) % 1000 / 100 ))s; env written to $FLK_STACK_DIR/env.sh"
  [[ "$quiet" == quiet ]] || flk_env_lines
}

cmd_down() {
  take_lock
  # Reverse order: Kafka first, Postgres last.
  if has_svc region_b; then region_b_stop; fi
  if has_svc kafka; then kafka_stop; fi
  if has_svc prometheus; then prometheus_stop; fi
  if has_svc tsa; then tsa_stop; fi
  if has_svc otel; then otel_stop; fi
  if has_svc jaeger; then jaeger_stop; fi
  if has_svc s3; then s3_stop; fi
  if has_svc redis; then redis_stop "${REDIS_PORTS_SEL[@]}"; fi
  if has_svc postgres; then postgres_stop; fi
}

cmd_kill() {
  take_lock
  local s
  for s in "${SVCS[@]}"; do
    case "$s" in
      kafka) kafka_kill ;;
      postgres) postgres_kill ;;
      redis) redis_kill "${REDIS_PORTS_SEL[@]}" ;;
      *) flk_die "kill: only kafka, postgres and redis can be killed (got $s)" ;;
    esac
  done
}

# cmd_signal STOP|CONT: freeze or thaw the named services (pause / resume).
cmd_signal() {
  local signal="$1" s port
  for s in "${SVCS[@]}"; do
    case "$s" in
      kafka) flk_signal_pidfile "$KAFKA_PID" "$KAFKA_PROPS" "$KAFKA_NAME" "$signal" ;;
      postgres) flk_signal_pidfile "$PG_DATA/postmaster.pid" postgres postgres "$signal" children ;;
      redis)
        _redis_select "${REDIS_PORTS_SEL[@]}"
        for port in "${REDIS_SEL[@]}"; do
          flk_signal_pidfile "$(_redis_pid "$port")" redis-server "redis:$port" "$signal"
        done ;;
      s3) flk_signal_pidfile "$S3_PID" moto_server s3 "$signal" ;;
      *) flk_die "pause/resume: only kafka, postgres, redis and s3 (got $s)" ;;
    esac
  done
}

cmd_status() {
  local rc=0
  if has_svc postgres; then postgres_status || rc=1; fi
  if has_svc redis; then redis_status "${REDIS_PORTS_SEL[@]}" || rc=1; fi
  if has_svc s3; then s3_status || rc=1; fi
  if has_svc jaeger; then jaeger_status || rc=1; fi
  if has_svc otel; then otel_status || rc=1; fi
  if has_svc tsa; then tsa_status || rc=1; fi
  if has_svc prometheus; then prometheus_status || rc=1; fi
  if has_svc kafka; then kafka_status || rc=1; fi
  if has_svc region_b; then region_b_status || rc=1; fi
  return "$rc"
}

cmd_reset() {
  cmd_down
  local s d
  for s in "${SVCS[@]}"; do
    while IFS= read -r d; do
      [[ -n "$d" && "$d" == "$FLK_STACK_DIR"/* ]] || continue
      flk_log "reset: removing $d"
      rm -rf "$d"
    done < <("${s}_state_dirs")
  done
}

main() {
  local cmd="${1:-help}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    up)
      parse_services "$@"; cmd_up ;;
    start)
      [[ $# -gt 0 ]] || flk_die "start: name the services (e.g. 'start postgres'), or use 'up'"
      parse_services "$@"; cmd_up quiet ;;
    down)
      parse_services "$@"
      # A plain `down` also stops region b when it runs, so nothing is left behind.
      if [[ $# -eq 0 ]] && region_b_running; then SVCS+=(region_b); fi
      cmd_down ;;
    stop)
      [[ $# -gt 0 ]] || flk_die "stop: name the services (e.g. 'stop postgres'), or use 'down'"
      parse_services "$@"; cmd_down ;;
    kill)
      [[ $# -gt 0 ]] || flk_die "kill: name the services (kafka, postgres, redis)"
      parse_services "$@"; cmd_kill ;;
    pause)
      [[ $# -gt 0 ]] || flk_die "pause: name the services (kafka, postgres, redis, s3)"
      parse_services "$@"; cmd_signal STOP ;;
    resume)
      [[ $# -gt 0 ]] || flk_die "resume: name the services (kafka, postgres, redis, s3)"
      parse_services "$@"; cmd_signal CONT ;;
    restart)
      [[ $# -gt 0 ]] || flk_die "restart: name the services"
      parse_services "$@"; cmd_down; cmd_up quiet ;;
    status)
      parse_services "$@"
      if [[ $# -eq 0 ]] && region_b_running; then SVCS+=(region_b); fi
      cmd_status ;;
    env)
      flk_env_lines ;;
    reset)
      parse_services "$@"; cmd_reset ;;
    help | -h | --help)
      usage ;;
    *)
      usage >&2; flk_die "unknown command '$cmd'" ;;
  esac
}

main "$@"
