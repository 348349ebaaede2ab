#!/usr/bin/env bash
# Shard migration benchmark on this machine (docs/benchmarks.md "Shard migration"): fills the hot
# tier with real decided records (straight into Kafka), then measures gateway latency at
# 500 requests/s without a migration, and again while `flk migrate` moves the hot tier from the
# stack's 3 Redis nodes to 4 (a fourth redis-server this script starts): copy rate (keys/s),
# cutover time (the switch until every process reads the new ring), plan and verify times. Then
# it moves the tier back to 3 nodes with no other load, for the copy rate of a quiet machine.
#
# Knobs: FLK_MIGRATE_BENCH_ENTRIES (200000), FLK_MIGRATE_BENCH_PORT (18092),
# FLK_MIGRATE_BENCH_REDIS_PORT (16382), FLK_MIGRATE_BENCH_RATE (500: under what
# the gateway sustains here, so latency is not queueing), FLK_MIGRATE_BENCH_DURATION
# (40), FLK_MIGRATE_BENCH_CONNECTIONS (64, as bench.sh: with 32 an open loop at 1,000/s is capped
# by the connections once a request takes over 32 ms), FLK_MIGRATE_BENCH_CHUNK (5000, keys per
# SCAN step of the copy), FLK_BENCH_BIN (a prebuilt flk). It measures; it gates nothing.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"

entries="${FLK_MIGRATE_BENCH_ENTRIES:-200000}"
port="${FLK_MIGRATE_BENCH_PORT:-18092}"
redis_port="${FLK_MIGRATE_BENCH_REDIS_PORT:-16382}"
rate="${FLK_MIGRATE_BENCH_RATE:-500}"
duration="${FLK_MIGRATE_BENCH_DURATION:-40}"
connections="${FLK_MIGRATE_BENCH_CONNECTIONS:-64}"
chunk="${FLK_MIGRATE_BENCH_CHUNK:-5000}"
run_id="mig$(date +%s)_$$"
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
cat >"$config" <<TOML
# Written by infra/scripts/bench-migrate.sh for run ${run_id}.
region = "local"
[kafka]
topic_prefix = "${run_id}."
[postgres]
schema = "${run_id}"
[redis]
key_prefix = "${run_id}"
[gateway]
listen = "127.0.0.1:${port}"
[projector]
max_batch = 2000
[tenants.alpha]
[[tenants.alpha.keys]]
id = "alpha-1"
hmac_secret = "alpha-secret"
TOML
export FLK_CONFIG="$config"

flk_pid=""
redis_pid=""
cleanup() {
    if [[ -n "$flk_pid" ]]; then kill "$flk_pid" 2>/dev/null || true; wait "$flk_pid" 2>/dev/null || true; fi
    if [[ -n "$redis_pid" ]]; then kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
    bash infra/scripts/kafka-topics.sh --delete --topic "${run_id}\\..*" >/dev/null 2>&1 || true
    psql "$FLK_POSTGRES_URL" -XqAt -c "DROP SCHEMA IF EXISTS ${run_id} CASCADE" >/dev/null 2>&1 || true
    for url in ${FLK_REDIS_URLS//,/ }; do
        redis-cli -u "$url" --scan --pattern "${run_id}:*" | xargs -r -n 1000 redis-cli -u "$url" DEL >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT INT TERM

say "machine"
{
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "nproc: $(nproc); memory: $(free -h | awk '/^Mem:/ {print $2}')"
    echo "run: ${run_id}; ${entries} cached records; load ${rate} req/s for ${duration} s over ${connections} connections; chunks of ${chunk} keys"
} | tee "$out/machine.txt"

say "a fourth redis-server on ${redis_port}"
redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$out" \
    >"$out/redis.log" 2>&1 &
redis_pid=$!

say "flk serve (gateway, shard, projector)"
"$flk" serve --roles gateway,shard,projector --log-format json >"$out/flk.stdout" 2>"$out/flk.log" &
flk_pid=$!
for _ in $(seq 1 240); do
    curl -fs "http://127.0.0.1:${port}/ready" >/dev/null 2>&1 && break
    kill -0 "$flk_pid" 2>/dev/null || { tail -30 "$out/flk.log" >&2; exit 1; }
    sleep 0.5
done

say "${entries} records into Kafka, decided, projected and cached"
"$flk" bench --target kafka --count "$entries" --duration 900 --quiet --label fill \
    --json-out "$out/fill.json" >"$out/fill.txt"

say "gateway at ${rate} req/s for ${duration} s, no migration"
"$flk" bench --target gateway --url "http://127.0.0.1:${port}" --rate 200 --duration 3 \
    --connections 8 --seed 6000000 --quiet --label warmup >"$out/warmup.txt"
"$flk" bench --target gateway --url "http://127.0.0.1:${port}" --rate "$rate" \
    --connections "$connections" --duration "$duration" --seed 7000000 --label baseline --json-out "$out/baseline.json" \
    | tee "$out/baseline.txt"

nodes="\"${FLK_REDIS_URLS//,/\", \"}\", \"redis://127.0.0.1:${redis_port}\""
printf 'name = "grow"\n[target]\nnodes = [%s]\n' "$nodes" >"$out/grow.toml"

say "gateway at ${rate} req/s for ${duration} s while the hot tier moves from 3 to 4 nodes"
"$flk" bench --target gateway --url "http://127.0.0.1:${port}" --rate "$rate" \
    --connections "$connections" --duration "$duration" --seed 8000000 --label migrating --json-out "$out/migrating.json" \
    >"$out/migrating.txt" &
bench_pid=$!
sleep 2
timed() { local t0; t0=$(date +%s%N); "$@"; echo "took $(( ($(date +%s%N) - t0) / 1000000 )) ms"; }
timed "$flk" migrate plan "$out/grow.toml" | tee "$out/plan.txt"
timed "$flk" migrate dual-write grow | tee "$out/dual-write.txt"
timed "$flk" migrate copy grow --max-keys-per-second 1000000 --chunk "$chunk" | tee "$out/copy.txt"
timed "$flk" migrate verify grow | tee "$out/verify.txt"
timed "$flk" migrate cutover grow --yes | tee "$out/cutover.txt"
timed "$flk" migrate cleanup grow --yes | tee "$out/cleanup.txt"
wait "$bench_pid"
cat "$out/migrating.txt"

printf 'name = "shrink"\n[target]\nnodes = ["%s"]\n' "${FLK_REDIS_URLS//,/\", \"}" >"$out/shrink.toml"
say "back to 3 nodes with no other load"
timed "$flk" migrate plan "$out/shrink.toml" | tee "$out/shrink-plan.txt"
timed "$flk" migrate dual-write shrink | tee "$out/shrink-dual-write.txt"
timed "$flk" migrate copy shrink --max-keys-per-second 1000000 --chunk "$chunk" | tee "$out/shrink-copy.txt"
timed "$flk" migrate verify shrink | tee "$out/shrink-verify.txt"
timed "$flk" migrate cutover shrink --yes | tee "$out/shrink-cutover.txt"
timed "$flk" migrate cleanup shrink --yes | tee "$out/shrink-cleanup.txt"

echo
echo "results: $out"
