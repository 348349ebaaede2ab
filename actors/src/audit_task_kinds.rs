//! What each audit task kind does (the audit worker runs them; see `audit_worker.rs`). Every
//! kind is idempotent: running a task twice has one effect.

use events::audit_task::{AuditTask, kinds};
use infra::log::OutgoingRecord;
use infra::objects::{Objects, put_once};
use infra::tsa::{TsaClient, TsaError};
use projections::ProjectionStore;
use projections::audit_tasks::Attestation;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::contract::now_ms;

/// Why an attempt failed.
#[derive(Debug)]
pub enum TaskError {
    /// Worth another attempt (a dependency was down).
    Retry(String),
    /// Can never succeed (bad payload, unknown kind, nothing configured to run it).
    Permanent(String),
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskError::Retry(why) | TaskError::Permanent(why) => f.write_str(why),
        }
    }
}

/// What the kinds need.
#[derive(Clone)]
pub struct TaskContext {
    /// The projections (checkpoints, attestations, audit rows).
    pub store: ProjectionStore,
    /// The time-stamping authority, when configured.
    pub tsa_opt: Option<TsaClient>,
    /// The object store (reports), when configured.
    pub objects_opt: Option<Objects>,
    /// Object name prefix (the deployment's schema).
    pub object_prefix: String,
}

impl std::fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("tsa", &self.tsa_opt.as_ref().map(TsaClient::url))
            .field("object_prefix", &self.object_prefix)
            .finish_non_exhaustive()
    }
}

fn store_error(error: projections::StoreError) -> TaskError {
    TaskError::Retry(format!("store: {error}"))
}

fn number(payload: &Value, name: &str) -> Result<u64, TaskError> {
    payload[name].as_u64().ok_or_else(|| {
        TaskError::Permanent(format!("payload.{name} must be a non-negative integer"))
    })
}

/// The `flk.audit.tasks` record of `task` (keyed by its id), for everything that enqueues one.
pub fn task_record(topic: &str, task: &AuditTask) -> OutgoingRecord {
    OutgoingRecord {
        topic: topic.to_owned(),
        partition_opt: None,
        key: task.id.clone().into_bytes(),
        payload: task.encode(),
        headers: Vec::new(),
    }
}

/// Runs one attempt of `task`; returns what to record as its result.
pub async fn execute(context: &TaskContext, task: &AuditTask) -> Result<Value, TaskError> {
    match task.kind.as_str() {
        kinds::ATTEST_EXTERNAL => attest_external(context, task).await,
        kinds::GENERATE_REPORT => generate_report(context, task).await,
        other => Err(TaskError::Permanent(format!("unknown task kind {other:?}"))),
    }
}

/// Stores an RFC 3161 token over SHA-256 of the checkpoint's signed note.
async fn attest_external(context: &TaskContext, task: &AuditTask) -> Result<Value, TaskError> {
    let tree_size = number(&task.payload, "tree_size")?;
    let Some(tsa) = &context.tsa_opt else {
        return Err(TaskError::Permanent(
            "no time-stamping authority configured (audit.tsa_url_opt)".into(),
        ));
    };
    if context
        .store
        .attestation(tree_size)
        .await
        .map_err(store_error)?
        .is_some()
    {
        return Ok(json!({ "tree_size": tree_size, "already": true }));
    }
    let checkpoint = context
        .store
        .checkpoint_at(tree_size)
        .await
        .map_err(store_error)?
        .ok_or_else(|| TaskError::Permanent(format!("no checkpoint of tree size {tree_size}")))?;
    let digest: [u8; 32] = Sha256::digest(checkpoint.note.as_bytes()).into();
    let response =
        tsa.stamp(&digest, rand::random::<u64>())
            .await
            .map_err(|error| match error {
                TsaError::Unavailable(_) | TsaError::Refused(_) => {
                    TaskError::Retry(error.to_string())
                }
            })?;
    context
        .store
        .record_attestation(&Attestation {
            tree_size,
            tsa_url: tsa.url().to_owned(),
            digest,
            response,
            attested_at_ms: now_ms(),
        })
        .await
        .map_err(store_error)?;
    Ok(json!({ "tree_size": tree_size, "digest": hex_of(&digest) }))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Writes a tenant's decision counts by verdict between two times to the object store.
async fn generate_report(context: &TaskContext, task: &AuditTask) -> Result<Value, TaskError> {
    let tenant = task.payload["tenant"]
        .as_str()
        .ok_or_else(|| TaskError::Permanent("payload.tenant must be a string".into()))?;
    let (from_ms, to_ms) = (
        number(&task.payload, "from_ms")?,
        number(&task.payload, "to_ms")?,
    );
    let Some(objects) = &context.objects_opt else {
        return Err(TaskError::Permanent("no object store configured".into()));
    };
    let counts = context
        .store
        .audit_counts(tenant, from_ms as i64, to_ms as i64)
        .await
        .map_err(store_error)?;
    let report = json!({
        "tenant": tenant, "from_ms": from_ms, "to_ms": to_ms,
        "counts": counts.into_iter().collect::<serde_json::Map<String, Value>>(),
    });
    let safe_id: String = task
        .id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let key = format!("{}/audit/reports/{safe_id}.json", context.object_prefix);
    put_once(objects, &key, report.to_string().into_bytes())
        .await
        .map_err(|error| TaskError::Retry(error.to_string()))?;
    Ok(json!({ "object": key }))
}
