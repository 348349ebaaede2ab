# shellcheck shell=bash
# Jaeger v2 (the all-in-one `jaeger` binary, an OpenTelemetry Collector distribution) as the
# stack's trace backend: OTLP/HTTP in on $FLK_BIND_HOST:$FLK_JAEGER_OTLP_PORT (fed by the stack's
# collector, lib/otel.sh), spans kept in memory (the newest $FLK_JAEGER_MAX_TRACES traces; a
# restart forgets them), and the query API on http://$FLK_BIND_HOST:$FLK_JAEGER_PORT
# (`/api/services`, `/api/traces/{id}`, `/api/traces?service=flk&tags=...`), which Grafana's
# Jaeger data source reads. Sourced by stack.sh after lib/common.sh.
#
# The binary is built from the Go module proxy (module github.com/jaegertracing/jaeger, version
# $FLK_JAEGER_MODULE_VERSION, whose cmd/jaeger is Jaeger v2) and cached under
# $FLK_CACHE_DIR/jaeger/. A cold build downloads about 2 GB of modules and takes about ten minutes
# on 2 cores; a cached binary is reused as is. A binary built from the module serves a placeholder
# page at `/` instead of the Jaeger UI: the UI is a separate JavaScript build that no registry here
# serves. Set FLK_JAEGER_UI_ASSETS to an unpacked jaeger-ui build (the `assets` of a Jaeger
# release) to get the UI; the API works either way.

JAEGER_STATE="$FLK_STACK_DIR/jaeger"
JAEGER_PID="$JAEGER_STATE/jaeger.pid"
JAEGER_LOG="$JAEGER_STATE/jaeger.log"
JAEGER_CONFIG="$JAEGER_STATE/config.yaml"
JAEGER_HOME="$FLK_CACHE_DIR/jaeger"
JAEGER_BIN="$JAEGER_HOME/flk-jaeger"
JAEGER_STAMP="$JAEGER_HOME/.flk-jaeger-version"
JAEGER_MODULE="github.com/jaegertracing/jaeger"

jaeger_install() {
  if [[ -x "$JAEGER_BIN" && -f "$JAEGER_STAMP" && "$(cat "$JAEGER_STAMP")" == "$FLK_JAEGER_MODULE_VERSION" ]]; then
    return 0
  fi
  command -v go >/dev/null 2>&1 \
    || flk_die "jaeger: the go toolchain is not on PATH (needed once to build Jaeger)"
  local t0 log="$JAEGER_HOME/build.log" src="$JAEGER_HOME/src"
  t0="$(flk_now_ms)"
  rm -rf "$src"
  mkdir -p "$src"
  flk_log "jaeger: building $JAEGER_MODULE/cmd/jaeger@v$FLK_JAEGER_MODULE_VERSION (a cold build takes about ten minutes; log: $log)"
  # A throwaway module that requires Jaeger as a tool: `go build` then links exactly the versions
  # Jaeger's own go.mod selects.
  if ! (cd "$src" && go mod init flk-jaeger-build \
      && go get -tool "$JAEGER_MODULE/cmd/jaeger@v$FLK_JAEGER_MODULE_VERSION" \
      && go build -trimpath -ldflags='-s -w' -o "$JAEGER_HOME/flk-jaeger.new" \
        "$JAEGER_MODULE/cmd/jaeger") >"$log" 2>&1; then
    flk_tail_log "$log" 30
    flk_die "jaeger: building $JAEGER_MODULE/cmd/jaeger@v$FLK_JAEGER_MODULE_VERSION failed (full log: $log)"
  fi
  mv "$JAEGER_HOME/flk-jaeger.new" "$JAEGER_BIN"
  printf '%s' "$FLK_JAEGER_MODULE_VERSION" >"$JAEGER_STAMP"
  rm -rf "$src"
  flk_log "jaeger: built ($(( ($(flk_now_ms) - t0) / 1000 ))s)"
}

