//! A history recorded outside the test harness, by `flk bench --history FILE` (one JSON line per
//! submission attempt, see `bench/src/history.rs`), read back into [`Operation`]s and judged
//! against a running deployment's stores: `flk-chaos check-history`.

use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

use crate::checker::{Answer, Operation};
use crate::deployment::{Deployment, StackEnv};

/// Every operation of the history file at `path`; an error naming the first bad line.
pub fn read_operations(path: &Path) -> anyhow::Result<Vec<Operation>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the history {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            parse_line(line).with_context(|| format!("{} line {}", path.display(), number + 1))
        })
        .collect()
}

/// One line of a history file.
pub fn parse_line(line: &str) -> anyhow::Result<Operation> {
    let value: Value = serde_json::from_str(line).context("not JSON")?;
    let text = |key: &str| -> anyhow::Result<String> {
        value[key]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("`{key}` missing or not a string"))
    };
    let number = |key: &str| -> anyhow::Result<u64> {
        value[key]
            .as_u64()
            .with_context(|| format!("`{key}` missing or not a number"))
    };
    let status = || -> anyhow::Result<u16> {
        u16::try_from(number("status")?).context("`status` is not an HTTP status")
    };
    let (invoked_at_ms, completed_at_ms) = (number("invoked_at_ms")?, number("completed_at_ms")?);
    let (tenant, pcs_id, digest) = (text("tenant")?, text("pcs_id")?, text("digest")?);
    let answer = match text("answer")?.as_str() {
        "ok" => Answer::Ok {
            status: status()?,
            outcome_code: text("outcome_code")?,
        },
        "fail" => Answer::Fail { status: status()? },
        "unknown" => Answer::Unknown,
        other => anyhow::bail!("`answer` is {other:?}, not ok, fail or unknown"),
    };
    Ok(Operation {
        invoked_at_ms,
        completed_at_ms,
        tenant,
        pcs_id,
        digest,
        answer,
    })
}

/// The deployment a `flk` config file describes (its brokers, topic prefix, schema and Redis
/// key prefix), for reading its stores. Never clean it up: the names are the user's.
pub fn deployment_of(config: &infra::config::Config) -> anyhow::Result<Deployment> {
    let stack = StackEnv {
        brokers: config.kafka.brokers.clone(),
        postgres_url: config.postgres.url.clone(),
        redis_urls: config.redis.urls.clone(),
        link_upstream_opt: None,
        link_brokers_opt: None,
    };
    let mut deployment = Deployment::on(stack, Vec::new())?;
    deployment.region = config.region.clone();
    deployment.id = config.redis.key_prefix.clone();
    deployment.topic_prefix = config.kafka.topic_prefix.clone();
    deployment.schema = config.postgres.schema.clone();
    deployment.partitions = config.kafka.partitions;
    Ok(deployment)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn reads_each_kind_of_answer() {
        let ok = parse_line(
            r#"{"invoked_at_ms":1,"completed_at_ms":5,"tenant":"t","pcs_id":"p","digest":"ab","answer":"ok","status":409,"outcome_code":"rejected"}"#,
        )
        .unwrap();
        assert_eq!(
            ok.answer,
            Answer::Ok {
                status: 409,
                outcome_code: "rejected".into()
            }
        );
        assert_eq!((ok.invoked_at_ms, ok.completed_at_ms), (1, 5));
        let fail = parse_line(
            r#"{"invoked_at_ms":1,"completed_at_ms":2,"tenant":"t","pcs_id":"p","digest":"ab","answer":"fail","status":429}"#,
        )
        .unwrap();
        assert_eq!(fail.answer, Answer::Fail { status: 429 });
        let unknown = parse_line(
            r#"{"invoked_at_ms":1,"completed_at_ms":2,"tenant":"t","pcs_id":"p","digest":"ab","answer":"unknown"}"#,
        )
        .unwrap();
        assert_eq!(unknown.answer, Answer::Unknown);
    }

    #[test]
    fn a_bad_line_is_refused_with_what_is_wrong() {
        let error = parse_line(r#"{"invoked_at_ms":1,"answer":"ok"}"#).unwrap_err();
        assert!(error.to_string().contains("completed_at_ms"), "{error}");
        let error = parse_line(
            r#"{"invoked_at_ms":1,"completed_at_ms":2,"tenant":"t","pcs_id":"p","digest":"ab","answer":"maybe"}"#,
        )
        .unwrap_err();
        assert!(error.to_string().contains("maybe"), "{error}");
        assert!(parse_line("{not json").is_err());
    }
}
