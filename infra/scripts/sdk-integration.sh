#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions run through traps and "run_$suite"
# Runs each SDK's integration tests (sdk/python, sdk/go, sdk/ts) against one real `flk serve` on the
# local stack, then cleans up. Usage:
#
#   infra/scripts/sdk-integration.sh              # all three suites
#   infra/scripts/sdk-integration.sh python ts    # a subset
#
# The server is isolated from everything else on the stack: its own topic prefix, Postgres schema
# and Redis key prefix (sdkit_<time>_<pid>), gateway on a free port. Tenants: `default` (HMAC key
# "testsecret") and `slow` (0.5 records/s, burst 1, signatures off). The suites get
#   FLK_GATEWAY_URL, FLK_KAFKA_BROKERS, FLK_SUBMISSIONS_TOPIC, FLK_TEST_SECRET,
#   FLK_AUDIT_VERIFIER_KEY (the anchorer's key: live proof bundles verify offline with it)
# and skip themselves when FLK_GATEWAY_URL is unset, which is how the plain unit runs work.
# Afterwards the server is stopped, the schema dropped, the topics and consumer groups deleted and
# the Redis keys removed.
# The last line is "N passed, M failed" over the suites; the exit status is non-zero if anything
# failed, was skipped, or could not be cleaned up. Logs: .local/sdk-integration/.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo" || exit 1

suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(python go ts)
for s in "${suites[@]}"; do
    case "$s" in python | go | ts) ;; *) echo "unknown suite '$s' (python, go, ts)" >&2; exit 2 ;; esac
done

say() { printf '==> %s\n' "$*"; }

# ----------------------------------------------------------------------------- stack and binary
if ! bash infra/scripts/stack.sh status >/dev/null 2>&1; then
    say "local stack is not (fully) running: starting it"
    bash infra/scripts/stack.sh up >/dev/null || { echo "stack.sh up failed" >&2; exit 1; }
fi
# shellcheck disable=SC1091
. "$repo/.local/stack/env.sh"

flk="${FLK_BIN:-$repo/target/debug/flk}"
if [ ! -x "$flk" ]; then
    say "building flk"
    cargo build -q -p flk --bin flk --features failpoints || exit 1  # same features as the test build: no rebuild
fi

