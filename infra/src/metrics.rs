//! Every Prometheus metric of FLK, named in one place. Labels are bounded: tenant (from config),
//! partition, role or status class; never a pcs_id or any other per-record value.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The process's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Registry rendered at `/metrics`.
    pub registry: Registry,
    /// Submissions received by the gateway, by tenant (kept from the original stack).
    pub ingest_total: IntCounterVec,
    /// Submissions refused with 429 before the log, by scope (`tenant`, `address`).
    pub rate_limited: IntCounterVec,
    /// Submissions refused with 403 before the log, by reason (`unknown`, `disabled`).
    pub tenant_refused: IntCounterVec,
    /// Duplicate submissions answered from the first decision, by tenant.
    pub dedup_hits: IntCounterVec,
    /// Accepted outcomes, by tenant.
    pub accepted: IntCounterVec,
    /// Escalated outcomes, by tenant.
    pub escalated: IntCounterVec,
    /// Missing or invalid signatures, by tenant.
    pub signature_errors: IntCounterVec,
    /// Gateway answers by HTTP status.
    pub http_responses: IntCounterVec,
    /// Gateway submit latency (seconds), by status.
    pub submit_latency: HistogramVec,
    /// Decisions produced by shard actors.
    pub decisions_produced: IntCounterVec,
    /// Decisions applied by projectors, by dedup result.
    pub decisions_applied: IntCounterVec,
    /// Actor restarts, by actor.
    pub actor_restarts: IntCounterVec,
    /// Partitions currently owned, by role.
    pub partitions_owned: IntGaugeVec,
    /// Records taken and not finished (unacked decisions, events in a transaction), by role.
    pub actor_in_flight: IntGaugeVec,
    /// Records read and waiting for their turn, by role.
    pub actor_buffered: IntGaugeVec,
    /// Records behind the end of the owned partitions, by role.
    pub actor_lag: IntGaugeVec,
    /// Records behind the end of each owned partition, by role and partition.
    pub actor_partition_lag: IntGaugeVec,
    /// Seconds since each actor last made progress (set when metrics are rendered), by role.
    pub actor_progress_age: prometheus::GaugeVec,
    /// Events per projector transaction.
    pub projector_batch_events: HistogramVec,
    /// Projector transaction time, from begin to commit (seconds).
    pub projector_transaction_latency: HistogramVec,
    /// Leaves in the audit Merkle log (the newest checkpoint's tree size).
    pub audit_tree_size: IntGaugeVec,
    /// Leaves appended to the audit Merkle log.
    pub audit_leaves: IntCounterVec,
    /// Checkpoints signed and committed.
    pub audit_checkpoints: IntCounterVec,
    /// Committed checkpoints not yet written to the object store.
    pub audit_checkpoints_unpublished: IntGaugeVec,
    /// From a decision to the signed checkpoint that first covers its audit entry (seconds).
    pub audit_anchor_delay: HistogramVec,
    /// Audit task attempts, by kind and result (`ok`, `failed`, `skipped`, `dead`).
    pub audit_task_attempts: IntCounterVec,
    /// From a task's creation to its end (done or dead), by kind (seconds).
    pub audit_task_age: HistogramVec,
    /// Tasks in the DLQ still waiting for an operator.
    pub audit_dlq_depth: IntGaugeVec,
    /// Entries moved from warm to cold, by tenant.
    pub tier_demoted_entries: IntCounterVec,
    /// Cold segments written and sealed, by tenant.
    pub tier_segments_written: IntCounterVec,
    /// Compressed bytes of the sealed segments, by tenant.
    pub tier_segment_bytes: IntCounterVec,
    /// Cold segments deleted by retention, by tenant.
    pub tier_segments_expired: IntCounterVec,
    /// Segments abandoned (rows changed while packed), by tenant.
    pub tier_segments_abandoned: IntCounterVec,
    /// Demotion cycles that failed (object store or Postgres down), retried next cycle.
    pub tier_demote_errors: IntCounterVec,
    /// Reads served from the cold tier, by tenant and source (`object`, `cache`).
    pub tier_cold_reads: IntCounterVec,
    /// Reads of cold entries that could not be served, by reason (`unavailable`, `unreadable`).
    pub tier_cold_misses: IntCounterVec,
    /// Cold entries promoted back to warm by a read, by tenant.
    pub tier_promotions: IntCounterVec,
    /// Time to serve one cold read (index, object, verification), seconds.
    pub tier_cold_read_latency: HistogramVec,
    /// Hot tier writes to the second ring of a migration (dual write) that failed.
    pub dedup_dual_write_errors: IntCounterVec,
    /// Lookups whose hot tier read failed (node down or slower than its timeout) and fell back
    /// to Postgres.
    pub hot_cache_read_errors: IntCounterVec,
    /// Local records handled by a replicator, by remote region, stream (`submissions`,
    /// `heartbeats`), outcome (`shipped`, `skipped`) and reason (`from_replica`,
    /// `tenant_not_replicated`; empty when shipped).
    pub replicated_records: IntCounterVec,
    /// Replication checkpoints written to the target cluster, by remote region, stream and
    /// outcome (`written`, `failed`).
    pub replication_checkpoints: IntCounterVec,
    /// Replication lag (seconds) by origin region and source: `heartbeat` (a mirrored
    /// heartbeat's age when it arrives) or `record` (a mirrored submission's age, from its
    /// received-at, when this region's shard decides it).
    pub crr_lag: HistogramVec,
    /// Age (seconds) of the newest heartbeat received from each origin region, set every second:
    /// it keeps growing while the link is cut, when no new lag is observed at all.
    pub crr_heartbeat_age: prometheus::GaugeVec,
    /// Heartbeats this region emitted, by outcome (`written`, `failed`).
    pub crr_heartbeats: IntCounterVec,
    /// Keys the last divergence check found different, by remote region and kind
    /// (`missing_here`, `missing_there`, `different_record`, `different_outcome`).
    pub geo_divergence_open_keys: IntGaugeVec,
    /// Divergence checks, by remote region and outcome (`ok`, `failed`).
    pub geo_divergence_runs: IntCounterVec,
    /// When the last divergence check finished without error (Unix seconds), by remote region.
    pub geo_divergence_last_success: IntGaugeVec,
}

