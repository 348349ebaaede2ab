//! The async audit pipeline's state in Postgres (migration 0005): which task ids are done, the
//! dead-letter queue, and the time attestations of checkpoints.

use events::audit_task::DeadTask;
use serde_json::Value;

use crate::error::StoreError;

/// One DLQ row.
#[derive(Debug, Clone, PartialEq)]
pub struct DlqEntry {
    /// Task id.
    pub task_id: String,
    /// Task kind.
    pub kind: String,
    /// `dead`, `redriven` or `dropped`.
    pub state: String,
    /// What the DLQ holds (task, reason, attempts, time).
    pub dead: DeadTask,
    /// When it was redriven or dropped.
    pub resolved_at_ms_opt: Option<i64>,
}

/// One stored attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// The TSA asked.
    pub tsa_url: String,
    /// SHA-256 of the signed note.
    pub digest: [u8; 32],
    /// The DER TimeStampResp.
    pub response: Vec<u8>,
    /// When it was stored.
    pub attested_at_ms: i64,
}

fn dlq_from_row(row: &tokio_postgres::Row) -> Result<DlqEntry, StoreError> {
    let json = |index: usize, what: &str| -> Result<Value, StoreError> {
        let text: String = row.try_get(index)?;
        serde_json::from_str(&text)
            .map_err(|error| StoreError::Corrupt(format!("dlq {what}: {error}")))
    };
    let attempts = json(4, "attempts")?;
    Ok(DlqEntry {
        task_id: row.try_get(0)?,
        kind: row.try_get(1)?,
        state: row.try_get(6)?,
        dead: DeadTask {
            task: json(2, "task")?,
            reason: row.try_get(3)?,
            attempts: serde_json::from_value(attempts)
                .map_err(|error| StoreError::Corrupt(format!("dlq attempts: {error}")))?,
            dead_at_ms: row.try_get(5)?,
        },
        resolved_at_ms_opt: row.try_get(7)?,
    })
}

const DLQ_COLUMNS: &str =
    "task_id, kind, task::text, reason, attempts::text, dead_at_ms, state, resolved_at_ms";

