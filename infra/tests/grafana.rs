//! The Grafana dashboard in `infra/grafana/` parses, is laid out on Grafana's 24-column grid, and
//! queries only metrics FLK exports (a renamed metric must not leave a silently empty panel).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use infra::metrics::Metrics;
use serde_json::Value;

fn grafana_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("grafana")
}

fn dashboard() -> Value {
    let path = grafana_dir().join("dashboards/flk-pipeline.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Names FLK exposes at `/metrics`, with a histogram's `_bucket`, `_sum` and `_count` series.
fn exported_names() -> HashSet<String> {
    let metrics = Metrics::new();
    // Vectors without a child are not rendered; give each one a child.
    for counter in [
        &metrics.ingest_total,
        &metrics.dedup_hits,
        &metrics.accepted,
        &metrics.escalated,
        &metrics.signature_errors,
        &metrics.http_responses,
        &metrics.decisions_produced,
        &metrics.decisions_applied,
        &metrics.actor_restarts,
    ] {
        counter.with_label_values(&["x"]).inc();
    }
    metrics
        .submit_latency
        .with_label_values(&["200"])
        .observe(0.01);
    metrics
        .partitions_owned
        .with_label_values(&["shard"])
        .set(1);
    for gauge in [&metrics.actor_in_flight, &metrics.actor_lag] {
        gauge.with_label_values(&["x"]).set(1);
    }
    for gauge in [
        &metrics.audit_tree_size,
        &metrics.audit_checkpoints_unpublished,
        &metrics.audit_dlq_depth,
    ] {
        gauge.with_label_values(&[] as &[&str]).set(1);
    }
    metrics
        .audit_anchor_delay
        .with_label_values(&[] as &[&str])
        .observe(1.0);
    metrics
        .audit_task_age
        .with_label_values(&["x"])
        .observe(1.0);
    metrics
        .audit_task_attempts
        .with_label_values(&["x", "ok"])
        .inc();
    for counter in [
        &metrics.tier_demoted_entries,
        &metrics.tier_segments_written,
        &metrics.tier_segment_bytes,
        &metrics.tier_segments_expired,
        &metrics.tier_segments_abandoned,
        &metrics.tier_cold_misses,
        &metrics.tier_promotions,
    ] {
        counter.with_label_values(&["x"]).inc();
    }
    metrics
        .tier_demote_errors
        .with_label_values(&[] as &[&str])
        .inc();
    metrics
        .crr_lag
        .with_label_values(&["a", "record"])
        .observe(0.1);
    metrics.crr_heartbeat_age.with_label_values(&["a"]).set(0.5);
    metrics
        .replicated_records
        .with_label_values(&["b", "submissions", "shipped", ""])
        .inc();
    metrics
        .tier_cold_reads
        .with_label_values(&["x", "object"])
        .inc();
    metrics
        .tier_cold_read_latency
        .with_label_values(&["object"])
        .observe(0.01);
    let mut names = HashSet::new();
    for family in metrics.registry.gather() {
        let name = family.name().to_owned();
        for suffix in ["_bucket", "_sum", "_count"] {
            names.insert(format!("{name}{suffix}"));
        }
        names.insert(name);
    }
    names
}

/// Every `flk_...` identifier in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("flk_") {
        let tail = &rest[start..];
        let end = tail
            .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn dashboard_queries_only_exported_metrics() {
    let dashboard = dashboard();
    let exported = exported_names();
    let mut queried = BTreeSet::new();
    let panels = dashboard["panels"].as_array().unwrap();
    for panel in panels.iter().filter(|panel| panel["type"] != "row") {
        let title = panel["title"].as_str().unwrap();
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(
                !names.is_empty(),
                "panel {title:?}: {expr} names no flk metric"
            );
            for name in names {
                assert!(
                    exported.contains(&name),
                    "panel {title:?} queries {name}, which FLK does not export"
                );
                queried.insert(name);
            }
        }
    }
    // The panels the runbook promises.
    for name in [
        "flk_ingest_total",
        "flk_http_responses_total",
        "flk_submit_latency_seconds_bucket",
        "flk_decisions_produced_total",
        "flk_decisions_applied_total",
        "flk_actor_restarts_total",
        "flk_partitions_owned",
        "flk_tier_demoted_entries_total",
        "flk_tier_cold_misses_total",
        "flk_tier_cold_read_seconds_bucket",
        "flk_crr_lag_seconds_bucket",
        "flk_crr_heartbeat_age_seconds",
        "flk_replication_records_total",
    ] {
        assert!(queried.contains(name), "no panel shows {name}");
    }
}

#[test]
fn dashboard_layout_and_datasource_are_consistent() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "flk-pipeline");
    let mut ids = HashSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_i64().unwrap()),
            "duplicate panel id"
        );
        let grid = &panel["gridPos"];
        let (x, width) = (grid["x"].as_i64().unwrap(), grid["w"].as_i64().unwrap());
        assert!(
            x >= 0 && width > 0 && x + width <= 24,
            "{grid} leaves the grid"
        );
        if panel["type"] != "row" {
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{}",
                panel["title"]
            );
        }
    }
    // The datasource variable defaults to the provisioned datasource.
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let datasource = variables
        .iter()
        .find(|variable| variable["name"] == "datasource")
        .unwrap();
    let provisioned =
        std::fs::read_to_string(grafana_dir().join("provisioning/datasources/flk-prometheus.yaml"))
            .unwrap();
    let uid = datasource["current"]["value"].as_str().unwrap();
    assert!(provisioned.contains(&format!("uid: {uid}")), "{uid}");
    let provider =
        std::fs::read_to_string(grafana_dir().join("provisioning/dashboards/flk.yaml")).unwrap();
    assert!(provider.contains("type: file"));
}
