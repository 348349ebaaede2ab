//! The hot tier's ring versions, the state every process follows, and the migrations that change
//! it (tables of `migrations/0008_ring_versions.sql`), as operations on the store.
//!
//! Every change of `ring_state` bumps `state_version` in the same transaction as the migration's
//! phase and an event row, so a follower that reports a state version has applied exactly that
//! placement, and `flk migrate` can wait for every live process before its next step.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::Row;

use crate::error::StoreError;
use crate::placement::Placement;
use crate::ring::RingSpec;

/// Phases of a migration, in the order they normally come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Planned: nothing changed yet.
    Planned,
    /// Writers write both rings; reads still use the old one.
    DualWrite,
    /// A copy ran to its end since the last dual-write switch.
    Copied,
    /// A verify found no difference after the last copy.
    Verified,
    /// Reads use the new ring; writes still reach both.
    CutOver,
    /// Back on the old ring (terminal).
    RolledBack,
    /// Moved keys deleted from the nodes that no longer own them (terminal).
    Cleaned,
}

impl Phase {
    /// The name stored in `ring_migrations.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Planned => "planned",
            Phase::DualWrite => "dual_write",
            Phase::Copied => "copied",
            Phase::Verified => "verified",
            Phase::CutOver => "cut_over",
            Phase::RolledBack => "rolled_back",
            Phase::Cleaned => "cleaned",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        Ok(match text {
            "planned" => Phase::Planned,
            "dual_write" => Phase::DualWrite,
            "copied" => Phase::Copied,
            "verified" => Phase::Verified,
            "cut_over" => Phase::CutOver,
            "rolled_back" => Phase::RolledBack,
            "cleaned" => Phase::Cleaned,
            other => return Err(StoreError::Corrupt(format!("migration phase {other:?}"))),
        })
    }

    /// True once nothing more can happen to the migration.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::RolledBack | Phase::Cleaned)
    }

    /// (read version, write versions) of the ring state in this phase.
    pub fn ring_state(self, from_version: i64, to_version: i64) -> (i64, Vec<i64>) {
        match self {
            Phase::Planned | Phase::RolledBack => (from_version, vec![from_version]),
            Phase::DualWrite | Phase::Copied | Phase::Verified => {
                (from_version, vec![from_version, to_version])
            }
            // The old ring keeps receiving writes until cleanup, so a rollback loses nothing.
            Phase::CutOver => (to_version, vec![to_version, from_version]),
            Phase::Cleaned => (to_version, vec![to_version]),
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The recorded ring state, with the specs it names.
#[derive(Debug, Clone)]
pub struct RingState {
    /// Bumped at every change.
    pub state_version: i64,
    /// Ring version reads go through.
    pub read_version: i64,
    /// Ring versions writes go through, read version first, with their specs.
    pub writes: Vec<(i64, RingSpec)>,
    /// The migration that set it.
    pub migration_id_opt: Option<String>,
}

impl RingState {
    /// The placement this state describes.
    pub fn placement(&self) -> Result<Placement, StoreError> {
        let mut writes = Vec::with_capacity(self.writes.len());
        for (version, spec) in &self.writes {
            let ring = spec
                .build()
                .map_err(|error| StoreError::Corrupt(format!("ring version {version}: {error}")))?;
            writes.push((*version, ring));
        }
        let read = writes
            .iter()
            .find(|(version, _)| *version == self.read_version)
            .map(|(_, ring)| ring.clone())
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "read version {} is not among the write versions",
                    self.read_version
                ))
            })?;
        Ok(Placement {
            state_version: self.state_version,
            read_version: self.read_version,
            read,
            writes,
            migration_id_opt: self.migration_id_opt.clone(),
        })
    }
}

/// One migration's row.
#[derive(Debug, Clone)]
pub struct MigrationRecord {
    /// Its id.
    pub migration_id: String,
    /// Ring version it moves from.
    pub from_version: i64,
    /// Ring version it moves to.
    pub to_version: i64,
    /// The two specs.
    pub from_spec: RingSpec,
    /// The target spec.
    pub to_spec: RingSpec,
    /// Where it stands.
    pub phase: Phase,
    /// The plan, as printed by `flk migrate plan`.
    pub plan: Value,
    /// Copy progress (per source node: cursor, keys copied; see `reshard::copy`).
    pub copy_progress: Value,
    /// The last verify's report.
    pub verify_report_opt: Option<Value>,
    /// Copy runs started (each `flk migrate copy` and `verify --fix` adds one).
    pub copy_run: i64,
    /// The copy run the last clean verify checked.
    pub verified_copy_run_opt: Option<i64>,
    /// When it was created and last changed (ms since the epoch).
    pub created_at_ms: i64,
    /// Last change.
    pub updated_at_ms: i64,
}

