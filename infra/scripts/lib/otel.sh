# shellcheck shell=bash
# OpenTelemetry Collector for traces: OTLP/HTTP in on $FLK_BIND_HOST:$FLK_OTEL_PORT, every span
# out as OTLP JSON lines in $FLK_OTEL_FILE (one line per export request; rotated at 64 MB) and,
# when Jaeger runs at the collector's start (lib/jaeger.sh), over OTLP/HTTP to Jaeger as well.
# Sourced by stack.sh after lib/common.sh and lib/jaeger.sh.
#
# The collector is built from the Go module proxy with the collector builder (ocb) and a manifest
# holding only the OTLP receiver and the file, OTLP/HTTP and debug exporters, then cached under
# $FLK_CACHE_DIR/otelcol/. A cold build takes a few minutes on 2 cores; with Go's module and build
# caches warm it takes seconds, and a cached binary is reused as is.

OTEL_STATE="$FLK_STACK_DIR/otel"
OTEL_PID="$OTEL_STATE/otelcol.pid"
OTEL_LOG="$OTEL_STATE/otelcol.log"
OTEL_CONFIG="$OTEL_STATE/config.yaml"
OTEL_HOME="$FLK_CACHE_DIR/otelcol"
OTEL_BIN="$OTEL_HOME/flk-otelcol"
OTEL_STAMP="$OTEL_HOME/.flk-otelcol-version"
# The version plus the manifest's components: a binary built from another manifest is rebuilt.
OTEL_BUILD_ID="$FLK_OTELCOL_VERSION+otlp-file-otlphttp-debug"

_otel_manifest() {
  local v="$FLK_OTELCOL_VERSION"
  cat <<EOF
dist:
  name: flk-otelcol
  description: FLK local collector (OTLP/HTTP in, JSON lines file out)
  output_path: $OTEL_HOME/build
  version: $v
receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver v$v
exporters:
  - gomod: go.opentelemetry.io/collector/exporter/debugexporter v$v
  - gomod: go.opentelemetry.io/collector/exporter/otlphttpexporter v$v
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter v$v
providers:
  - gomod: go.opentelemetry.io/collector/confmap/provider/fileprovider v$FLK_OTELCOL_PROVIDER_VERSION
  - gomod: go.opentelemetry.io/collector/confmap/provider/envprovider v$FLK_OTELCOL_PROVIDER_VERSION
EOF
}

otel_install() {
  if [[ -x "$OTEL_BIN" && -f "$OTEL_STAMP" && "$(cat "$OTEL_STAMP")" == "$OTEL_BUILD_ID" ]]; then
    return 0
  fi
  command -v go >/dev/null 2>&1 \
    || flk_die "otel: the go toolchain is not on PATH (needed once to build the collector)"
  local t0 log="$OTEL_HOME/build.log"; t0="$(flk_now_ms)"
  mkdir -p "$OTEL_HOME"
  flk_log "otel: building collector $FLK_OTELCOL_VERSION with the collector builder (log: $log)"
  # The builder's version must match the components': it pins the collector core it links.
  if ! GOBIN="$OTEL_HOME/bin" go install \
      "go.opentelemetry.io/collector/cmd/builder@v$FLK_OTELCOL_VERSION" >"$log" 2>&1; then
    flk_tail_log "$log" 30
    flk_die "otel: go install go.opentelemetry.io/collector/cmd/builder@v$FLK_OTELCOL_VERSION failed"
  fi
  _otel_manifest >"$OTEL_HOME/manifest.yaml"
  rm -rf "$OTEL_HOME/build"
  if ! "$OTEL_HOME/bin/builder" --config "$OTEL_HOME/manifest.yaml" >>"$log" 2>&1; then
    flk_tail_log "$log" 30
    flk_die "otel: building the collector failed"
  fi
  mv "$OTEL_HOME/build/flk-otelcol" "$OTEL_BIN"
  printf '%s' "$OTEL_BUILD_ID" >"$OTEL_STAMP"
  flk_log "otel: collector $FLK_OTELCOL_VERSION built ($(( ($(flk_now_ms) - t0) / 1000 ))s)"
}