/// Requests sent to Kafka brokers, by client (`client.id`) and request type. Process-wide, unlike
/// every other metric: librdkafka reports them from inside each client, and clients are made in
/// places that hold no [`Metrics`]; every [`Metrics`] registers this one counter.
pub fn kafka_requests() -> &'static IntCounterVec {
    static REQUESTS: std::sync::LazyLock<IntCounterVec> = std::sync::LazyLock::new(|| {
        IntCounterVec::new(
            Opts::new(
                "flk_kafka_requests_total",
                "requests sent to Kafka brokers, by client and request type",
            ),
            &["client", "request"],
        )
        .unwrap_or_else(|_| unreachable_metric("flk_kafka_requests_total"))
    });
    &REQUESTS
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|_| unreachable_metric(name));
    let _ = registry.register(Box::new(metric.clone()));
    metric
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|_| unreachable_metric(name));
    let _ = registry.register(Box::new(metric.clone()));
    metric
}

#[allow(clippy::panic)] // metric names are constants below; a bad one is a programming error
fn unreachable_metric(name: &str) -> ! {
    panic!("invalid metric definition {name}")
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let tenant = &["tenant"];
        let latency = HistogramVec::new(
            HistogramOpts::new("flk_submit_latency_seconds", "gateway submit latency").buckets(
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
            &["status"],
        )
        .unwrap_or_else(|_| unreachable_metric("flk_submit_latency_seconds"));
        let _ = registry.register(Box::new(latency.clone()));
        let role = &["role"];
        let anchor_delay = HistogramVec::new(
            HistogramOpts::new(
                "flk_audit_anchor_delay_seconds",
                "from a decision to the signed checkpoint covering it",
            )
            .buckets(vec![
                0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
            ]),
            &[],
        )
        .unwrap_or_else(|_| unreachable_metric("flk_audit_anchor_delay_seconds"));
        let _ = registry.register(Box::new(anchor_delay.clone()));
        let task_age = HistogramVec::new(
            HistogramOpts::new(
                "flk_audit_task_age_seconds",
                "from an audit task's creation to its end",
            )
            .buckets(vec![
                0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
            ]),
            &["kind"],
        )
        .unwrap_or_else(|_| unreachable_metric("flk_audit_task_age_seconds"));
        let _ = registry.register(Box::new(task_age.clone()));
        let cold_read_latency = HistogramVec::new(
            HistogramOpts::new(
                "flk_tier_cold_read_seconds",
                "time to serve one read from the cold tier",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["source"],
        )
        .unwrap_or_else(|_| unreachable_metric("flk_tier_cold_read_seconds"));
        let _ = registry.register(Box::new(cold_read_latency.clone()));
        let batch_events = HistogramVec::new(
            HistogramOpts::new(
                "flk_projector_batch_events",
                "events per projector transaction",
            )
            .buckets(vec![
                1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0,
            ]),
            &[],
        )
        .unwrap_or_else(|_| unreachable_metric("flk_projector_batch_events"));
        let _ = registry.register(Box::new(batch_events.clone()));
        let transaction_latency = HistogramVec::new(
            HistogramOpts::new(
                "flk_projector_transaction_seconds",
                "projector transaction time, begin to commit",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &[],
        )
        .unwrap_or_else(|_| unreachable_metric("flk_projector_transaction_seconds"));
        let _ = registry.register(Box::new(transaction_latency.clone()));
        let progress_age = prometheus::GaugeVec::new(
            Opts::new(
                "flk_actor_progress_age_seconds",
                "seconds since the actor last made progress",
            ),
            &["role"],
        )
        .unwrap_or_else(|_| unreachable_metric("flk_actor_progress_age_seconds"));
        let _ = registry.register(Box::new(progress_age.clone()));
        let crr_lag = HistogramVec::new(
            HistogramOpts::new(
                "flk_crr_lag_seconds",
                "replication lag from another region, by origin region and source",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["origin_region", "source"],
        )
        .unwrap_or_else(|_| unreachable_metric("flk_crr_lag_seconds"));
        let _ = registry.register(Box::new(crr_lag.clone()));
        let crr_heartbeat_age = prometheus::GaugeVec::new(
            Opts::new(
                "flk_crr_heartbeat_age_seconds",
                "age of the newest heartbeat received from an origin region",
            ),
            &["origin_region"],
        )
        .unwrap_or_else(|_| unreachable_metric("flk_crr_heartbeat_age_seconds"));
        let _ = registry.register(Box::new(crr_heartbeat_age.clone()));
        let _ = registry.register(Box::new(kafka_requests().clone()));
        Metrics {
            crr_lag,
            crr_heartbeat_age,
            geo_divergence_open_keys: gauge(
                &registry,
                "flk_geo_divergence_open_keys",
                "keys the last divergence check found different, by remote region and kind",
                &["remote_region", "kind"],
            ),
            geo_divergence_runs: counter(
                &registry,
                "flk_geo_divergence_runs_total",
                "divergence checks, by remote region and outcome",
                &["remote_region", "outcome"],
            ),
            geo_divergence_last_success: gauge(
                &registry,
                "flk_geo_divergence_last_success_timestamp_seconds",
                "when the last divergence check finished without error",
                &["remote_region"],
            ),
            crr_heartbeats: counter(
                &registry,
                "flk_crr_heartbeats_total",
                "heartbeats this region emitted, by outcome",
                &["outcome"],
            ),
            actor_partition_lag: gauge(
                &registry,
                "flk_actor_partition_lag_records",
                "records behind the end of an owned partition",
                &["role", "partition"],
            ),
            actor_progress_age: progress_age,
            projector_batch_events: batch_events,
            projector_transaction_latency: transaction_latency,
            tier_demoted_entries: counter(
                &registry,
                "flk_tier_demoted_entries_total",
                "entries moved from the warm tier to the cold tier",
                tenant,
            ),
            tier_segments_written: counter(
                &registry,
                "flk_tier_segments_written_total",
                "cold segments written, verified and sealed",
                tenant,
            ),
            tier_segment_bytes: counter(
                &registry,
                "flk_tier_segment_bytes_total",
                "compressed bytes of the sealed cold segments",
                tenant,
            ),
            tier_segments_expired: counter(
                &registry,
                "flk_tier_segments_expired_total",
                "cold segments deleted by retention",
                tenant,
            ),
            tier_segments_abandoned: counter(
                &registry,
                "flk_tier_segments_abandoned_total",
                "cold segments abandoned because their rows changed while packed",
                tenant,
            ),
            tier_demote_errors: counter(
                &registry,
                "flk_tier_demote_errors_total",
                "demotion cycles that failed and will be retried",
                &[],
            ),
            tier_cold_reads: counter(
                &registry,
                "flk_tier_cold_reads_total",
                "reads served from the cold tier",
                &["tenant", "source"],
            ),
            tier_cold_misses: counter(
                &registry,
                "flk_tier_cold_misses_total",
                "reads of cold entries that could not be served",
                &["reason"],
            ),
            tier_promotions: counter(
                &registry,
                "flk_tier_promotions_total",
                "cold entries promoted back to the warm tier by a read",
                tenant,
            ),
            tier_cold_read_latency: cold_read_latency,
            dedup_dual_write_errors: counter(
                &registry,
                "flk_dedup_dual_write_errors_total",
                "hot tier writes to the second ring of a migration that failed",
                &[],
            ),
            hot_cache_read_errors: counter(
                &registry,
                "flk_hot_cache_read_errors_total",
                "lookups whose hot tier read failed and fell back to postgres",
                &[],
            ),
            replicated_records: counter(
                &registry,
                "flk_replication_records_total",
                "local records handled by a replicator, by remote region, stream, outcome and reason",
                &["remote_region", "stream", "outcome", "reason"],
            ),
            replication_checkpoints: counter(
                &registry,
                "flk_replication_checkpoints_total",
                "replication checkpoints written to the target cluster, by remote region, stream and outcome",
                &["remote_region", "stream", "outcome"],
            ),
            ingest_total: counter(
                &registry,
                "flk_ingest_total",
                "submissions received",
                tenant,
            ),
            rate_limited: counter(
                &registry,
                "flk_rate_limited_total",
                "submissions refused with 429 before the log, by scope (tenant, address)",
                &["scope"],
            ),
            tenant_refused: counter(
                &registry,
                "flk_tenant_refused_total",
                "submissions refused with 403 before the log, by reason (unknown, disabled)",
                &["reason"],
            ),
            dedup_hits: counter(&registry, "flk_dedup_hits", "duplicate submissions", tenant),
            accepted: counter(&registry, "flk_accepted", "accepted outcomes", tenant),
            escalated: counter(&registry, "flk_escalated", "escalated outcomes", tenant),
            signature_errors: counter(
                &registry,
                "flk_signature_errors",
                "missing or invalid signatures",
                tenant,
            ),
            http_responses: counter(
                &registry,
                "flk_http_responses_total",
                "gateway answers",
                &["status"],
            ),
            submit_latency: latency,
            decisions_produced: counter(
                &registry,
                "flk_decisions_produced_total",
                "decisions produced by shards",
                &["verdict"],
            ),
            decisions_applied: counter(
                &registry,
                "flk_decisions_applied_total",
                "decisions applied by projectors",
                &["dedup_result"],
            ),
            actor_restarts: counter(
                &registry,
                "flk_actor_restarts_total",
                "actor restarts",
                &["actor"],
            ),
            partitions_owned: gauge(
                &registry,
                "flk_partitions_owned",
                "partitions currently owned",
                role,
            ),
            actor_in_flight: gauge(
                &registry,
                "flk_actor_in_flight_records",
                "records taken and not finished",
                role,
            ),
            actor_buffered: gauge(
                &registry,
                "flk_actor_buffered_records",
                "records read and waiting",
                role,
            ),
            actor_lag: gauge(
                &registry,
                "flk_actor_lag_records",
                "records behind the end of the owned partitions",
                role,
            ),
            audit_tree_size: gauge(
                &registry,
                "flk_audit_tree_size_leaves",
                "leaves in the audit merkle log",
                &[],
            ),
            audit_leaves: counter(
                &registry,
                "flk_audit_leaves_total",
                "leaves appended to the audit merkle log",
                &[],
            ),
            audit_checkpoints: counter(
                &registry,
                "flk_audit_checkpoints_total",
                "audit checkpoints signed and committed",
                &[],
            ),
            audit_checkpoints_unpublished: gauge(
                &registry,
                "flk_audit_checkpoints_unpublished",
                "committed checkpoints not yet in the object store",
                &[],
            ),
            audit_anchor_delay: anchor_delay,
            audit_task_attempts: counter(
                &registry,
                "flk_audit_task_attempts_total",
                "audit task attempts by kind and result",
                &["kind", "result"],
            ),
            audit_task_age: task_age,
            audit_dlq_depth: gauge(
                &registry,
                "flk_audit_dlq_depth_tasks",
                "audit tasks in the dlq waiting for an operator",
                &[],
            ),
            registry,
        }
    }

    /// Creates every labelled series FLK knows the labels of, at zero, so dashboards and alerts
    /// see a series (and `rate()` answers 0) before the first event: per tenant, per miss reason.
    pub fn initialize<'a>(&self, tenants: impl IntoIterator<Item = &'a str>) {
        for tenant in tenants {
            for counter in [
                &self.ingest_total,
                &self.dedup_hits,
                &self.accepted,
                &self.escalated,
                &self.signature_errors,
                &self.tier_demoted_entries,
                &self.tier_segments_written,
                &self.tier_segment_bytes,
                &self.tier_segments_abandoned,
                &self.tier_segments_expired,
                &self.tier_promotions,
            ] {
                counter.with_label_values(&[tenant]);
            }
            for source in ["object", "cache"] {
                self.tier_cold_reads.with_label_values(&[tenant, source]);
            }
        }
        for reason in ["unavailable", "unreadable"] {
            self.tier_cold_misses.with_label_values(&[reason]);
        }
        for scope in ["tenant", "address"] {
            self.rate_limited.with_label_values(&[scope]);
        }
        for reason in ["unknown", "disabled"] {
            self.tenant_refused.with_label_values(&[reason]);
        }
        for source in ["object", "cache"] {
            self.tier_cold_read_latency.with_label_values(&[source]);
        }
        self.tier_demote_errors.with_label_values(&[] as &[&str]);
        self.audit_dlq_depth.with_label_values(&[] as &[&str]);
        self.audit_checkpoints_unpublished
            .with_label_values(&[] as &[&str]);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
