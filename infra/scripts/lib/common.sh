# shellcheck shell=bash
# Shared helpers for infra/scripts/*. Sourced, never executed.
#
# Everything is configurable through environment variables (defaults below).
# No systemd, no docker: every service runs as a plain background process on
# 127.0.0.1 with its state under $FLK_STACK_DIR.

# ---------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------
FLK_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FLK_REPO_ROOT="$(cd "$FLK_SCRIPTS_DIR/../.." && pwd)"
# Downloads and tool builds (Kafka jars, the collector, Jaeger, moto) live outside the clone, so a
# fresh clone (CI) reuses them; an empty cache is filled on first use.
FLK_CACHE_DIR="${FLK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flk}"
FLK_STACK_DIR="${FLK_STACK_DIR:-$FLK_REPO_ROOT/.local/stack}"
# Make both absolute (they are handed to daemons that chdir).
case "$FLK_STACK_DIR" in /*) ;; *) FLK_STACK_DIR="$PWD/$FLK_STACK_DIR" ;; esac
case "$FLK_CACHE_DIR" in /*) ;; *) FLK_CACHE_DIR="$PWD/$FLK_CACHE_DIR" ;; esac

# ---------------------------------------------------------------------------
# Ports and versions
# ---------------------------------------------------------------------------
FLK_BIND_HOST="127.0.0.1"
FLK_KAFKA_PORT="${FLK_KAFKA_PORT:-19092}"
FLK_KAFKA_CONTROLLER_PORT="${FLK_KAFKA_CONTROLLER_PORT:-19093}"
# The LINK listener (other regions' replicators) and the port its link proxy listens on.
FLK_KAFKA_LINK_PORT="${FLK_KAFKA_LINK_PORT:-19094}"
FLK_KAFKA_LINK_PROXY_PORT="${FLK_KAFKA_LINK_PROXY_PORT:-19095}"
FLK_POSTGRES_PORT="${FLK_POSTGRES_PORT:-15432}"
FLK_POSTGRES_DB="${FLK_POSTGRES_DB:-flk}"
FLK_REDIS_PORTS="${FLK_REDIS_PORTS:-16379 16380 16381}"
FLK_S3_PORT="${FLK_S3_PORT:-19000}"
FLK_S3_BUCKET="${FLK_S3_BUCKET:-flk-cold}"
FLK_OTEL_PORT="${FLK_OTEL_PORT:-14318}"
FLK_OTEL_FILE="${FLK_OTEL_FILE:-$FLK_STACK_DIR/otel/traces.jsonl}"
FLK_TSA_PORT="${FLK_TSA_PORT:-19318}"
# Jaeger: query API and UI (HTTP), query gRPC, and the OTLP/HTTP port the collector exports to.
FLK_JAEGER_PORT="${FLK_JAEGER_PORT:-17686}"
FLK_JAEGER_GRPC_PORT="${FLK_JAEGER_GRPC_PORT:-17685}"
FLK_JAEGER_OTLP_PORT="${FLK_JAEGER_OTLP_PORT:-14328}"
FLK_JAEGER_MAX_TRACES="${FLK_JAEGER_MAX_TRACES:-100000}"
FLK_PROMETHEUS_PORT="${FLK_PROMETHEUS_PORT:-19090}"
FLK_PROMETHEUS_SCRAPE_INTERVAL="${FLK_PROMETHEUS_SCRAPE_INTERVAL:-1s}"
FLK_PROMETHEUS_TARGETS_DIR="${FLK_PROMETHEUS_TARGETS_DIR:-$FLK_STACK_DIR/prometheus/targets}"

FLK_KAFKA_VERSION="${FLK_KAFKA_VERSION:-4.1.1}"
FLK_KAFKA_LOG4J_VERSION="${FLK_KAFKA_LOG4J_VERSION:-2.24.3}"
FLK_KAFKA_HEAP="${FLK_KAFKA_HEAP:-512m}"
FLK_KAFKA_PARTITIONS="${FLK_KAFKA_PARTITIONS:-12}"
FLK_KAFKA_LIBS="${FLK_KAFKA_LIBS:-$FLK_CACHE_DIR/kafka/libs}"
FLK_MOTO_VERSION="${FLK_MOTO_VERSION:-5.2.5}"
FLK_MOTO_VENV="${FLK_MOTO_VENV:-$FLK_CACHE_DIR/moto-venv}"
FLK_PG_MAJOR="${FLK_PG_MAJOR:-15}"
# Collector core and contrib share the 0.x version; the confmap providers are versioned 1.x.
FLK_OTELCOL_VERSION="${FLK_OTELCOL_VERSION:-0.161.0}"
FLK_OTELCOL_PROVIDER_VERSION="${FLK_OTELCOL_PROVIDER_VERSION:-1.67.0}"
# Jaeger v2 is the module's cmd/jaeger; the module keeps its v1 version numbers.
FLK_JAEGER_MODULE_VERSION="${FLK_JAEGER_MODULE_VERSION:-1.76.0}"
# RFC 3161 TSA (lib/tsa.sh): key type of the generated CA and TSA keys (ec = ECDSA P-256,
# rsa = RSA 2048) and the certificates' validity. Only used when the keys are created.
FLK_TSA_KEY_ALG="${FLK_TSA_KEY_ALG:-ec}"
FLK_TSA_CERT_DAYS="${FLK_TSA_CERT_DAYS:-3650}"

# Seconds to wait for a service to become ready.
FLK_KAFKA_START_TIMEOUT="${FLK_KAFKA_START_TIMEOUT:-90}"
FLK_START_TIMEOUT="${FLK_START_TIMEOUT:-30}"

# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------
flk_log()  { printf '[stack] %s\n' "$*" >&2; }
flk_warn() { printf '[stack] WARNING: %s\n' "$*" >&2; }
flk_die()  { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# Print the last lines of a log file to stderr (used when a start fails).
flk_tail_log() {
  local file="$1" n="${2:-40}"
  if [[ -f "$file" ]]; then
    printf '[stack] ---- last %s lines of %s ----\n' "$n" "$file" >&2
    tail -n "$n" "$file" >&2 || true
    printf '[stack] ---- end of %s ----\n' "$file" >&2
  else
    printf '[stack] (no log file at %s)\n' "$file" >&2
  fi
}

# Milliseconds since the epoch, for timings.
flk_now_ms() { date +%s%3N; }

# ---------------------------------------------------------------------------
# Packages
# ---------------------------------------------------------------------------
_FLK_APT_UPDATED="${_FLK_APT_UPDATED:-0}"

# apt-get install -y PKG... (runs `apt-get update` at most once per invocation).
# Services are never started by the package's maintainer scripts: if the machine
# has no /usr/sbin/policy-rc.d we put a temporary one in place.
flk_apt_install() {
  [[ $# -gt 0 ]] || return 0
  if [[ $EUID -ne 0 ]]; then
    flk_die "need to install: $* (run as root, or install them yourself: apt-get install -y $*)"
  fi
  command -v apt-get >/dev/null || flk_die "apt-get not found; install by hand: $*"
  export DEBIAN_FRONTEND=noninteractive
  local log="$FLK_CACHE_DIR/apt.log"
  mkdir -p "$FLK_CACHE_DIR"
  if [[ "$_FLK_APT_UPDATED" != 1 ]]; then
    flk_log "apt-get update (log: $log)"
    apt-get update -qq >"$log" 2>&1 || { flk_tail_log "$log" 20; flk_die "apt-get update failed"; }
    _FLK_APT_UPDATED=1
  fi
  local policy=/usr/sbin/policy-rc.d placed=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# placed by flk infra/scripts (temporary)\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    placed=1
  fi
  flk_log "apt-get install -y $*"
  local rc=0
  apt-get install -y -qq --no-install-recommends "$@" >>"$log" 2>&1 || rc=$?
  if [[ $placed == 1 ]] && grep -q 'placed by flk infra/scripts' "$policy" 2>/dev/null; then
    rm -f "$policy"
  fi
  [[ $rc -eq 0 ]] || { flk_tail_log "$log" 30; flk_die "apt-get install $* failed (exit $rc)"; }
}

# Ensure commands exist, installing the Debian package that provides each.
# Usage: flk_need_cmd CMD:PACKAGE ...
flk_need_cmd() {
  local spec cmd pkg missing=()
  for spec in "$@"; do
    cmd="${spec%%:*}"; pkg="${spec#*:}"
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    flk_apt_install "${missing[@]}"
  fi
}

# ---------------------------------------------------------------------------
# Processes, pid files and ports
# ---------------------------------------------------------------------------

# True if PID is a live process. A zombie counts as dead: daemons that we
# detach are re-parented to PID 1, which may reap them only a second later.
flk_proc_alive() {
  local pid="$1" stat
  kill -0 "$pid" 2>/dev/null || return 1
  stat="$(cut -d')' -f2 "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f2)" || return 1
  [[ -n "$stat" && "$stat" != Z ]]
}

# flk_pid_alive PIDFILE [CMDLINE_SUBSTRING]
# True when the pid file names a live process (whose command line contains the
# substring, if given: guards against a recycled pid).
flk_pid_alive() {
  local pidfile="$1" match="${2:-}" pid
  [[ -s "$pidfile" ]] || return 1
  pid="$(head -n1 "$pidfile" 2>/dev/null | tr -dc '0-9')"
  [[ -n "$pid" ]] || return 1
  flk_proc_alive "$pid" || return 1
  if [[ -n "$match" ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$match" || return 1
  fi
  return 0
}

flk_pid_of() { head -n1 "$1" 2>/dev/null | tr -dc '0-9'; }

# Remove a pid file that does not name a live process (says so).
flk_clear_stale_pid() {
  local pidfile="$1" match="${2:-}"
  if [[ -e "$pidfile" ]] && ! flk_pid_alive "$pidfile" "$match"; then
    flk_warn "removing stale pid file $pidfile (pid $(flk_pid_of "$pidfile") is not running)"
    rm -f "$pidfile"
  fi
}

# True if something listens on 127.0.0.1:PORT (or any address on PORT).
flk_port_listening() {
  local port="$1"
  if command -v ss >/dev/null 2>&1; then
    [[ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
  fi
}

# Die with a helpful message if PORT is taken by someone else.
flk_require_free_port() {
  local port="$1" what="$2"
  if flk_port_listening "$port"; then
    local who=""
    command -v ss >/dev/null 2>&1 && who="$(ss -Hltnp "sport = :$port" 2>/dev/null | head -n3)"
    flk_die "$what: port $port is already in use by another process (not ours).
  ${who:-<ss not available>}
  Stop that process, or pick other ports (see docs/runbooks/local-stack.md)."
  fi
}

# Send SIGTERM to the pid in PIDFILE, wait up to TIMEOUT s, then SIGKILL.
flk_stop_pidfile() {
  local pidfile="$1" match="$2" what="$3" timeout="${4:-30}" pid i
  if ! flk_pid_alive "$pidfile" "$match"; then
    flk_clear_stale_pid "$pidfile" "$match"
    flk_log "$what: not running"
    return 0
  fi
  pid="$(flk_pid_of "$pidfile")"
  flk_log "$what: stopping (pid $pid, SIGTERM)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    flk_proc_alive "$pid" || break
    sleep 0.1
  done
  if flk_proc_alive "$pid"; then
    flk_warn "$what: still alive after ${timeout}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$pidfile"
  flk_log "$what: stopped"
}

# flk_kill_pidfile PIDFILE MATCH WHAT: SIGKILL (a crash: no shutdown hooks, no flush) and wait
# until the process is gone. Its pid file stays behind, as after a real crash.
flk_kill_pidfile() {
  local pidfile="$1" match="$2" what="$3" pid i
  if ! flk_pid_alive "$pidfile" "$match"; then
    flk_log "$what: not running"
    return 0
  fi
  pid="$(flk_pid_of "$pidfile")"
  flk_log "$what: kill -9 (pid $pid)"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    flk_proc_alive "$pid" || break
    sleep 0.1
  done
  flk_proc_alive "$pid" && flk_die "$what: pid $pid survived SIGKILL"
  flk_log "$what: killed"
}

# flk_signal_pidfile PIDFILE MATCH WHAT SIGNAL [CHILDREN]: send SIGNAL (STOP or CONT) to the
# process of PIDFILE, and to its children when CHILDREN is "children" (Postgres backends).
# SIGSTOP freezes a service without closing a socket: clients see silence, not a refusal.
flk_signal_pidfile() {
  local pidfile="$1" match="$2" what="$3" signal="$4" children="${5:-}" pid
  flk_pid_alive "$pidfile" "$match" || flk_die "$what: not running, nothing to $signal"
  pid="$(flk_pid_of "$pidfile")"
  if [[ "$children" == children ]]; then pkill "-$signal" -P "$pid" 2>/dev/null || true; fi
  kill "-$signal" "$pid" || flk_die "$what: kill -$signal $pid failed"
  flk_log "$what: SIG$signal sent (pid $pid)"
}

# flk_wait_for SECONDS DESCRIPTION CMD... : poll CMD every 0.2 s until it succeeds.
flk_wait_for() {
  local timeout="$1" desc="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  while ! "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      flk_warn "timed out after ${timeout}s waiting for $desc"
      return 1
    fi
    sleep 0.2
  done
}

# Start CMD... fully detached (own session, stdin closed, output to LOG) and
# write its pid to PIDFILE.
# The child writes its own pid (setsid may fork), and does not inherit the
# stack lock (fd 9).
flk_spawn() {
  local pidfile="$1" logfile="$2"; shift 2
  rm -f "$pidfile"
  # shellcheck disable=SC2016 # expanded by the child shell
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 9>&- &
  local i
  for ((i = 0; i < 50; i++)); do [[ -s "$pidfile" ]] && return 0; sleep 0.02; done
  flk_die "could not start: $* (no pid file $pidfile)"
}

# ---------------------------------------------------------------------------
# Environment for clients
# ---------------------------------------------------------------------------
# Comma-separated URLs of the Redis nodes on the given ports (default: $FLK_REDIS_PORTS).
flk_redis_urls() {
  local p out=""
  for p in ${1:-$FLK_REDIS_PORTS}; do out+="${out:+,}redis://$FLK_BIND_HOST:$p"; done
  printf '%s' "$out"
}

flk_env_lines() {
  cat <<EOF
export FLK_KAFKA_BROKERS=$FLK_BIND_HOST:$FLK_KAFKA_PORT
export FLK_POSTGRES_URL=postgres://postgres@$FLK_BIND_HOST:$FLK_POSTGRES_PORT/$FLK_POSTGRES_DB
export FLK_REDIS_URLS=$(flk_redis_urls)
export FLK_S3_ENDPOINT=http://$FLK_BIND_HOST:$FLK_S3_PORT
export FLK_S3_BUCKET=$FLK_S3_BUCKET
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export FLK_KAFKA_LIBS=$FLK_KAFKA_LIBS
export FLK_KAFKA_LINK_UPSTREAM=$FLK_BIND_HOST:$FLK_KAFKA_LINK_PORT
export FLK_KAFKA_LINK_BROKERS=$FLK_BIND_HOST:$FLK_KAFKA_LINK_PROXY_PORT
EOF
  # Trace export only while the collector runs (lib/otel.sh).
  if declare -F otel_env_lines >/dev/null; then otel_env_lines; fi
  # Time-stamping authority only while it runs (lib/tsa.sh).
  if declare -F tsa_env_lines >/dev/null; then tsa_env_lines; fi
  # Jaeger only while it runs (lib/jaeger.sh).
  if declare -F jaeger_env_lines >/dev/null; then jaeger_env_lines; fi
  # Prometheus only while it runs (lib/prometheus.sh).
  if declare -F prometheus_env_lines >/dev/null; then prometheus_env_lines; fi
  # Region b only while its broker runs (lib/region_b.sh).
  if declare -F region_b_env_lines >/dev/null; then region_b_env_lines; fi
}
