#!/usr/bin/env bash
# Benchmarks on this machine, one summary table at the end (docs/benchmarks.md explains each row):
#   1. Kafka-mode end to end: `flk bench --target kafka`, closed loop (produce -> committed decision);
#   2. the ceiling: Kafka's own ProducerPerformance at the same record size, acks=all, on a topic
#      with the same partitions, so row 1 reads as a fraction of what the broker takes here;
#   3. the gateway open loop at FLK_BENCH_RATE req/s (p99 target <= 25 ms), sampling the resident
#      memory of `flk serve` (ps -o rss) while it runs;
#      then, from the same run, the time from each decision to the signed checkpoint covering it
#      (the anchorer runs with a key made for the run) and `flk bench --target proofs` (audit
#      proofs served per second, a tenth verified);
#      then the open loop again at each rate of FLK_BENCH_EXTRA_RATES (2000,4000), for the shape
#      of the latency curve above the target rate;
#   4. the gateway closed loop (maximum throughput);
#   5. a backlog of FLK_BENCH_BACKLOG records produced while flk serve is stopped, then drained:
#      the drain rate and the most resident memory of `flk serve` meanwhile (target < 300 MiB);
#   6. `flk replay --no-swap` of every decision the runs produced (rate and state-hash equality).
# Rows 1, 3 and 4 also give the CPU time per decided record of each process group (broker,
# Postgres, flk serve, the load generator, Redis, the rest), read from /proc around the load
# (infra/scripts/cpu_per_process.py): CPU time, unlike wall time, stays comparable on a busy machine;
# and what each record cost in Postgres transactions and statements and in Kafka requests by type
# and client (flk_kafka_requests_total of flk serve, not counting the load generator's own).
# Every run uses its own topic prefix, Postgres schema and Redis key prefix (bench<time>_<pid>), and
# removes them at the end unless FLK_BENCH_KEEP=1. The load average is printed next to each number.
#
# Knobs (environment): FLK_BENCH_PARTITIONS (12), FLK_BENCH_MAX_BATCH (2000),
# FLK_BENCH_MAX_TRANSACTIONS, FLK_BENCH_LINGER_MS, FLK_BENCH_FETCH_WAIT_MS, FLK_BENCH_FETCH_MIN_BYTES (config defaults), FLK_BENCH_RATE (1000),
# FLK_BENCH_EXTRA_RATES (comma list of further open-loop rates, "2000,4000"; empty for none),
# FLK_BENCH_DURATION seconds per gateway run (30), FLK_BENCH_CONNECTIONS (64),
# FLK_BENCH_KAFKA_COUNT records for the Kafka run (100000), FLK_BENCH_KAFKA_WINDOW (5000),
# FLK_BENCH_CEILING_RECORDS (300000), FLK_BENCH_BACKLOG (1000000), FLK_BENCH_PORT (18090),
# FLK_BENCH_ONLY (comma list of kafka,ceiling,open,closed,backlog,replay; default all), FLK_BENCH_KEEP (0), FLK_BENCH_BIN (a prebuilt
# flk to measure instead of building target/release/flk), FLK_BENCH_AUDIT (1: the anchorer runs; 0
# leaves it out), FLK_BENCH_ANCHOR_INTERVAL_MS ([audit] anchor_interval_ms, config default), FLK_BENCH_TRACES (0: OTLP trace export
# off even when env.sh sets FLK_OTLP_ENDPOINT; 1 keeps it, to measure its cost).
# Results: .local/bench/<run id>/ (JSON reports, logs, summary.txt).
# It measures; it gates nothing (exit status 0 unless a step could not run).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"

