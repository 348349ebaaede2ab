#!/usr/bin/env bash
# The main job (README, `make run`): brings up the local stack (Kafka KRaft, PostgreSQL, 3x Redis,
# S3), builds and starts `flk serve` with every role, sends a demo load, prints what came back,
# then keeps serving until Ctrl-C. FLK_DEMO_EXIT=1 stops after the demo (for scripted checks).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
demo="$repo/.local/demo"
mkdir -p "$demo"
port="${FLK_DEMO_PORT:-8080}"
metrics_port="${FLK_DEMO_METRICS_PORT:-9464}"

echo "==> local stack"
bash infra/scripts/stack.sh up >/dev/null
# shellcheck disable=SC1091
. "$repo/.local/stack/env.sh"
bash infra/scripts/stack.sh status

echo "==> building flk"
cargo build -q -p flk --bin flk
flk="$repo/target/debug/flk"

# The audit log's signing key (kept across runs: checkpoints already signed stay verifiable).
if [ ! -f "$demo/audit.key" ]; then
    "$flk" audit keygen --out "$demo/audit.key" --origin flk.demo/local >/dev/null
fi

cat >"$demo/flk.toml" <<TOML
# Demo configuration written by infra/scripts/run-demo.sh. FLK_* variables override it.
region = "local"
[kafka]
topic_prefix = "demo."
[postgres]
schema = "demo"
[redis]
key_prefix = "demo"
[gateway]
listen = "127.0.0.1:${port}"
[telemetry]
metrics_listen_opt = "127.0.0.1:${metrics_port}"
[audit]
origin_opt = "flk.demo/local"
signing_key_file_opt = "$demo/audit.key"
[tenants.default]
[[tenants.default.keys]]
id = "demo-hmac"
hmac_secret = "testsecret"
[tenants.acme]
rate_per_second = 500.0
rate_burst = 1000.0
[[tenants.acme.keys]]
id = "acme-2026"
hmac_secret = "acme-secret"
TOML

if curl -fs "http://127.0.0.1:${port}/health" >/dev/null 2>&1; then
    echo "something already listens on port ${port}; stop it or set FLK_DEMO_PORT" >&2
    exit 1
fi
echo "==> flk serve (log: $demo/flk.log)"
"$flk" serve -c "$demo/flk.toml" >"$demo/flk.stdout" 2>"$demo/flk.log" &
flk_pid=$!
# The stack's Prometheus scrapes what is registered here (file-based discovery).
if [ -n "${FLK_PROMETHEUS_TARGETS_DIR:-}" ]; then
    mkdir -p "$FLK_PROMETHEUS_TARGETS_DIR"
    echo "[{\"targets\": [\"127.0.0.1:${metrics_port}\"], \"labels\": {\"deployment\": \"demo\"}}]" \
        >"$FLK_PROMETHEUS_TARGETS_DIR/demo.json"
fi
trap 'kill "$flk_pid" 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 120); do
    if curl -fs "http://127.0.0.1:${port}/ready" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$flk_pid" 2>/dev/null; then tail -30 "$demo/flk.log"; exit 1; fi
    sleep 0.5
done
curl -fs "http://127.0.0.1:${port}/ready" && echo

echo "==> demo load: golden records, then a mixed load for two tenants"
for golden in tests/vectors/golden/pcs_tiny_case_1.json tests/vectors/golden/pcs_tiny_case_2.json; do
    for attempt in first again; do
        printf '%s %-5s ' "$(basename "$golden")" "$attempt"
        curl -s -o /dev/null -w '%{http_code} ' -D "$demo/headers" -X POST --data-binary @"$golden" \
            "http://127.0.0.1:${port}/v1/pcs/submit"
        grep -i '^idempotent-replayed' "$demo/headers" | tr -d '\r' || echo
    done
done
"$flk" load --url "http://127.0.0.1:${port}" --tenant default --key testsecret --count 300 --seed "$RANDOM"
"$flk" load --url "http://127.0.0.1:${port}" --tenant acme --key acme-secret --count 100 --seed "$RANDOM"

echo "==> metrics"
curl -s "http://127.0.0.1:${port}/metrics" | grep -E '^flk_(ingest_total|accepted|escalated|dedup_hits|signature_errors)' || true
echo "==> state hash: $("$flk" state-hash -c "$demo/flk.toml")"

echo "==> audit: a proof bundle for the first golden record, checked offline with the public key"
key="$("$flk" audit key -c "$demo/flk.toml")"
golden_id="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pcs_id"])' tests/vectors/golden/pcs_tiny_case_1.json)"
for _ in $(seq 1 40); do
    if curl -fs "http://127.0.0.1:${port}/v1/audit/proof?pcs_id=${golden_id}" >"$demo/bundle.json" 2>/dev/null; then break; fi
    sleep 0.25
done
echo "verifier key: $key"
"$flk" audit verify --bundle "$demo/bundle.json" --key "$key" --record tests/vectors/golden/pcs_tiny_case_1.json

if [ "${FLK_DEMO_EXIT:-0}" = "1" ]; then
    exit 0
fi
echo
echo "flk serve is running on http://127.0.0.1:${port} (Ctrl-C to stop; the stack keeps running:"
echo "infra/scripts/stack.sh down stops it). Try:"
echo "  curl -s -X POST --data-binary @tests/vectors/golden/pcs_tiny_case_1.json http://127.0.0.1:${port}/v1/pcs/submit"
echo "  curl -s http://127.0.0.1:${port}/v1/audit/checkpoint"
echo "  $flk top --url http://127.0.0.1:${port} --url http://127.0.0.1:${metrics_port}"
echo "  Prometheus (scraping this process): ${FLK_PROMETHEUS_URL:-not running}; dashboards: docs/runbooks/observability.md"
echo "  Jaeger (this process's traces): ${FLK_JAEGER_URL:-not running}; one record's trace:"
echo "    $flk load --url http://127.0.0.1:${port} --count 1 --seed 1000000 --traceparent 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
echo "    curl -s ${FLK_JAEGER_URL:-http://127.0.0.1:17686}/api/traces/4bf92f3577b34da6a3ce929d0e0e4736"
wait "$flk_pid"