_otel_write_config() {
  mkdir -p "$OTEL_STATE"
  local jaeger_exporter="" exporters="[file]"
  if declare -F jaeger_running >/dev/null && jaeger_running; then
    exporters="[file, otlphttp/jaeger]"
    jaeger_exporter="  otlphttp/jaeger:
    endpoint: $(jaeger_otlp_endpoint)
    compression: none"
  fi
  cat >"$OTEL_CONFIG" <<EOF
# Written by infra/scripts/stack.sh (lib/otel.sh); edits are lost at the next start.
receivers:
  otlp:
    protocols:
      http:
        endpoint: $FLK_BIND_HOST:$FLK_OTEL_PORT
exporters:
  file:
    path: $FLK_OTEL_FILE
    format: json
    flush_interval: 200ms
    rotation:
      max_megabytes: 64
      max_backups: 1
$jaeger_exporter
service:
  telemetry:
    # The collector's own metrics would listen on :8888; nothing here reads them.
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: $exporters
EOF
}

otel_running() {
  flk_pid_alive "$OTEL_PID" "flk-otelcol"
}

otel_start() {
  otel_install
  if otel_running; then
    flk_log "otel: already running (pid $(flk_pid_of "$OTEL_PID"), http://$FLK_BIND_HOST:$FLK_OTEL_PORT)"
    return 0
  fi
  flk_clear_stale_pid "$OTEL_PID" "flk-otelcol"
  flk_require_free_port "$FLK_OTEL_PORT" "otel (collector)"
  _otel_write_config
  printf '\n==== %s starting flk-otelcol\n' "$(date -Is)" >>"$OTEL_LOG"
  flk_spawn "$OTEL_PID" "$OTEL_LOG" "$OTEL_BIN" --config "$OTEL_CONFIG"
  local deadline=$((SECONDS + FLK_START_TIMEOUT))
  until flk_port_listening "$FLK_OTEL_PORT"; do
    otel_running || { flk_tail_log "$OTEL_LOG" 30; flk_die "otel: the collector exited during start-up"; }
    ((SECONDS < deadline)) || { flk_tail_log "$OTEL_LOG" 30; flk_die "otel: port $FLK_OTEL_PORT not listening after ${FLK_START_TIMEOUT}s"; }
    sleep 0.2
  done
  local to="$FLK_OTEL_FILE"
  if grep -q 'otlphttp/jaeger' "$OTEL_CONFIG"; then to="$to and Jaeger"; fi
  flk_log "otel: ready on http://$FLK_BIND_HOST:$FLK_OTEL_PORT (spans to $to)"
}

otel_stop() {
  flk_stop_pidfile "$OTEL_PID" "flk-otelcol" "otel" 20
}

otel_status() {
  if otel_running && flk_port_listening "$FLK_OTEL_PORT"; then
    printf '%-10s running  http://%s:%s (collector %s, pid %s, spans to %s)\n' otel "$FLK_BIND_HOST" \
      "$FLK_OTEL_PORT" "$FLK_OTELCOL_VERSION" "$(flk_pid_of "$OTEL_PID")" "$FLK_OTEL_FILE"
  else
    printf '%-10s stopped  http://%s:%s\n' otel "$FLK_BIND_HOST" "$FLK_OTEL_PORT"
    return 1
  fi
}

otel_state_dirs() { printf '%s\n' "$OTEL_STATE"; }

# Export lines for clients, printed only while the collector runs: a process pointed at a
# collector that is not there would log an export error every few seconds.
otel_env_lines() {
  otel_running || return 0
  cat <<EOF
export FLK_OTLP_ENDPOINT=http://$FLK_BIND_HOST:$FLK_OTEL_PORT
export FLK_OTEL_FILE=$FLK_OTEL_FILE
EOF
}