impl crate::ProjectionStore {
    /// True when the task id is recorded as done.
    pub async fn task_done(&self, task_id: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                "SELECT 1 FROM audit_tasks_done WHERE task_id = $1",
                &[&task_id],
            )
            .await?
            .is_some())
    }

    /// Records a task as done (a second record of the same id is ignored).
    pub async fn record_task_done(
        &self,
        task_id: &str,
        kind: &str,
        attempts: i32,
        now_ms: i64,
        result: &Value,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO audit_tasks_done (task_id, kind, attempts, done_at_ms, result) \
                 VALUES ($1, $2, $3, $4, $5::text::jsonb) ON CONFLICT DO NOTHING",
                &[&task_id, &kind, &attempts, &now_ms, &result.to_string()],
            )
            .await?;
        Ok(())
    }

    /// Puts a task into the DLQ (a redriven one that failed again becomes `dead` again).
    pub async fn record_dead_task(
        &self,
        task_id: &str,
        kind: &str,
        dead: &DeadTask,
    ) -> Result<(), StoreError> {
        let attempts = serde_json::to_string(&dead.attempts)
            .map_err(|error| StoreError::InvalidInput(error.to_string()))?;
        let task = dead.task.to_string();
        self.client()
            .await?
            .execute(
                "INSERT INTO audit_dlq (task_id, kind, task, reason, attempts, dead_at_ms) \
                 VALUES ($1, $2, $3::text::jsonb, $4, $5::text::jsonb, $6) \
                 ON CONFLICT (task_id) DO UPDATE SET task = EXCLUDED.task, reason = EXCLUDED.reason, \
                   attempts = EXCLUDED.attempts, dead_at_ms = EXCLUDED.dead_at_ms, state = 'dead', \
                   resolved_at_ms = NULL",
                &[&task_id, &kind, &task, &dead.reason, &attempts, &dead.dead_at_ms],
            )
            .await?;
        Ok(())
    }

    /// DLQ rows, newest first, filtered by state and kind, at most `limit`.
    pub async fn dlq_entries(
        &self,
        state_opt: Option<&str>,
        kind_opt: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DlqEntry>, StoreError> {
        let sql = format!(
            "SELECT {DLQ_COLUMNS} FROM audit_dlq WHERE ($1::text IS NULL OR state = $1) \
             AND ($2::text IS NULL OR kind = $2) ORDER BY dead_at_ms DESC, task_id LIMIT $3"
        );
        self.client()
            .await?
            .query(&sql, &[&state_opt, &kind_opt, &limit])
            .await?
            .iter()
            .map(dlq_from_row)
            .collect()
    }

    /// One DLQ row.
    pub async fn dlq_entry(&self, task_id: &str) -> Result<Option<DlqEntry>, StoreError> {
        let sql = format!("SELECT {DLQ_COLUMNS} FROM audit_dlq WHERE task_id = $1");
        self.client()
            .await?
            .query_opt(&sql, &[&task_id])
            .await?
            .as_ref()
            .map(dlq_from_row)
            .transpose()
    }

    /// Marks `dead` rows as `redriven` or `dropped`; returns how many changed.
    pub async fn resolve_dlq(
        &self,
        task_id: &str,
        state: &str,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        if !matches!(state, "redriven" | "dropped") {
            return Err(StoreError::InvalidInput(format!(
                "unknown dlq state {state}"
            )));
        }
        Ok(self
            .client()
            .await?
            .execute(
                "UPDATE audit_dlq SET state = $2, resolved_at_ms = $3 WHERE task_id = $1 AND state = 'dead'",
                &[&task_id, &state, &now_ms],
            )
            .await?)
    }

    /// Rows in the DLQ that are still `dead`.
    pub async fn dlq_depth(&self) -> Result<i64, StoreError> {
        Ok(self
            .client()
            .await?
            .query_one("SELECT count(*) FROM audit_dlq WHERE state = 'dead'", &[])
            .await?
            .try_get(0)?)
    }

    /// Stores a checkpoint's attestation (a second one for the same size is ignored).
    pub async fn record_attestation(&self, attestation: &Attestation) -> Result<(), StoreError> {
        let tree_size = i64::try_from(attestation.tree_size)
            .map_err(|_| StoreError::InvalidInput("tree size too large".into()))?;
        self.client()
            .await?
            .execute(
                "INSERT INTO attestations (tree_size, tsa_url, digest, response, attested_at_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[
                    &tree_size,
                    &attestation.tsa_url,
                    &attestation.digest.as_slice(),
                    &attestation.response,
                    &attestation.attested_at_ms,
                ],
            )
            .await?;
        Ok(())
    }

    /// The attestation of the checkpoint of `tree_size`, if any.
    pub async fn attestation(&self, tree_size: u64) -> Result<Option<Attestation>, StoreError> {
        let size = i64::try_from(tree_size)
            .map_err(|_| StoreError::InvalidInput("tree size too large".into()))?;
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT tree_size, tsa_url, digest, response, attested_at_ms FROM attestations WHERE tree_size = $1",
                &[&size],
            )
            .await?;
        row.map(|row| {
            let digest: Vec<u8> = row.try_get(2)?;
            Ok(Attestation {
                tree_size,
                tsa_url: row.try_get(1)?,
                digest: digest
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("attestation digest length".into()))?,
                response: row.try_get(3)?,
                attested_at_ms: row.try_get(4)?,
            })
        })
        .transpose()
    }

    /// A tenant's audit entries by verdict, decided in `[from_ms, to_ms)` (for reports).
    pub async fn audit_counts(
        &self,
        tenant: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(String, Value)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT verdict, count(*) FROM audit_log WHERE tenant = $1 \
                 AND decided_at_ms >= $2 AND decided_at_ms < $3 GROUP BY verdict ORDER BY verdict",
                &[&tenant, &from_ms, &to_ms],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let count: i64 = row.try_get(1)?;
                Ok((row.try_get(0)?, Value::from(count)))
            })
            .collect()
    }

    /// Tree sizes of checkpoints without an attestation, oldest first, at most `limit`.
    pub async fn unattested_checkpoints(&self, limit: i64) -> Result<Vec<u64>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT c.tree_size FROM checkpoints c LEFT JOIN attestations a USING (tree_size) \
                 WHERE a.tree_size IS NULL ORDER BY c.tree_size LIMIT $1",
                &[&limit],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let size: i64 = row.try_get(0)?;
                u64::try_from(size).map_err(|_| StoreError::Corrupt("negative tree size".into()))
            })
            .collect()
    }
}