_jaeger_write_config() {
  mkdir -p "$JAEGER_STATE"
  local ui=""
  if [[ -n "${FLK_JAEGER_UI_ASSETS:-}" ]]; then
    [[ -f "$FLK_JAEGER_UI_ASSETS/index.html" ]] \
      || flk_die "jaeger: FLK_JAEGER_UI_ASSETS=$FLK_JAEGER_UI_ASSETS has no index.html (point it at an unpacked jaeger-ui build)"
    ui="    assets_path: $FLK_JAEGER_UI_ASSETS"
  fi
  cat >"$JAEGER_CONFIG" <<EOF
# Written by infra/scripts/stack.sh (lib/jaeger.sh); edits are lost at the next start.
# Only three listeners, all on $FLK_BIND_HOST: OTLP/HTTP in, the query API over HTTP and gRPC.
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    # Jaeger's own metrics would listen on :8888; nothing here reads them.
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: $FLK_JAEGER_MAX_TRACES
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: $FLK_BIND_HOST:$FLK_JAEGER_PORT
    grpc:
      endpoint: $FLK_BIND_HOST:$FLK_JAEGER_GRPC_PORT
$ui
receivers:
  otlp:
    protocols:
      http:
        endpoint: $FLK_BIND_HOST:$FLK_JAEGER_OTLP_PORT
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
EOF
}

jaeger_running() {
  flk_pid_alive "$JAEGER_PID" "flk-jaeger"
}

_jaeger_ready() {
  curl -fsS "http://$FLK_BIND_HOST:$FLK_JAEGER_PORT/api/services" >/dev/null 2>&1 \
    && flk_port_listening "$FLK_JAEGER_OTLP_PORT"
}

jaeger_start() {
  jaeger_install
  if jaeger_running; then
    flk_log "jaeger: already running (pid $(flk_pid_of "$JAEGER_PID"), http://$FLK_BIND_HOST:$FLK_JAEGER_PORT)"
    return 0
  fi
  flk_clear_stale_pid "$JAEGER_PID" "flk-jaeger"
  local port
  for port in "$FLK_JAEGER_PORT" "$FLK_JAEGER_GRPC_PORT" "$FLK_JAEGER_OTLP_PORT"; do
    flk_require_free_port "$port" "jaeger"
  done
  _jaeger_write_config
  printf '\n==== %s starting flk-jaeger\n' "$(date -Is)" >>"$JAEGER_LOG"
  flk_spawn "$JAEGER_PID" "$JAEGER_LOG" "$JAEGER_BIN" --config "$JAEGER_CONFIG"
  local deadline=$((SECONDS + FLK_START_TIMEOUT))
  until _jaeger_ready; do
    jaeger_running || { flk_tail_log "$JAEGER_LOG" 30; flk_die "jaeger: exited during start-up"; }
    ((SECONDS < deadline)) || { flk_tail_log "$JAEGER_LOG" 30; flk_die "jaeger: not answering on $FLK_JAEGER_PORT after ${FLK_START_TIMEOUT}s"; }
    sleep 0.2
  done
  flk_log "jaeger: ready on http://$FLK_BIND_HOST:$FLK_JAEGER_PORT (OTLP/HTTP in on $FLK_JAEGER_OTLP_PORT)"
}

jaeger_stop() {
  flk_stop_pidfile "$JAEGER_PID" "flk-jaeger" "jaeger" 20
}

jaeger_status() {
  if jaeger_running && _jaeger_ready; then
    printf '%-10s running  http://%s:%s (query API; OTLP/HTTP in on %s, pid %s)\n' jaeger \
      "$FLK_BIND_HOST" "$FLK_JAEGER_PORT" "$FLK_JAEGER_OTLP_PORT" "$(flk_pid_of "$JAEGER_PID")"
  else
    printf '%-10s stopped  http://%s:%s\n' jaeger "$FLK_BIND_HOST" "$FLK_JAEGER_PORT"
    return 1
  fi
}

jaeger_state_dirs() { printf '%s\n' "$JAEGER_STATE"; }

# Where the collector sends spans while Jaeger runs (lib/otel.sh reads it at its start).
jaeger_otlp_endpoint() {
  printf 'http://%s:%s' "$FLK_BIND_HOST" "$FLK_JAEGER_OTLP_PORT"
}

jaeger_env_lines() {
  jaeger_running || return 0
  cat <<EOF
export FLK_JAEGER_URL=http://$FLK_BIND_HOST:$FLK_JAEGER_PORT
EOF
}