partitions="${FLK_BENCH_PARTITIONS:-12}"
max_batch="${FLK_BENCH_MAX_BATCH:-2000}"
# Written into the config only when set (the default is the config's own; older builds reject it).
max_transactions="${FLK_BENCH_MAX_TRANSACTIONS:-}"
rate="${FLK_BENCH_RATE:-1000}"
extra_rates="${FLK_BENCH_EXTRA_RATES-2000,4000}"
duration="${FLK_BENCH_DURATION:-30}"
connections="${FLK_BENCH_CONNECTIONS:-64}"
kafka_count="${FLK_BENCH_KAFKA_COUNT:-100000}"
kafka_window="${FLK_BENCH_KAFKA_WINDOW:-5000}"
ceiling_records="${FLK_BENCH_CEILING_RECORDS:-300000}"
port="${FLK_BENCH_PORT:-18090}"
backlog_count="${FLK_BENCH_BACKLOG:-1000000}"
only="${FLK_BENCH_ONLY:-kafka,ceiling,open,closed,backlog,replay}"
run_id="bench$(date +%s)_$$"
out="$repo/.local/bench/$run_id"
mkdir -p "$out"

wants() { [[ ",$only," == *",$1,"* ]]; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
say() { printf '==> %s (load %s)\n' "$*" "$(load)"; }

say "local stack"
bash infra/scripts/stack.sh up >/dev/null
# shellcheck disable=SC1091
. "$repo/.local/stack/env.sh"
# env.sh points FLK_OTLP_ENDPOINT at the local collector; exporting a span per record is its own
# cost, so the pipeline is measured without it unless FLK_BENCH_TRACES=1.
if [[ "${FLK_BENCH_TRACES:-0}" != "1" ]]; then
    unset FLK_OTLP_ENDPOINT
fi

if [[ -n "${FLK_BENCH_BIN:-}" ]]; then
    flk="$FLK_BENCH_BIN"
    say "using $flk"
else
    say "building flk (release)"
    cargo build -q --release -p flk --bin flk
    flk="$repo/target/release/flk"
fi

config="$out/flk.toml"
# The anchorer runs in every measurement (as in production): a signing key for this run.
# FLK_BENCH_AUDIT=0 leaves it out (to measure what anchoring costs).
audit_section=""
if [[ "${FLK_BENCH_AUDIT:-1}" != "0" ]]; then
    "$flk" audit keygen --out "$out/audit.key" --origin "flk.bench/${run_id}" >/dev/null
    audit_section="[audit]
origin_opt = \"flk.bench/${run_id}\"
signing_key_file_opt = \"$out/audit.key\"
${FLK_BENCH_ANCHOR_INTERVAL_MS:+anchor_interval_ms = ${FLK_BENCH_ANCHOR_INTERVAL_MS}}"
fi
cat >"$config" <<TOML
# Written by infra/scripts/bench.sh for run ${run_id}.
region = "local"
[kafka]
topic_prefix = "${run_id}."
partitions = ${partitions}
${FLK_BENCH_LINGER_MS:+linger_ms = ${FLK_BENCH_LINGER_MS}}
${FLK_BENCH_FETCH_WAIT_MS:+fetch_wait_max_ms = ${FLK_BENCH_FETCH_WAIT_MS}}
${FLK_BENCH_FETCH_MIN_BYTES:+fetch_min_bytes = ${FLK_BENCH_FETCH_MIN_BYTES}}
[postgres]
schema = "${run_id}"
[redis]
key_prefix = "${run_id}"
[gateway]
listen = "127.0.0.1:${port}"
# Every load comes from one address: the per-address limit (a front-door guard) would answer the
# closed loop with 429s instead of measuring it.
address_rate_per_second = 0.0
${audit_section}
[projector]
max_batch = ${max_batch}
${max_transactions:+max_transactions = ${max_transactions}}
[tenants.alpha]
[[tenants.alpha.keys]]
id = "alpha-1"
hmac_secret = "alpha-secret"
[tenants.beta]
[[tenants.beta.keys]]
id = "beta-1"
hmac_secret = "beta-secret"
[tenants.gamma]
[[tenants.gamma.keys]]
id = "gamma-1"
hmac_secret = "gamma-secret"
TOML
export FLK_CONFIG="$config"

if curl -fs "http://127.0.0.1:${port}/health" >/dev/null 2>&1; then
    echo "something already listens on port ${port}; set FLK_BENCH_PORT" >&2
    exit 1
fi

flk_pid=""
cleanup() {
    if [[ -n "$flk_pid" ]]; then kill "$flk_pid" 2>/dev/null || true; wait "$flk_pid" 2>/dev/null || true; fi
    if [[ "${FLK_BENCH_KEEP:-0}" != "1" ]]; then
        bash infra/scripts/kafka-topics.sh --delete --topic "${run_id}\\..*" >/dev/null 2>&1 || true
        psql "$FLK_POSTGRES_URL" -XqAt -c "SELECT string_agg(format('DROP SCHEMA %I CASCADE', nspname), '; ')
            FROM pg_namespace WHERE nspname LIKE '${run_id}%'" 2>/dev/null |
            psql "$FLK_POSTGRES_URL" -Xq >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT INT TERM

start_serve() {
    "$flk" serve --log-format json >"$out/flk.stdout" 2>"$out/flk.log" &
    flk_pid=$!
    for _ in $(seq 1 240); do
        if curl -fs "http://127.0.0.1:${port}/ready" >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$flk_pid" 2>/dev/null; then tail -30 "$out/flk.log" >&2; return 1; fi
        sleep 0.5
    done
    echo "flk serve did not become ready" >&2
    return 1
}

# Runs a load generator (the rest of the arguments) with the CPU seconds of every process group
# (broker, Postgres, Redis, flk serve, the generator, the rest) measured meanwhile into $1.
# Also writes the Postgres transactions committed and statements run meanwhile into
# ${1%.json}-pg.txt ("transactions statements"; statements need pg_stat_statements, which the
# stack's server loads), and the Kafka requests flk's clients sent meanwhile into
# ${1%.json}-kafka.txt ("client request count" lines, from flk_kafka_requests_total).
with_cpu() {
    local cpu_out="$1"
    shift
    local pg_before pg_after kafka_before
    kafka_before="$(kafka_requests)"
    # The statement counters start from zero at each step: pg_stat_statements drops its least
    # used entries when full (each run's schema makes new ones), which would skew a difference.
    if [[ "$pg_statements" == "1" ]]; then
        psql "$FLK_POSTGRES_URL" -XAtq -c 'SELECT pg_stat_statements_reset()' >/dev/null
    fi
    pg_before="$(pg_counts)"
    # Measured from the moment the generator has built and signed its records.
    python3 infra/scripts/cpu_per_process.py --out "$cpu_out" --flk-pid "$flk_pid" \
        --stack "$repo/.local/stack" --start-after "submissions prepared" -- "$@"
    # Backends report their counts at most once a second.
    sleep 2
    pg_after="$(pg_counts)"
    awk -v a="$pg_before" -v b="$pg_after" 'BEGIN {
        split(a, x, " "); split(b, y, " "); print y[1] - x[1], y[2] - x[2] }' >"${cpu_out%.json}-pg.txt"
    # librdkafka reports its counts once a second: the sleep above covers that too.
    { echo "$kafka_before" | sed 's/^/before /'; kafka_requests | sed 's/^/after /'; } |
        awk '{ key = $2 " " $3; if ($1 == "before") { was[key] = $4 } else if ($4 - was[key] > 0) { print key, $4 - was[key] } }' \
            >"${cpu_out%.json}-kafka.txt"
}

# "client request count" for every flk_kafka_requests_total series of the running flk serve.
kafka_requests() {
    curl -fs "http://127.0.0.1:${port}/metrics" 2>/dev/null |
        sed -nE 's/^flk_kafka_requests_total\{client="([^"]*)",request="([^"]*)"\} ([0-9]+)$/\1 \2 \3/p'
}

# "transactions statements" committed and run in the database so far (statements 0 without
# pg_stat_statements).
pg_counts() {
    local statements="0"
    if [[ "$pg_statements" == "1" ]]; then
        statements="(SELECT sum(calls)::bigint FROM pg_stat_statements
                     WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()))"
    fi
    psql "$FLK_POSTGRES_URL" -XAt -F ' ' -c "SELECT xact_commit, ${statements}
        FROM pg_stat_database WHERE datname = current_database()" | tail -1
}
pg_statements=0
if [[ "$(psql "$FLK_POSTGRES_URL" -XAt -c 'SHOW shared_preload_libraries')" == *pg_stat_statements* ]] &&
    psql "$FLK_POSTGRES_URL" -XAtq -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' >/dev/null 2>&1; then
    pg_statements=1
