# shellcheck shell=bash
# Prometheus (Debian's package; its promtool checks the alert rules) on
# http://$FLK_BIND_HOST:$FLK_PROMETHEUS_PORT, scraping every `flk serve` process that registers
# itself in the file-based service discovery folder $FLK_PROMETHEUS_TARGETS_DIR: one JSON file per
# process or test, `[{"targets": ["127.0.0.1:PORT"], "labels": {"deployment": "..."}}]`. Files
# are re-read within a second; a file removed is a target dropped. Alert rules:
# infra/prometheus/alerts.yml. Sourced by stack.sh after lib/common.sh.

PROMETHEUS_STATE="$FLK_STACK_DIR/prometheus"
PROMETHEUS_PID="$PROMETHEUS_STATE/prometheus.pid"
PROMETHEUS_LOG="$PROMETHEUS_STATE/prometheus.log"
PROMETHEUS_CONFIG="$PROMETHEUS_STATE/prometheus.yml"
PROMETHEUS_MATCH="prometheus --config.file=$PROMETHEUS_CONFIG"

prometheus_install() {
  # Debian's package ships both binaries; it also installs a systemd unit this stack never uses.
  flk_need_cmd prometheus:prometheus promtool:prometheus
}

prometheus_running() {
  flk_pid_alive "$PROMETHEUS_PID" "$PROMETHEUS_MATCH"
}

_prometheus_ready() {
  curl -fsS "http://$FLK_BIND_HOST:$FLK_PROMETHEUS_PORT/-/ready" >/dev/null 2>&1
}

_prometheus_config() {
  cat <<CONFIG
# Written by infra/scripts/stack.sh (lib/prometheus.sh) at each start.
global:
  scrape_interval: ${FLK_PROMETHEUS_SCRAPE_INTERVAL}
  evaluation_interval: ${FLK_PROMETHEUS_SCRAPE_INTERVAL}
rule_files:
  - $FLK_REPO_ROOT/infra/prometheus/alerts.yml
scrape_configs:
  - job_name: flk
    file_sd_configs:
      - files: ['$FLK_PROMETHEUS_TARGETS_DIR/*.json']
        refresh_interval: 1s
CONFIG
}

prometheus_start() {
  prometheus_install
  if prometheus_running; then
    flk_log "prometheus: already running (pid $(flk_pid_of "$PROMETHEUS_PID"), http://$FLK_BIND_HOST:$FLK_PROMETHEUS_PORT)"
    return 0
  fi
  flk_clear_stale_pid "$PROMETHEUS_PID" "$PROMETHEUS_MATCH"
  flk_require_free_port "$FLK_PROMETHEUS_PORT" "prometheus"
  mkdir -p "$PROMETHEUS_STATE/data" "$FLK_PROMETHEUS_TARGETS_DIR"
  _prometheus_config >"$PROMETHEUS_CONFIG"
  promtool check config "$PROMETHEUS_CONFIG" >>"$PROMETHEUS_LOG" 2>&1 \
    || { flk_tail_log "$PROMETHEUS_LOG" 20; flk_die "prometheus: $PROMETHEUS_CONFIG does not check"; }
  flk_spawn "$PROMETHEUS_PID" "$PROMETHEUS_LOG" prometheus --config.file="$PROMETHEUS_CONFIG" \
    --storage.tsdb.path="$PROMETHEUS_STATE/data" --storage.tsdb.retention.time=1d \
    --web.listen-address="$FLK_BIND_HOST:$FLK_PROMETHEUS_PORT"
  flk_wait_for "$FLK_START_TIMEOUT" "prometheus" _prometheus_ready \
    || { flk_tail_log "$PROMETHEUS_LOG" 30; flk_die "prometheus: not ready on port $FLK_PROMETHEUS_PORT"; }
  flk_log "prometheus: ready on http://$FLK_BIND_HOST:$FLK_PROMETHEUS_PORT (targets in $FLK_PROMETHEUS_TARGETS_DIR)"
}

prometheus_stop() {
  flk_stop_pidfile "$PROMETHEUS_PID" "$PROMETHEUS_MATCH" "prometheus" 20
}

prometheus_status() {
  if prometheus_running && _prometheus_ready; then
    printf '%-10s running  http://%s:%s (pid %s)\n' prometheus "$FLK_BIND_HOST" "$FLK_PROMETHEUS_PORT" "$(flk_pid_of "$PROMETHEUS_PID")"
  else
    printf '%-10s stopped  http://%s:%s\n' prometheus "$FLK_BIND_HOST" "$FLK_PROMETHEUS_PORT"
    return 1
  fi
}

prometheus_env_lines() {
  prometheus_running || return 0
  cat <<ENVLINES
export FLK_PROMETHEUS_URL=http://$FLK_BIND_HOST:$FLK_PROMETHEUS_PORT
export FLK_PROMETHEUS_TARGETS_DIR=$FLK_PROMETHEUS_TARGETS_DIR
ENVLINES
}

prometheus_state_dirs() { printf '%s\n' "$PROMETHEUS_STATE"; }
