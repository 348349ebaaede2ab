//! How the projector's transaction plans its statements.
//!
//! Pooled connections start with `plan_cache_mode = force_custom_plan` ([`crate::store`]): a
//! plan cached while a fresh schema's tables are empty can scan a whole table once it has grown,
//! and keeps doing so until an `ANALYZE` invalidates it. The price is planning every statement at
//! every execution, which was more than half of the projector's statement time at 1,000
//! records/s (docs/benchmarks.md, "Performance round 3").
//!
//! The projector's transaction therefore switches to the cached generic plans for the statements
//! whose plan cannot go wrong: lookups written as one index probe per key (a `LATERAL` subquery
//! with `LIMIT` that the planner cannot turn into a join), and inserts from arrays, which scan
//! nothing. It switches back to custom plans before a statement with a choice to make: the dedup
//! lookup (its two columns are also in the `dedup_due` index, which starts with the tenant and
//! which an empty table's estimates rank equal to the key) and the dedup update (a join).
//! `SET LOCAL` lasts until the transaction ends.
//!
//! The switch is sent in the same round trip as the statements it covers: tokio-postgres sends
//! each request when its future is first polled, and `futures::try_join!` polls in order. Were the
//! order ever different, a statement would only be planned the other way, never answer
//! differently.

/// The planning of the statements that follow, until the transaction ends or the next switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlanMode {
    /// Plan once per connection and reuse the plan (for statements whose plan cannot go wrong).
    Cached,
    /// Plan at each execution with the parameters and the tables' current statistics.
    PerExecution,
}

/// Switches the transaction's plan mode.
pub(crate) async fn set(
    transaction: &deadpool_postgres::Transaction<'_>,
    mode: PlanMode,
) -> Result<(), tokio_postgres::Error> {
    transaction
        .batch_execute(match mode {
            PlanMode::Cached => "SET LOCAL plan_cache_mode = force_generic_plan",
            PlanMode::PerExecution => "SET LOCAL plan_cache_mode = force_custom_plan",
        })
        .await
}