fi

# Samples the RSS (KiB) of $flk_pid every 0.5 s into $1 until stopped.
sample_rss() {
    while kill -0 "$flk_pid" 2>/dev/null; do
        ps -o rss= -p "$flk_pid" >>"$1" 2>/dev/null || true
        sleep 0.5
    done
}

jget() { jq -r "$2" "$1"; }

say "machine"
{
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "nproc: $(nproc)"
    echo "memory: $(free -h | awk '/^Mem:/ {print $2}')"
    echo "kernel: $(uname -r)"
    echo "run: ${run_id}; partitions ${partitions}; projector max_batch ${max_batch}, max_transactions ${max_transactions:-default}"
} | tee "$out/machine.txt"

say "flk serve (release, log $out/flk.log)"
start_serve

# A short warm-up through the gateway (connections, consumer assignment, prepared statements).
"$flk" bench --target gateway --rate 200 --duration 3 --connections 8 --quiet \
    --label warmup >"$out/warmup.txt"

declare -A row
record_size=""

if wants kafka; then
    say "Kafka-mode end to end, closed loop, ${kafka_count} records, window ${kafka_window}"
    row[kafka_load]="$(load)"
    with_cpu "$out/cpu-kafka.json" \
        "$flk" bench --target kafka --count "$kafka_count" --window "$kafka_window" --duration 600 \
        --label kafka-e2e --json-out "$out/kafka.json" | tee "$out/kafka.txt"
    record_size="$(jget "$out/kafka.json" '.record_bytes_mean | floor')"
