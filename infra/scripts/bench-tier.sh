#!/usr/bin/env bash
# Tiering benchmark on this machine (docs/benchmarks.md "Tiering"): realistic signed PCS records
# straight into Kafka, decided and projected; then one manual demotion of every row
# (`flk tier demote --now`: entries/s and the compression ratio of real records), then cold reads
# through the gateway (`flk bench --target cold-reads`: a read that fetches and verifies a segment
# from the object store, and a read served from the gateway's cache of verified segments).
# Tenants move to the cold tier a second after their decision (warm_ttl_secs = 1), so the run
# does not wait for real TTLs.
#
# Knobs: FLK_TIER_BENCH_ENTRIES (100000), FLK_TIER_BENCH_CONNECTIONS (8), FLK_TIER_BENCH_PARTITIONS (12), FLK_TIER_BENCH_PORT
# (18091), FLK_TIER_BENCH_ZLIB_LEVEL (6), FLK_TIER_BENCH_KEEP (0), FLK_BENCH_BIN (a prebuilt flk).
# The object store is the stack's (moto S3 when env.sh sets FLK_S3_ENDPOINT).
# It measures; it gates nothing.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"

entries="${FLK_TIER_BENCH_ENTRIES:-100000}"
partitions="${FLK_TIER_BENCH_PARTITIONS:-12}"
port="${FLK_TIER_BENCH_PORT:-18091}"
level="${FLK_TIER_BENCH_ZLIB_LEVEL:-6}"
connections="${FLK_TIER_BENCH_CONNECTIONS:-8}"
run_id="tier$(date +%s)_$$"
out="$repo/.local/bench/$run_id"
mkdir -p "$out"
load() { cut -d' ' -f1-3 /proc/loadavg; }
say() { printf '==> %s (load %s)\n' "$*" "$(load)"; }

say "local stack"
bash infra/scripts/stack.sh up >/dev/null
# shellcheck disable=SC1091
. "$repo/.local/stack/env.sh"
unset FLK_OTLP_ENDPOINT

if [[ -n "${FLK_BENCH_BIN:-}" ]]; then
    flk="$FLK_BENCH_BIN"
else
    say "building flk (release)"
    cargo build -q --release -p flk --bin flk
    flk="$repo/target/release/flk"
fi

config="$out/flk.toml"
{
    cat <<TOML
# Written by infra/scripts/bench-tier.sh for run ${run_id}.
region = "local"
[kafka]
topic_prefix = "${run_id}."
partitions = ${partitions}
[postgres]
schema = "${run_id}"
[redis]
key_prefix = "${run_id}"
[gateway]
listen = "127.0.0.1:${port}"
[tiering]
zlib_level = ${level}
max_segments_per_cycle = 1000
TOML
    for tenant in alpha beta gamma; do
        cat <<TOML
[tenants.${tenant}]
hot_ttl_secs = 1
[tenants.${tenant}.tiering]
warm_ttl_secs = 1
allow_warm_below_dedup_window = true
[[tenants.${tenant}.keys]]
id = "${tenant}-1"
hmac_secret = "${tenant}-secret"
TOML
    done
} >"$config"
export FLK_CONFIG="$config"

flk_pid=""
cleanup() {
    if [[ -n "$flk_pid" ]]; then kill "$flk_pid" 2>/dev/null || true; wait "$flk_pid" 2>/dev/null || true; fi
    if [[ "${FLK_TIER_BENCH_KEEP:-0}" != "1" ]]; then
        bash infra/scripts/kafka-topics.sh --delete --topic "${run_id}\\..*" >/dev/null 2>&1 || true
        psql "$FLK_POSTGRES_URL" -XqAt -c "DROP SCHEMA IF EXISTS ${run_id} CASCADE" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT INT TERM

say "machine"
{
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "nproc: $(nproc); memory: $(free -h | awk '/^Mem:/ {print $2}')"
    echo "run: ${run_id}; ${entries} records; ${partitions} partitions; zlib level ${level}"
    echo "object store: ${FLK_S3_ENDPOINT:-local directory}"
} | tee "$out/machine.txt"

say "flk serve (gateway, shard, projector; the demotion runs from the command line)"
"$flk" serve --roles gateway,shard,projector --log-format json >"$out/flk.stdout" 2>"$out/flk.log" &
flk_pid=$!
for _ in $(seq 1 240); do
    curl -fs "http://127.0.0.1:${port}/ready" >/dev/null 2>&1 && break
    kill -0 "$flk_pid" 2>/dev/null || { tail -30 "$out/flk.log" >&2; exit 1; }
    sleep 0.5
done

say "${entries} records into Kafka, decided and projected"
"$flk" bench --target kafka --count "$entries" --duration 900 --quiet --label tier-load \
    --json-out "$out/load.json" | tee "$out/load.txt"

sleep 2 # warm_ttl_secs = 1: every row is due
say "flk tier demote --now"
"$flk" tier demote --now | tee "$out/demote.txt"
"$flk" tier stats | tee "$out/stats.txt"

say "cold reads: 200 segments, 10 keys each, ${connections} connections"
"$flk" bench --target cold-reads --count 200 --connections "$connections" | tee "$out/cold.txt"

say "flk tier verify"
"$flk" tier verify | tee "$out/verify.txt"

echo
echo "results: $out"