/// A process following the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follower {
    /// Process id (host, pid, start time).
    pub follower_id: String,
    /// The state version it applied.
    pub state_version: i64,
    /// When it last reported.
    pub seen_at_ms: i64,
}

fn spec_of(value: Value, version: i64) -> Result<RingSpec, StoreError> {
    serde_json::from_value(value)
        .map_err(|error| StoreError::Corrupt(format!("ring version {version}: {error}")))
}

fn spec_json(spec: &RingSpec) -> Result<Value, StoreError> {
    serde_json::to_value(spec).map_err(|error| StoreError::InvalidInput(error.to_string()))
}

const MIGRATION_COLUMNS: &str = "m.migration_id, m.from_version, m.to_version, f.spec, t.spec, \
     m.phase, m.plan, m.copy_progress, m.verify_report, m.copy_run, m.verified_copy_run, \
     m.created_at_ms, m.updated_at_ms";

const MIGRATION_FROM: &str = "ring_migrations m JOIN ring_versions f ON f.version = m.from_version \
     JOIN ring_versions t ON t.version = m.to_version";

fn migration_of(row: &Row) -> Result<MigrationRecord, StoreError> {
    let from_version: i64 = row.get(1);
    let to_version: i64 = row.get(2);
    Ok(MigrationRecord {
        migration_id: row.get(0),
        from_version,
        to_version,
        from_spec: spec_of(row.get(3), from_version)?,
        to_spec: spec_of(row.get(4), to_version)?,
        phase: Phase::parse(row.get(5))?,
        plan: row.get(6),
        copy_progress: row.get(7),
        verify_report_opt: row.get(8),
        copy_run: row.get(9),
        verified_copy_run_opt: row.get(10),
        created_at_ms: row.get(11),
        updated_at_ms: row.get(12),
    })
}