fi

if wants ceiling; then
    if [[ -z "$record_size" ]]; then
        record_size="$("$flk" bench --count 5000 --quiet --prepare-only 2>/dev/null)"
    fi
    say "ceiling: ProducerPerformance, ${ceiling_records} x ${record_size} B, acks=all, ${partitions} partitions"
    bash infra/scripts/kafka-topics.sh --create --topic "${run_id}.ceiling" \
        --partitions "$partitions" --replication-factor 1 >/dev/null
    row[ceiling_load]="$(load)"
    bash infra/scripts/kafka-perf.sh --topic "${run_id}.ceiling" --num-records "$ceiling_records" \
        --record-size "$record_size" --throughput -1 \
        --producer-props "bootstrap.servers=${FLK_KAFKA_BROKERS}" acks=all enable.idempotence=true \
        2>&1 | tee "$out/ceiling.txt"
fi

if wants open; then
    say "gateway open loop at ${rate}/s for ${duration} s, ${connections} connections"
    rm -f "$out/rss.txt"
    sample_rss "$out/rss.txt" &
    rss_pid=$!
    row[open_load]="$(load)"
    open_from_ms="$(date +%s%3N)"
    with_cpu "$out/cpu-open.json" \
        "$flk" bench --target gateway --rate "$rate" --duration "$duration" --connections "$connections" \
        --label gateway-open --json-out "$out/open.json" | tee "$out/open.txt"
    kill "$rss_pid" 2>/dev/null || true
    wait "$rss_pid" 2>/dev/null || true
    open_to_ms="$(date +%s%3N)"
    # Time from each decision of the open loop to the signed checkpoint that first covers it
    # (waits for the anchorer to cover the run first).
    for _ in $( [[ -n "$audit_section" ]] && seq 1 60); do
        behind="$(psql "$FLK_POSTGRES_URL" -XAt -c "SET search_path = ${run_id};
            SELECT (SELECT count(*) FROM audit_log) - coalesce((SELECT max(tree_size) FROM checkpoints), 0)" | tail -1)"
        [[ "$behind" == "0" ]] && break
        sleep 0.5
    done
    [[ -n "$audit_section" ]] && psql "$FLK_POSTGRES_URL" -XAt -F ' ' -c "SET search_path = ${run_id};
        SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY d),
               percentile_cont(0.99) WITHIN GROUP (ORDER BY d), max(d)
        FROM (SELECT c.created_at_ms - a.decided_at_ms AS d
              FROM merkle_leaves l JOIN audit_log a USING (partition, seq)
              CROSS JOIN LATERAL (SELECT created_at_ms FROM checkpoints c
                                  WHERE c.tree_size > l.leaf_index ORDER BY tree_size LIMIT 1) c
              WHERE a.decided_at_ms BETWEEN ${open_from_ms} AND ${open_to_ms}) delays" |
        tail -1 >"$out/anchor_delay.txt"
    if [[ -n "$audit_section" ]]; then
        say "audit proofs: flk bench --target proofs, 10 s, 16 connections"
        row[proofs_load]="$(load)"
        "$flk" bench --target proofs --duration 10 --connections 16 | tee "$out/proofs.txt" || true
    fi