id="sdkit_$(date +%s)_$$"
prefix="${id}."
topic="${prefix}flk.submissions"
logs="$repo/.local/sdk-integration"
mkdir -p "$logs"
rm -f "$logs"/*.log "$logs"/*.xml "$logs"/*.json "$logs"/*.tap "$logs"/flk.toml "$logs"/flk.stdout
conf="$logs/flk.toml"
# The anchorer signs with a key made for the run; the SDKs' audit tests check live proof bundles
# against its verifier key (FLK_AUDIT_VERIFIER_KEY).
rm -f "$logs/audit.key"
verifier_key="$("$flk" audit keygen --out "$logs/audit.key" --origin "flk.sdk-it/${id}")" || exit 1
cat >"$conf" <<TOML
# Written by infra/scripts/sdk-integration.sh for run ${id}.
region = "local"
[kafka]
topic_prefix = "${prefix}"
[postgres]
schema = "${id}"
[redis]
key_prefix = "${id}"
[gateway]
listen = "127.0.0.1:0"
[audit]
origin_opt = "flk.sdk-it/${id}"
signing_key_file_opt = "$logs/audit.key"
anchor_interval_ms = 200
[tenants.default]
[[tenants.default.keys]]
id = "k1"
hmac_secret = "testsecret"
[tenants.slow]
rate_per_second = 0.5
rate_burst = 1.0
TOML

status=0
flk_pid=""

cleanup() {
    local rc=0
    if [ -n "$flk_pid" ] && kill -0 "$flk_pid" 2>/dev/null; then
        kill -TERM "$flk_pid" 2>/dev/null
        for _ in $(seq 1 150); do kill -0 "$flk_pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$flk_pid" 2>/dev/null; then
            echo "flk serve did not stop on SIGTERM within 15 s; killing it" >&2
            kill -KILL "$flk_pid" 2>/dev/null
        fi
        wait "$flk_pid" 2>/dev/null
    fi
    flk_pid=""
    if ! psql -q -X -v ON_ERROR_STOP=1 "$FLK_POSTGRES_URL" -c "DROP SCHEMA IF EXISTS \"${id}\" CASCADE" \
        >"$logs/cleanup-postgres.log" 2>&1; then
        echo "cleanup: could not drop schema ${id} (see $logs/cleanup-postgres.log)" >&2
        rc=1
    fi
    # Every topic of this run (submissions, decisions, and any the server made later).
    local regex="${prefix//./\\.}.*" topics
    topics="$(bash infra/scripts/kafka-topics.sh --list 2>/dev/null)"
    if grep -q "^${prefix//./\\.}" <<<"$topics"; then
        if ! bash infra/scripts/kafka-topics.sh --delete --topic "$regex" >"$logs/cleanup-kafka.log" 2>&1; then
            echo "cleanup: could not delete topics ${regex} (see $logs/cleanup-kafka.log)" >&2
            rc=1
        fi
    fi
    # Its consumer groups (<prefix>flk-shard, <prefix>flk-projector), which outlive the topics.
    local groups=() group
    while IFS= read -r group; do
        [[ "$group" == "$prefix"* ]] && groups+=(--group "$group")
    done < <(bash infra/scripts/kafka-class.sh org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
        --bootstrap-server "$FLK_KAFKA_BROKERS" --list 2>/dev/null)
    if [ ${#groups[@]} -gt 0 ] &&
        ! bash infra/scripts/kafka-class.sh org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
            --bootstrap-server "$FLK_KAFKA_BROKERS" --delete "${groups[@]}" >"$logs/cleanup-groups.log" 2>&1; then
        echo "cleanup: could not delete consumer groups ${prefix}* (see $logs/cleanup-groups.log)" >&2
        rc=1
    fi
    local url
    IFS=',' read -r -a redis_urls <<<"${FLK_REDIS_URLS:-}"
    for url in "${redis_urls[@]}"; do
        redis-cli -u "$url" --scan --pattern "${id}*" 2>/dev/null |
            xargs -r -n 100 redis-cli -u "$url" DEL >/dev/null 2>&1 || true
    done
    return "$rc"
}
on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    cleanup || rc=1
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# ----------------------------------------------------------------------------- server
say "flk serve (run ${id}; log $logs/flk.log)"
env -u FLK_TOPIC_PREFIX -u FLK_POSTGRES_SCHEMA -u FLK_REDIS_PREFIX -u FLK_GATEWAY_LISTEN \
    "$flk" serve -c "$conf" >"$logs/flk.stdout" 2>"$logs/flk.log" &
flk_pid=$!

url=""
deadline=$((SECONDS + 90))
while [ -z "$url" ]; do
    url="$(sed -n 's/^flk: listening on \(http:\/\/[^ ]*\).*$/\1/p' "$logs/flk.stdout" | head -n1)"
    [ -n "$url" ] && break
    if ! kill -0 "$flk_pid" 2>/dev/null; then
        echo "flk serve exited before listening:" >&2
        tail -n 30 "$logs/flk.log" >&2
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "flk serve printed no listen address within 90 s" >&2
        tail -n 30 "$logs/flk.log" >&2
        exit 1
    fi
    sleep 0.2
done
until curl -fsS -o /dev/null "$url/ready" 2>/dev/null; do
    if ! kill -0 "$flk_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
        echo "flk serve at $url did not become ready:" >&2
        curl -sS "$url/ready" >&2 || true
        tail -n 30 "$logs/flk.log" >&2
        exit 1
    fi
    sleep 0.2
done
say "ready at $url (topic $topic)"

export FLK_GATEWAY_URL="$url"
export FLK_KAFKA_BROKERS
export FLK_SUBMISSIONS_TOPIC="$topic"
export FLK_TEST_SECRET="testsecret"
export FLK_AUDIT_VERIFIER_KEY="$verifier_key"

# ----------------------------------------------------------------------------- suites
total_pass=0
total_fail=0
summary=()

# record SUITE RC PASSED FAILED SKIPPED: a suite that exited non-zero without a failing test (a build
# or collection error) counts one failure; one that ran nothing, or skipped anything, fails too.
record() {
    local suite=$1 rc=$2 passed=$3 failed=$4 skipped=$5
    [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
    if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then
        echo "$suite: no integration test ran" >&2
        failed=1
    fi
    if [ "$skipped" -ne 0 ]; then
        echo "$suite: $skipped integration test(s) skipped although FLK_GATEWAY_URL is set" >&2
        status=1
    fi
    [ "$failed" -ne 0 ] && status=1
    total_pass=$((total_pass + passed))
    total_fail=$((total_fail + failed))
    summary+=("$(printf '%-7s %3d passed, %d failed, %d skipped' "$suite" "$passed" "$failed" "$skipped")")
}

run_python() {
    say "python: pytest -m integration"
    local py="$repo/sdk/python/.venv/bin/python"
    if ! "$py" -c 'import flk_sdk, confluent_kafka, pytest' 2>/dev/null; then
        # The same venv sdk/python/test.sh makes.
        (cd sdk/python && { [ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv; } &&
            .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,kafka]") ||
            { record python 1 0 0 0; return; }
    fi
    local xml="$logs/python.xml" rc
    (cd sdk/python && "$py" -m pytest -m integration -q -rfEs -p no:cacheprovider --junitxml="$xml" tests)
    rc=$?
    local counts
    counts="$("$py" - "$xml" <<'PY' 2>/dev/null || echo "0 0 0"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
tests = sum(int(s.get("tests", 0)) for s in suites)
failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
print(tests - failed - skipped, failed, skipped)
PY
)"
    # shellcheck disable=SC2086
    record python "$rc" $counts
}

run_go() {
    say "go: go test -run Integration ./..."
    local json="$logs/go.json" rc
    (cd sdk/go && go test -count=1 -timeout 5m -json -run Integration ./...) >"$json"
    rc=$?
    python3 - "$json" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        ev = json.loads(line)
    except ValueError:
        sys.stdout.write(line)  # build errors are not JSON
        continue
    out = ev.get("Output", "") if ev.get("Action") == "output" else ""
    if out and not out.startswith(("=== RUN", "=== PAUSE", "=== CONT")):
        sys.stdout.write(out)
PY
    local counts
    counts="$(python3 - "$json" <<'PY' 2>/dev/null || echo "0 0 0"
import json, sys
result = {}
for line in open(sys.argv[1]):
    try:
        ev = json.loads(line)
    except ValueError:
        continue
    if ev.get("Test") and ev.get("Action") in ("pass", "fail", "skip"):
        result[(ev.get("Package"), ev["Test"])] = ev["Action"]
values = list(result.values())
print(values.count("pass"), values.count("fail"), values.count("skip"))
PY
)"
    # shellcheck disable=SC2086
    record go "$rc" $counts
}

run_ts() {
    say "ts: node --test build/test/integration.test.js"
    local tap="$logs/ts.tap" rc
    (
        cd sdk/ts &&
            { [ -d node_modules/kafkajs ] || npm ci --no-audit --no-fund --loglevel=error; } &&
            npx --no-install tsc -p tsconfig.json &&
            npx --no-install tsc -p tsconfig.test.json
    ) || { record ts 1 0 0 0; return; }
    (cd sdk/ts && node --test --test-reporter=tap build/test/integration.test.js) >"$tap" 2>&1
    rc=$?
    grep -E '^ *(ok|not ok) |^# (pass|fail|cancelled|skipped)' "$tap"
    [ "$rc" -ne 0 ] && grep -vE '^ *(ok|not ok) |^# ' "$tap" | grep -E 'Error|assert|expected|actual|message' | head -n 40
    local pass fail cancelled skipped
    pass="$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$tap" | tail -n1)"
    fail="$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$tap" | tail -n1)"
    cancelled="$(sed -n 's/^# cancelled \([0-9]*\)$/\1/p' "$tap" | tail -n1)"
    skipped="$(sed -n 's/^# skipped \([0-9]*\)$/\1/p' "$tap" | tail -n1)"
    record ts "$rc" "${pass:-0}" "$(( ${fail:-0} + ${cancelled:-0} ))" "${skipped:-0}"
}

for s in "${suites[@]}"; do
    "run_$s"
done

if ! kill -0 "$flk_pid" 2>/dev/null; then
    echo "flk serve died during the tests (log: $logs/flk.log)" >&2
    status=1
fi

echo
printf '%s\n' "${summary[@]}"
say "stopping flk serve, dropping schema ${id}, deleting topics ${prefix}*"
if ! cleanup; then
    status=1
fi
trap - EXIT
echo "${total_pass} passed, ${total_fail} failed"
exit "$status"