/// Ring state, followers and migrations.
impl crate::ProjectionStore {
    /// The recorded ring state; `None` until `flk migrate` first records a ring.
    pub async fn ring_state(&self) -> Result<Option<RingState>, StoreError> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(
                "SELECT state_version, read_version, write_versions, migration_id FROM ring_state",
                &[],
            )
            .await?
        else {
            return Ok(None);
        };
        let write_versions: Vec<i64> = row.get(2);
        let rows = client
            .query(
                "SELECT version, spec FROM ring_versions WHERE version = ANY($1)",
                &[&write_versions],
            )
            .await?;
        let mut writes = Vec::with_capacity(write_versions.len());
        for version in &write_versions {
            let spec = rows
                .iter()
                .find(|row| row.get::<_, i64>(0) == *version)
                .map(|row| spec_of(row.get(1), *version))
                .transpose()?
                .ok_or_else(|| StoreError::Corrupt(format!("ring version {version} missing")))?;
            writes.push((*version, spec));
        }
        Ok(Some(RingState {
            state_version: row.get(0),
            read_version: row.get(1),
            writes,
            migration_id_opt: row.get(3),
        }))
    }

    /// Records that `follower_id` applied `state_version` (a follower's poll).
    pub async fn report_ring_follower(
        &self,
        follower_id: &str,
        state_version: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO ring_followers (follower_id, state_version, seen_at_ms) \
                 VALUES ($1, $2, $3) ON CONFLICT (follower_id) DO UPDATE \
                 SET state_version = excluded.state_version, seen_at_ms = excluded.seen_at_ms",
                &[&follower_id, &state_version, &now_ms],
            )
            .await?;
        Ok(())
    }

    /// Followers seen since `since_ms` (the live ones).
    pub async fn ring_followers(&self, since_ms: i64) -> Result<Vec<Follower>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT follower_id, state_version, seen_at_ms FROM ring_followers \
                 WHERE seen_at_ms >= $1 ORDER BY follower_id",
                &[&since_ms],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| Follower {
                follower_id: row.get(0),
                state_version: row.get(1),
                seen_at_ms: row.get(2),
            })
            .collect())
    }

    /// Records the configuration's ring as version 1 and the state on it, unless a ring is
    /// recorded already; returns the current read version and its spec either way.
    pub async fn bootstrap_ring(
        &self,
        spec: &RingSpec,
        now_ms: i64,
    ) -> Result<(i64, RingSpec), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        transaction
            .execute("LOCK TABLE ring_state IN EXCLUSIVE MODE", &[])
            .await?;
        if let Some(row) = transaction
            .query_opt(
                "SELECT v.version, v.spec FROM ring_state s \
                 JOIN ring_versions v ON v.version = s.read_version",
                &[],
            )
            .await?
        {
            let version: i64 = row.get(0);
            return Ok((version, spec_of(row.get(1), version)?));
        }
        transaction
            .execute(
                "INSERT INTO ring_versions (version, spec, created_at_ms, created_by) \
                 VALUES (1, $1, $2, 'bootstrap')",
                &[&spec_json(spec)?, &now_ms],
            )
            .await?;
        transaction
            .execute(
                "INSERT INTO ring_state (state_version, read_version, write_versions, \
                 updated_at_ms) VALUES (1, 1, ARRAY[1::bigint], $1)",
                &[&now_ms],
            )
            .await?;
        transaction
            .execute(
                "INSERT INTO ring_events (migration_id, kind, detail, at_ms) \
                 VALUES (NULL, 'bootstrap', $1, $2)",
                &[&serde_json::json!({"version": 1}), &now_ms],
            )
            .await?;
        notify_ring_change(&transaction, self.schema(), 1).await?;
        transaction.commit().await?;
        Ok((1, spec.clone()))
    }

    /// Records a planned migration from the current read ring to `to_spec` (a new ring version).
    /// Refused while another migration is not finished.
    pub async fn create_ring_migration(
        &self,
        migration_id: &str,
        to_spec: &RingSpec,
        plan: &Value,
        now_ms: i64,
    ) -> Result<MigrationRecord, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let state = transaction
            .query_opt("SELECT read_version FROM ring_state FOR UPDATE", &[])
            .await?
            .ok_or_else(|| StoreError::InvalidInput("no ring is recorded yet".to_owned()))?;
        let from_version: i64 = state.get(0);
        if let Some(row) = transaction
            .query_opt(
                "SELECT migration_id, phase FROM ring_migrations \
                 WHERE phase NOT IN ('rolled_back', 'cleaned')",
                &[],
            )
            .await?
        {
            let (other, phase): (String, String) = (row.get(0), row.get(1));
            return Err(StoreError::InvalidInput(format!(
                "migration {other} is still {phase}: finish it (cleanup) or roll it back first"
            )));
        }
        let to_version: i64 = transaction
            .query_one("SELECT max(version) + 1 FROM ring_versions", &[])
            .await?
            .get(0);
        transaction
            .execute(
                "INSERT INTO ring_versions (version, spec, created_at_ms, created_by) \
                 VALUES ($1, $2, $3, $4)",
                &[&to_version, &spec_json(to_spec)?, &now_ms, &migration_id],
            )
            .await?;
        transaction
            .execute(
                "INSERT INTO ring_migrations (migration_id, from_version, to_version, phase, plan, \
                 created_at_ms, updated_at_ms) VALUES ($1, $2, $3, 'planned', $4, $5, $5)",
                &[&migration_id, &from_version, &to_version, plan, &now_ms],
            )
            .await
            .map_err(|error| match error.code() {
                Some(code) if *code == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
                    StoreError::InvalidInput(format!("migration {migration_id} exists already"))
                }
                _ => error.into(),
            })?;
        insert_event(&transaction, migration_id, "planned", plan, now_ms).await?;
        transaction.commit().await?;
        self.ring_migration(migration_id)
            .await?
            .ok_or_else(|| StoreError::Fatal(format!("migration {migration_id} vanished")))
    }

    /// One migration.
    pub async fn ring_migration(
        &self,
        migration_id: &str,
    ) -> Result<Option<MigrationRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "SELECT {MIGRATION_COLUMNS} FROM {MIGRATION_FROM} WHERE m.migration_id = $1"
                ),
                &[&migration_id],
            )
            .await?;
        row.as_ref().map(migration_of).transpose()
    }

    /// Every migration, newest first.
    pub async fn ring_migrations(&self) -> Result<Vec<MigrationRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {MIGRATION_COLUMNS} FROM {MIGRATION_FROM} ORDER BY m.created_at_ms DESC"
                ),
                &[],
            )
            .await?;
        rows.iter().map(migration_of).collect()
    }

    /// Moves `migration_id` to `phase` if it is in one of `allowed`, and sets the ring state that
    /// phase implies (one `state_version` bump). Returns the new state version.
    pub async fn set_ring_phase(
        &self,
        migration_id: &str,
        allowed: &[Phase],
        phase: Phase,
        detail: &Value,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        transaction
            .query_one("SELECT 1 FROM ring_state FOR UPDATE", &[])
            .await?;
        let row = transaction
            .query_opt(
                "SELECT phase, from_version, to_version FROM ring_migrations \
                 WHERE migration_id = $1 FOR UPDATE",
                &[&migration_id],
            )
            .await?
            .ok_or_else(|| StoreError::InvalidInput(format!("no migration {migration_id}")))?;
        let current = Phase::parse(row.get(0))?;
        if !allowed.contains(&current) {
            let allowed: Vec<&str> = allowed.iter().map(|phase| phase.as_str()).collect();
            return Err(StoreError::InvalidInput(format!(
                "migration {migration_id} is {current}; this step needs it to be {}",
                allowed.join(" or ")
            )));
        }
        let (read_version, write_versions) = phase.ring_state(row.get(1), row.get(2));
        let state_version: i64 = transaction
            .query_one(
                "UPDATE ring_state SET state_version = state_version + 1, read_version = $1, \
                 write_versions = $2, migration_id = $3, updated_at_ms = $4 RETURNING state_version",
                &[&read_version, &write_versions, &migration_id, &now_ms],
            )
            .await?
            .get(0);
        transaction
            .execute(
                "UPDATE ring_migrations SET phase = $2, updated_at_ms = $3 WHERE migration_id = $1",
                &[&migration_id, &phase.as_str(), &now_ms],
            )
            .await?;
        let mut detail = detail.clone();
        if let Some(object) = detail.as_object_mut() {
            object.insert("from".into(), current.as_str().into());
            object.insert("state_version".into(), state_version.into());
        }
        insert_event(&transaction, migration_id, phase.as_str(), &detail, now_ms).await?;
        notify_ring_change(&transaction, self.schema(), state_version).await?;
        transaction.commit().await?;
        Ok(state_version)
    }

    /// Saves copy progress (after each chunk, so a killed copy resumes there). `new_run` starts a
    /// copy run (and so invalidates an earlier verify).
    pub async fn save_copy_progress(
        &self,
        migration_id: &str,
        progress: &Value,
        new_run: bool,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "UPDATE ring_migrations SET copy_progress = $2, \
                 copy_run = copy_run + CASE WHEN $3 THEN 1 ELSE 0 END, updated_at_ms = $4 \
                 WHERE migration_id = $1 RETURNING copy_run",
                &[&migration_id, progress, &new_run, &now_ms],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Saves a verify report; a clean one for the latest copy run moves `copied` to `verified`.
    pub async fn save_verify_report(
        &self,
        migration_id: &str,
        report: &Value,
        clean_for_run_opt: Option<i64>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        transaction
            .execute(
                "UPDATE ring_migrations SET verify_report = $2, verified_copy_run = $3::bigint, \
                 phase = CASE WHEN $3::bigint IS NOT NULL AND $3::bigint = copy_run \
                     AND phase = 'copied' \
                     THEN 'verified' ELSE phase END, updated_at_ms = $4 \
                 WHERE migration_id = $1",
                &[&migration_id, report, &clean_for_run_opt, &now_ms],
            )
            .await?;
        insert_event(&transaction, migration_id, "verify", report, now_ms).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Appends an event (a command's start or end) for `status`.
    pub async fn record_ring_event(
        &self,
        migration_id: &str,
        kind: &str,
        detail: &Value,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        insert_event(&client, migration_id, kind, detail, now_ms).await
    }

    /// A migration's events, oldest first (kind, detail, at_ms).
    pub async fn ring_events(
        &self,
        migration_id: &str,
    ) -> Result<Vec<(String, Value, i64)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT kind, detail, at_ms FROM ring_events WHERE migration_id = $1 ORDER BY id",
                &[&migration_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect())
    }
}

/// Wakes every ring follower of `schema` once the transaction commits (Postgres delivers a
/// notification only on commit), so a change reaches serving processes without waiting for their
/// next poll.
async fn notify_ring_change(
    transaction: &deadpool_postgres::Transaction<'_>,
    schema: &str,
    state_version: i64,
) -> Result<(), StoreError> {
    transaction
        .execute(
            "SELECT pg_notify($1, $2)",
            &[
                &crate::store::ring_channel(schema),
                &state_version.to_string(),
            ],
        )
        .await?;
    Ok(())
}

async fn insert_event(
    client: &impl deadpool_postgres::GenericClient,
    migration_id: &str,
    kind: &str,
    detail: &Value,
    now_ms: i64,
) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO ring_events (migration_id, kind, detail, at_ms) VALUES ($1, $2, $3, $4)",
            &[&migration_id, &kind, detail, &now_ms],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_keep_the_old_ring_written_until_cleanup() {
        assert_eq!(Phase::Planned.ring_state(1, 2), (1, vec![1]));
        assert_eq!(Phase::DualWrite.ring_state(1, 2), (1, vec![1, 2]));
        assert_eq!(Phase::Verified.ring_state(1, 2), (1, vec![1, 2]));
        assert_eq!(Phase::CutOver.ring_state(1, 2), (2, vec![2, 1]));
        assert_eq!(Phase::Cleaned.ring_state(1, 2), (2, vec![2]));
        assert_eq!(Phase::RolledBack.ring_state(1, 2), (1, vec![1]));
        for phase in [
            Phase::Planned,
            Phase::DualWrite,
            Phase::Copied,
            Phase::Verified,
            Phase::CutOver,
            Phase::RolledBack,
            Phase::Cleaned,
        ] {
            assert_eq!(Phase::parse(phase.as_str()).unwrap(), phase);
        }
    }
}