fi

if wants open && [[ -n "$extra_rates" ]]; then
    for extra_rate in ${extra_rates//,/ }; do
        say "gateway open loop at ${extra_rate}/s for ${duration} s, ${connections} connections"
        row[open_${extra_rate}_load]="$(load)"
        with_cpu "$out/cpu-open-${extra_rate}.json" \
            "$flk" bench --target gateway --rate "$extra_rate" --duration "$duration" \
            --connections "$connections" --label "gateway-open-${extra_rate}" \
            --json-out "$out/open-${extra_rate}.json" | tee "$out/open-${extra_rate}.txt"
    done
fi

if wants closed; then
    say "gateway closed loop for ${duration} s, ${connections} connections"
    row[closed_load]="$(load)"
    with_cpu "$out/cpu-closed.json" \
        "$flk" bench --target gateway --duration "$duration" --connections "$connections" \
        --label gateway-closed --json-out "$out/closed.json" | tee "$out/closed.txt"
fi

say "stopping flk serve"
if wants backlog; then
    submitted_before_backlog="$(bash infra/scripts/kafka-class.sh org.apache.kafka.tools.GetOffsetShell \
        --bootstrap-server "$FLK_KAFKA_BROKERS" --topic "${run_id}.flk.submissions" 2>/dev/null |
        awk -F: '{sum += $3} END {print sum + 0}')"
fi
kill "$flk_pid" 2>/dev/null || true
wait "$flk_pid" 2>/dev/null || true
flk_pid=""

