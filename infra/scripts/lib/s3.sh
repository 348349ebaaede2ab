# shellcheck shell=bash
# S3-compatible store for tests: moto's server mode, in a venv under .cache.
# In-memory only: buckets and objects are gone after a stop. `start` creates
# $FLK_S3_BUCKET. Sourced by stack.sh after lib/common.sh.

S3_STATE="$FLK_STACK_DIR/s3"
S3_PID="$S3_STATE/moto.pid"
S3_LOG="$S3_STATE/moto.log"
S3_STAMP="$FLK_MOTO_VENV/.flk-moto-version"

s3_install() {
  if [[ -x "$FLK_MOTO_VENV/bin/moto_server" && -f "$S3_STAMP" \
        && "$(cat "$S3_STAMP")" == "$FLK_MOTO_VERSION" ]]; then
    return 0
  fi
  flk_need_cmd python3:python3
  local t0; t0="$(flk_now_ms)"
  if [[ ! -x "$FLK_MOTO_VENV/bin/pip" ]]; then
    rm -rf "$FLK_MOTO_VENV"
    flk_log "s3: creating venv $FLK_MOTO_VENV"
    if ! python3 -m venv "$FLK_MOTO_VENV" >/dev/null 2>&1; then
      # Debian's python3 needs python3-venv for ensurepip.
      rm -rf "$FLK_MOTO_VENV"
      flk_apt_install python3-venv
      python3 -m venv "$FLK_MOTO_VENV" || flk_die "s3: python3 -m venv failed"
    fi
  fi
  flk_log "s3: pip install moto[server]==$FLK_MOTO_VERSION (log: $FLK_CACHE_DIR/moto-pip.log)"
  mkdir -p "$FLK_CACHE_DIR"
  if ! "$FLK_MOTO_VENV/bin/pip" install --disable-pip-version-check -q \
      "moto[server]==$FLK_MOTO_VERSION" >"$FLK_CACHE_DIR/moto-pip.log" 2>&1; then
    flk_tail_log "$FLK_CACHE_DIR/moto-pip.log" 30
    flk_die "s3: pip install moto[server]==$FLK_MOTO_VERSION failed"
  fi
  printf '%s' "$FLK_MOTO_VERSION" >"$S3_STAMP"
  flk_log "s3: moto $FLK_MOTO_VERSION installed ($(( ($(flk_now_ms) - t0) / 1000 ))s)"
}

s3_running() {
  flk_pid_alive "$S3_PID" "moto_server"
}

# True when moto answers HTTP (any status code).
_s3_http_ok() {
  "$FLK_MOTO_VENV/bin/python" - "$FLK_BIND_HOST" "$FLK_S3_PORT" <<'EOF'
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://{sys.argv[1]}:{sys.argv[2]}/moto-api/", timeout=2)
except urllib.error.HTTPError:
    pass
EOF
}

# Create the bucket (signed request through boto3, which moto depends on).
_s3_ensure_bucket() {
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
  "$FLK_MOTO_VENV/bin/python" - "http://$FLK_BIND_HOST:$FLK_S3_PORT" "$FLK_S3_BUCKET" <<'EOF'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
if sys.argv[2] not in names:
    s3.create_bucket(Bucket=sys.argv[2])
    print("created", file=sys.stderr)
EOF
}

s3_start() {
  s3_install
  if s3_running; then
    flk_log "s3: already running (pid $(flk_pid_of "$S3_PID"), http://$FLK_BIND_HOST:$FLK_S3_PORT)"
    _s3_ensure_bucket 2>/dev/null || flk_warn "s3: could not check bucket $FLK_S3_BUCKET"
    return 0
  fi
  flk_clear_stale_pid "$S3_PID" "moto_server"
  flk_require_free_port "$FLK_S3_PORT" "s3 (moto)"
  mkdir -p "$S3_STATE"
  printf '\n==== %s starting moto_server\n' "$(date -Is)" >>"$S3_LOG"
  flk_spawn "$S3_PID" "$S3_LOG" "$FLK_MOTO_VENV/bin/moto_server" -H "$FLK_BIND_HOST" -p "$FLK_S3_PORT"
  local deadline=$((SECONDS + FLK_START_TIMEOUT))
  until _s3_http_ok 2>/dev/null; do
    s3_running || { flk_tail_log "$S3_LOG" 30; flk_die "s3: moto_server exited during start-up"; }
    ((SECONDS < deadline)) || { flk_tail_log "$S3_LOG" 30; flk_die "s3: no HTTP answer on port $FLK_S3_PORT after ${FLK_START_TIMEOUT}s"; }
    sleep 0.2
  done
  _s3_ensure_bucket 2>/dev/null || flk_die "s3: could not create bucket $FLK_S3_BUCKET"
  flk_log "s3: ready on http://$FLK_BIND_HOST:$FLK_S3_PORT (bucket $FLK_S3_BUCKET)"
}

s3_stop() {
  flk_stop_pidfile "$S3_PID" "moto_server" "s3" 20
}

s3_status() {
  if s3_running && flk_port_listening "$FLK_S3_PORT"; then
    printf '%-10s running  http://%s:%s (moto, pid %s)\n' s3 "$FLK_BIND_HOST" "$FLK_S3_PORT" "$(flk_pid_of "$S3_PID")"
  else
    printf '%-10s stopped  http://%s:%s\n' s3 "$FLK_BIND_HOST" "$FLK_S3_PORT"
    return 1
  fi
}

s3_state_dirs() { printf '%s\n' "$S3_STATE"; }
