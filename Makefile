# The two commands of the README. Everything else is in infra/scripts/.
.PHONY: run test stack-up stack-down regions-up drills chaos chaos-scale tier-drill bench-tier bench-migrate

## Bring up Kafka, Postgres, Redis and the object store, start `flk serve` and send a demo load.
run:
	bash infra/scripts/run-demo.sh

## Every gate CI runs (installs what it needs on a fresh machine).
test:
	bash infra/scripts/test-all.sh

stack-up:
	bash infra/scripts/stack.sh up

stack-down:
	bash infra/scripts/stack.sh down

## The local stack with a second region (its own Kafka cluster, database and Redis nodes);
## docs/runbooks/geo-dr.md.
regions-up:
	bash infra/scripts/stack.sh up --regions a,b

## The geo-DR drills' long form (`chaos/tests/geo_drills.rs`, `geo_failover.rs`,
## `geo_partition.rs`, `geo_replication.rs`, `geo_divergence.rs`): 10,000 records at 1,000/s
## instead of the CI form's 500 at 250/s, and a 90 s cut instead of 12 s; starts the two-region
## stack if needed. Override with FLK_DRILL_RECORDS, FLK_DRILL_RATE and FLK_DRILL_CUT_SECS.
drills:
	bash infra/scripts/stack.sh up --regions a,b >/dev/null
	cargo build -q --workspace --all-targets --features flk/failpoints
	. .local/stack/env.sh && FLK_DRILL_RECORDS=$${FLK_DRILL_RECORDS:-10000} FLK_DRILL_RATE=$${FLK_DRILL_RATE:-1000} \
		FLK_DRILL_CUT_SECS=$${FLK_DRILL_CUT_SECS:-90} \
		cargo test --workspace --features flk/failpoints --test geo_drills --test geo_failover \
		--test geo_partition --test geo_replication \
		--test geo_divergence -- --nocapture --test-threads 1

## Every chaos scenario back to back (`chaos/src/faults.rs`: Postgres slow, silent, frozen and
## killed; a Redis shard lost and Redis frozen; overload; the object store frozen under the cold
## tier; rebalance; a zombie projector; the broker frozen and killed), 10,000 records each at
## 250/s with 10 s faults, judged by the history checker and a replay; prints one table
## (docs/chaos.md). The CI form is
## `chaos/tests/scenarios.rs` (400 records each, 5 s faults). Override with FLK_CHAOS_RECORDS and
## FLK_CHAOS_ONLY (comma-separated scenario names).
chaos:
	bash infra/scripts/stack.sh up >/dev/null
	cargo build -q --workspace --all-targets --features flk/failpoints
	. .local/stack/env.sh && cargo run -q -p chaos --bin flk-chaos -- \
		--records $${FLK_CHAOS_RECORDS:-10000} $${FLK_CHAOS_ONLY:+--only $$FLK_CHAOS_ONLY}

## The long form of the scaling chaos test (`chaos/tests/scaling.rs`): 12 join/leave rounds instead
## of the CI form's 4, at the same 300/s; starts the local stack if needed.
## Override with FLK_SCALE_ROUNDS and FLK_SCALE_RATE.
chaos-scale:
	bash infra/scripts/stack.sh up >/dev/null
	cargo build -q --workspace --all-targets --features flk/failpoints
	. .local/stack/env.sh && FLK_SCALE_ROUNDS=$${FLK_SCALE_ROUNDS:-12} FLK_SCALE_RATE=$${FLK_SCALE_RATE:-300} \
		cargo test --workspace --features flk/failpoints --test scaling -- --nocapture

## The long form of the tiering test (`chaos/tests/tiering.rs`): demotion of 100,000 entries
## instead of the CI form's 20,000 (FLK_TIER_TEST_ENTRIES), then every check of the short form.
tier-drill:
	bash infra/scripts/stack.sh up >/dev/null
	cargo build -q --workspace --all-targets --features flk/failpoints
	. .local/stack/env.sh && FLK_TIER_TEST_ENTRIES=$${FLK_TIER_TEST_ENTRIES:-100000} \
		cargo test --workspace --features flk/failpoints --test tiering -- --nocapture --test-threads 1

## Tiering benchmark: demotion rate, compression ratio, cold read latency (docs/benchmarks.md).
bench-tier:
	bash infra/scripts/bench-tier.sh

bench-migrate:
	bash infra/scripts/bench-migrate.sh