if wants backlog; then
    # A backlog produced while no flk runs, then drained: the resident memory of `flk serve` must
    # stay bounded (consumer queues are capped in bytes, kafka.consumer_queue_max_kbytes).
    say "backlog: ${backlog_count} records produced with flk serve stopped, then drained"
    row[backlog_load]="$(load)"
    "$flk" bench --target kafka --count "$backlog_count" --window "$backlog_count" --duration 3600 \
        --drain-timeout 1800 --quiet --label backlog --json-out "$out/backlog.json" >"$out/backlog.txt" &
    backlog_bench=$!
    # Produced in full once the end offsets of the submissions topic add up to the count (plus
    # what the earlier steps produced).
    before_backlog="${submitted_before_backlog:-0}"
    for _ in $(seq 1 1800); do
        ends="$(bash infra/scripts/kafka-class.sh org.apache.kafka.tools.GetOffsetShell \
            --bootstrap-server "$FLK_KAFKA_BROKERS" --topic "${run_id}.flk.submissions" 2>/dev/null |
            awk -F: '{sum += $3} END {print sum + 0}')"
        (( ends - before_backlog >= backlog_count )) && break
        kill -0 "$backlog_bench" 2>/dev/null || break
        sleep 1
    done
    rm -f "$out/rss-backlog.txt"
    drain_from_ms="$(date +%s%3N)"
    start_serve
    sample_rss "$out/rss-backlog.txt" &
    rss_pid=$!
    wait "$backlog_bench" || true
    drain_ms=$(( $(date +%s%3N) - drain_from_ms ))
    kill "$rss_pid" 2>/dev/null || true
    wait "$rss_pid" 2>/dev/null || true
    echo "$drain_ms" >"$out/backlog-drain-ms.txt"
    kill "$flk_pid" 2>/dev/null || true
    wait "$flk_pid" 2>/dev/null || true
    flk_pid=""
fi

if wants replay; then
    say "replay of every decision (flk replay --no-swap)"
    row[replay_load]="$(load)"
    "$flk" replay --quiet --no-swap | tee "$out/replay.txt"
fi

