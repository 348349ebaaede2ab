#!/usr/bin/env bash
# The one test command (README, `make test`, `.ci/run`): installs what it needs on a fresh machine,
# then runs every gate. SDK suites run in the background while Rust builds, since they mostly wait
# on package downloads; everything else runs in order so a failure is easy to read.
#
# Gates: cargo fmt --check, clippy -D warnings, cargo test (workspace, including the service tests
# on a real local stack: Kafka, PostgreSQL, Redis, S3, Prometheus, and an OpenTelemetry Collector
# feeding Jaeger for the trace test; plus region b, a second Kafka cluster with its own database
# and Redis nodes, for the two-region tests), the light-crate dependency check, fuzz targets
# (build + a short run each), SDK suites (Python, Go, TypeScript), the SDK clients against a running
# `flk serve`, and the cross-language signing check over 1,000 random records.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
logs="$repo/target/test-logs"
mkdir -p "$logs"
fuzz_seconds="${FLK_FUZZ_SECONDS:-20}"
cross_count="${FLK_CROSS_COUNT:-1000}"

step() { printf '\n==> %s\n' "$*"; }
failures=()

# A cold build of every test binary needs about 9 GiB under target/; running out half way shows up
# as a linker "Bus error" or "No space left on device", which reads like a toolchain fault. Say it
# plainly up front instead. Incremental compilation only helps repeated local builds and roughly
# doubles the size of target/, so the test command turns it off.
export CARGO_INCREMENTAL=0
min_free_kib=$((12 * 1024 * 1024))
free_kib=$(df -Pk "$repo" | awk 'NR==2 {print $4}')
if [ "${free_kib:-0}" -lt "$min_free_kib" ]; then
    echo "error: only $((free_kib / 1024 / 1024)) GiB free on the disk holding $repo;" \
        "the test build needs at least 12 GiB (free space, or remove old target/ directories)" >&2
    exit 2
fi

step "toolchains"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

step "local stack (background; log in target/test-logs/stack.log)"
bash infra/scripts/stack.sh up --regions a,b >"$logs/stack.env" 2>"$logs/stack.log" &
stack_pid=$!

step "SDK suites (background; logs in target/test-logs)"
declare -A sdk_pids=()
for sdk in python go ts; do
    # The exit status goes to a file too: a suite that finished long ago can lose its saved
    # status in bash once a later child reuses its process id (a long run wraps the pid space),
    # and `wait` then fails with "not a child of this shell" although the suite passed.
    rm -f "$logs/sdk-$sdk.rc"
    { status=0; bash "sdk/$sdk/test.sh" >"$logs/sdk-$sdk.log" 2>&1 || status=$?; echo "$status" >"$logs/sdk-$sdk.rc"; } &
    sdk_pids[$sdk]=$!
done

step "cargo fmt --check"
cargo fmt --all --check || failures+=("cargo fmt")

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --features flk/failpoints -- -D warnings || failures+=("clippy")

step "no unused dependencies (cargo machete)"
command -v cargo-machete >/dev/null || cargo install cargo-machete --locked --version 0.9.2 >/dev/null 2>&1 \
    || cargo install cargo-machete --locked >/dev/null
cargo machete || failures+=("unused dependencies")

step "waiting for the local stack"
if ! wait "$stack_pid"; then
    tail -40 "$logs/stack.log"
    echo "the local stack did not start"
    exit 1
fi
# shellcheck disable=SC1091
. "$repo/.local/stack/env.sh"

step "cargo test (unit, property, vector and service tests)"
# The chaos suites inject faults (FLK_FAILPOINTS): the binary they start carries the failpoints
# feature, which release builds leave out. The same flags everywhere, so nothing builds twice.
cargo build -q --workspace --all-targets --features flk/failpoints
cargo test --workspace --features flk/failpoints || failures+=("cargo test")

step "the committed vector files are what the generators write"
cargo run -q -p events --example vectors || failures+=("vector file out of date")
cargo run -q -p events --example audit_vectors || failures+=("audit vector file out of date")

# flk-config and flk-http-head too: the fuzz targets build them under a sanitizer.
step "events, flk-config, flk-http-head: no tokio, actix, rdkafka, postgres or redis dependencies"
for crate in events flk-config flk-http-head; do
    forbidden=$(cargo tree -p "$crate" -e normal --prefix none --format '{p}' \
        | grep -Eo '^(tokio|actix[a-z_-]*|rdkafka[a-z_-]*|tokio-postgres|postgres[a-z_-]*|deadpool[a-z_-]*|redis[a-z_-]*) ' | sort -u || true)
    if [ -n "$forbidden" ]; then
        echo "forbidden dependencies in $crate: $forbidden"
        failures+=("$crate dependencies")
    else
        echo "$crate: ok"
    fi
done

step "fuzz targets (${fuzz_seconds}s each)"
for target in pcs_decoder envelope_decoder region_link_decoder config_loader http_request_head; do
    if ! (cd fuzz && cargo +nightly fuzz run "$target" -- -max_total_time="$fuzz_seconds" \
            >"$logs/fuzz-$target.log" 2>&1); then
        tail -40 "$logs/fuzz-$target.log"
        failures+=("fuzz $target")
    else
        grep -E '^Done|#[0-9]+.*DONE' "$logs/fuzz-$target.log" | tail -1 || true
    fi
done

step "waiting for SDK suites"
for sdk in python go ts; do
    # A running suite is always a child: once `wait` returns, the suite is done and its status
    # file written (see where it starts).
    wait "${sdk_pids[$sdk]}" 2>/dev/null || true
    if [[ "$(cat "$logs/sdk-$sdk.rc" 2>/dev/null)" == "0" ]]; then
        echo "sdk/$sdk: ok ($(grep -Eo '[0-9]+ passed|ok +[^ ]+|# pass [0-9]+' "$logs/sdk-$sdk.log" | tail -1))"
    else
        tail -60 "$logs/sdk-$sdk.log"
        failures+=("sdk/$sdk")
    fi
done

step "SDK clients against a running flk serve (Python, Go, TypeScript)"
bash infra/scripts/sdk-integration.sh >"$logs/sdk-integration.log" 2>&1 || failures+=("sdk integration")
tail -4 "$logs/sdk-integration.log"

step "cross-language signing (${cross_count} random records, four implementations)"
(cd sdk/go && go build -o "$repo/target/flk-sdk-go" ./cmd/flk-sdk)
sdk/python/.venv/bin/python tests/cross/cross_sign.py --count "$cross_count" --seed "${FLK_CROSS_SEED:-20251125}" \
    --impl rust="$repo/target/debug/flk pcs batch" \
    --impl python="$repo/sdk/python/.venv/bin/python -m flk_sdk batch" \
    --impl go="$repo/target/flk-sdk-go batch" \
    --impl ts="node $repo/sdk/ts/dist/cli.js batch" || failures+=("cross-language")

if [ "${CI:-}" = "true" ]; then
    bash infra/scripts/stack.sh down >/dev/null 2>&1 || true
fi

echo
if [ ${#failures[@]} -gt 0 ]; then
    echo "FAILED: ${failures[*]}"
    exit 1
fi
echo "all gates passed"