# ---------------------------------------------------------------------------------------------
summary="$out/summary.txt"
{
    echo
    echo "FLK benchmark summary (${run_id}: ${partitions} partitions, max_batch ${max_batch}, max_transactions ${max_transactions:-default}, $(nproc) cpus)"
    printf '%-44s %14s  %-26s %s\n' "measure" "value" "target" "load (1/5/15 min at start)"
    line() { printf '%-44s %14s  %-26s %s\n' "$@"; }
    # "client count, ..." per record of Kafka request type $1: $2 the decided records, $3 the
    # requests file of a step (client names without their run prefix and "flk-").
    per_client() {
        awk -v request="$1" -v n="$2" '$2 == request { sub(/^.*flk-/, "", $1); printf "%s%s %.3f", sep, $1, $3/n; sep = ", " }' "$3"
    }
    # CPU microseconds per decided record: $1 the label, $2 the cpu JSON, $3 the decided records.
    cpu_lines() {
        [[ -f "$2" && "${3:-0}" -gt 0 ]] || return 0
        line "CPU per decided record, $1" "$(jq -r --argjson n "$3" '[.cpu_s[]] | add * 1e6 / $n | floor | "\(.) us"' "$2")" "half of round 2" ""
        line "  broker / postgres / flk / loadgen" "$(jq -r --argjson n "$3" '.cpu_s | [.broker, .postgres, .flk, .loadgen] | map(. * 1e6 / $n | floor | tostring) | join(" / ")' "$2") us" "" ""
        line "  redis / other" "$(jq -r --argjson n "$3" '.cpu_s | [.redis, .other] | map(. * 1e6 / $n | floor | tostring) | join(" / ")' "$2") us" "" ""
        if [[ -s "${2%.json}-pg.txt" ]]; then
            read -r transactions statements <"${2%.json}-pg.txt"
            line "  Postgres transactions / statements per record" "$(awk -v t="$transactions" -v s="$statements" -v n="$3" 'BEGIN {printf "%.3f / %.2f", t/n, s/n}')" "" ""
        fi
        if [[ -s "${2%.json}-kafka.txt" ]]; then
            line "  Kafka requests per record: produce / fetch / other" "$(awk -v n="$3" '
                $2 == "Produce" { p += $3; next } $2 == "Fetch" { f += $3; next } { o += $3 }
                END { printf "%.3f / %.3f / %.3f", p/n, f/n, o/n }' "${2%.json}-kafka.txt")" "" ""
            line "  fetches per record, by client" "$(per_client Fetch "$3" "${2%.json}-kafka.txt")" "" ""
            line "  produces per record, by client" "$(per_client Produce "$3" "${2%.json}-kafka.txt")" "" ""
        fi
    }
    tail_latency() { jget "$1" '"\(.latencies.submit.p999_ms) / \(.latencies.submit.max_ms) ms"'; }
    gateway_errors() { jget "$1" '[.statuses | to_entries[] | select(.key | test("^(2|409)") | not) | .value] | add // 0'; }
    decided_gateway() { jq -r '[.statuses | to_entries[] | select(.key | test("^(2|409)")) | .value] | add // 0' "$1"; }
    ceiling_rate=""
    if [[ -f "$out/ceiling.txt" ]]; then
        ceiling_rate="$(grep 'records sent' "$out/ceiling.txt" | tail -1 | sed -E 's/.*, ([0-9.]+) records\/sec.*/\1/')"
        ceiling_p99="$(grep 'records sent' "$out/ceiling.txt" | tail -1 | sed -E 's/.* ([0-9]+) ms 99th.*/\1/')"
        line "Kafka ceiling (${record_size} B, acks=all)" "$(printf '%.0f/s' "$ceiling_rate")" "-" "${row[ceiling_load]}"
        line "Kafka ceiling p99 produce latency" "${ceiling_p99} ms" "-" ""
    fi
    if [[ -f "$out/kafka.json" ]]; then
        e2e="$(jget "$out/kafka.json" '.throughput_per_s')"
        line "e2e decided throughput (Kafka mode)" "$(printf '%.0f/s' "$e2e")" "-" "${row[kafka_load]}"
        if [[ -n "$ceiling_rate" ]]; then
            line "  as a fraction of the ceiling" "$(awk -v a="$e2e" -v b="$ceiling_rate" 'BEGIN {printf "%.1f%%", 100*a/b}')" ">= 30%" ""
        fi
        line "e2e latency p50 / p99 (Kafka mode)" "$(jget "$out/kafka.json" '"\(.latencies.e2e.p50_ms|floor) / \(.latencies.e2e.p99_ms|floor) ms"')" "-" ""
        line "Kafka mode errors (undecided, produce)" "$(jget "$out/kafka.json" '[.statuses | to_entries[] | select(.key != "decided") | .value] | add // 0')" "0" ""
        cpu_lines "Kafka mode" "$out/cpu-kafka.json" "$(jget "$out/kafka.json" '.statuses.decided // 0')"
    fi
    if [[ -f "$out/open.json" ]]; then
        line "gateway open loop ${rate}/s: p50" "$(jget "$out/open.json" '.latencies.submit.p50_ms') ms" "-" "${row[open_load]}"
        line "gateway open loop ${rate}/s: p99" "$(jget "$out/open.json" '.latencies.submit.p99_ms') ms" "<= 25 ms" ""
        line "gateway open loop ${rate}/s: p99.9 / max" "$(tail_latency "$out/open.json")" "flat" ""
        line "gateway open loop ${rate}/s: achieved" "$(printf '%.0f/s' "$(jget "$out/open.json" '.throughput_per_s')")" "-" ""
        line "gateway open loop ${rate}/s: errors" "$(gateway_errors "$out/open.json")" "0" ""
        cpu_lines "gateway ${rate}/s" "$out/cpu-open.json" "$(decided_gateway "$out/open.json")"
        if [[ -s "$out/rss.txt" ]]; then
            line "flk serve RSS under load (max)" "$(sort -n "$out/rss.txt" | tail -1 | awk '{printf "%.0f MiB", $1/1024}')" "< 300 MiB" ""
        fi
    fi
    for extra_rate in ${extra_rates//,/ }; do
        extra="$out/open-${extra_rate}.json"
        [[ -f "$extra" ]] || continue
        line "gateway open loop ${extra_rate}/s: p50 / p99" "$(jget "$extra" '"\(.latencies.submit.p50_ms) / \(.latencies.submit.p99_ms) ms"')" "-" "${row[open_${extra_rate}_load]}"
        line "gateway open loop ${extra_rate}/s: p99.9 / max" "$(tail_latency "$extra")" "-" ""
        line "gateway open loop ${extra_rate}/s: achieved" "$(printf '%.0f/s' "$(jget "$extra" '.throughput_per_s')")" "-" ""
        line "gateway open loop ${extra_rate}/s: errors" "$(gateway_errors "$extra")" "0" ""
        cpu_lines "gateway ${extra_rate}/s" "$out/cpu-open-${extra_rate}.json" "$(decided_gateway "$extra")"
    done
    if [[ -s "$out/anchor_delay.txt" ]]; then
        read -r anchored p50 p99 worst <"$out/anchor_delay.txt"
        line "decision -> signed checkpoint p50 / p99" "$(printf '%.0f / %.0f ms' "$p50" "$p99")" "<= anchor interval" ""
        line "  (leaves, max)" "${anchored}, ${worst} ms" "" ""
    fi
    if [[ -f "$out/proofs.txt" ]]; then
        line "proof generation (GET /v1/audit/proof)" "$(sed -nE 's/.*proofs \(([0-9]+)\/s\).*/\1\/s/p' "$out/proofs.txt")" "-" "${row[proofs_load]}"
        line "  proof latency p50 / p99" "$(sed -nE 's/^latency ms: p50 ([0-9.]+) p95 [0-9.]+ p99 ([0-9.]+).*/\1 \/ \2 ms/p' "$out/proofs.txt")" "-" ""
    fi
    if [[ -f "$out/closed.json" ]]; then
        line "gateway closed loop (${connections} conns)" "$(printf '%.0f/s' "$(jget "$out/closed.json" '.throughput_per_s')")" "-" "${row[closed_load]}"
        line "gateway closed loop p50 / p99" "$(jget "$out/closed.json" '"\(.latencies.submit.p50_ms) / \(.latencies.submit.p99_ms) ms"')" "-" ""
        cpu_lines "gateway closed loop" "$out/cpu-closed.json" "$(decided_gateway "$out/closed.json")"
    fi
    if [[ -f "$out/backlog.json" ]]; then
        drained="$(jget "$out/backlog.json" '.statuses.decided // 0')"
        drain_ms="$(cat "$out/backlog-drain-ms.txt" 2>/dev/null || echo 0)"
        line "backlog drained (${drained} of ${backlog_count})" "$(awk -v n="$drained" -v ms="$drain_ms" 'BEGIN {printf "%.0f/s", n*1000/(ms>0?ms:1)}')" "-" "${row[backlog_load]}"
        if [[ -s "$out/rss-backlog.txt" ]]; then
            line "flk serve RSS while draining (max)" "$(sort -n "$out/rss-backlog.txt" | tail -1 | awk '{printf "%.0f MiB", $1/1024}')" "< 300 MiB" ""
        fi
    fi
    if [[ -f "$out/replay.txt" ]]; then
        replay_rate="$(sed -nE 's/^replayed ([0-9]+) decisions in ([0-9.]+) s \(([0-9]+)\/s\).*/\3/p' "$out/replay.txt")"
        replay_count="$(sed -nE 's/^replayed ([0-9]+) decisions.*/\1/p' "$out/replay.txt")"
        line "replay (${replay_count} decisions)" "${replay_rate}/s" ">= 100000/s" "${row[replay_load]}"
        rebuilt="$(sed -nE 's/^rebuilt state hash: *//p' "$out/replay.txt")"
        live="$(sed -nE 's/^live state hash: *//p' "$out/replay.txt")"
        line "replayed state hash equals live" "$([[ -n "$rebuilt" && "$rebuilt" == "$live" ]] && echo yes || echo NO)" "yes" ""
    fi
    echo "results: $out"
} | tee "$summary"
