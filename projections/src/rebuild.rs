//! Rebuild support (I6): replay the decisions from offset 0 into a fresh schema (a second
//! [`crate::ProjectionStore`], conventionally `<live>_rebuild`), compare state hashes, then swap.
//!
//! [`swap_in`] runs in one transaction under the migration advisory lock of the live name:
//! 1. bumps every `owner_epoch` in the live schema, so an in-flight or later `apply_batch` of an
//!    old owner fails [`StoreError::Fenced`] instead of writing into the retired schema (it waits
//!    for the row locks of batches in flight, so none straddles the swap);
//! 2. renames live -> `<live>_old_<unix ms>` and rebuild -> live;
//! 3. lifts every epoch of the new live schema above the old schema's largest, so no claim made
//!    before the swap (on either schema) matches by coincidence: old owners are fenced and must
//!    re-claim, which seeks them to the rebuild's offsets.
//!
//! The replay fills the rebuild schema by COPY under a [`crate::bulk_load::BulkLoad`] (keys and
//! indexes dropped while loading). Unlogged tables were measured too and rejected: the WAL saved
//! while loading was less than what `SET LOGGED` costs before the swap.
//!
//! The hot tier's ring (versions, the state processes follow, migration history) is operator
//! state, not a projection: the swap copies it from the live schema into the rebuilt one.
//!
//! The old schema is KEPT for inspection (diffing, audit questions); drop it later with
//! [`drop_schema`]. After the swap, projectors re-claim their partitions (stores keep working:
//! `search_path` resolves the live name again) and continue from the rebuild's offsets, so records
//! decided while the rebuild ran are replayed into the new live schema, not lost. The rebuild's
//! listeners were on `<live>_rebuild_decided`; open new ones on the live store.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio_postgres::NoTls;

use crate::error::StoreError;
use crate::migrations::validate_schema_name;
use crate::model::SwapReport;

/// A connection of its own, outside the pool (admin statements, and the COPY and index builds of a
/// bulk load, which hold a connection for long).
pub(crate) async fn connect(
    pg_config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, StoreError> {
    let (client, connection) = pg_config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "rebuild admin connection ended with an error");
        }
    });
    Ok(client)
}

async fn schema_exists(
    client: &impl tokio_postgres::GenericClient,
    schema: &str,
) -> Result<bool, StoreError> {
    Ok(client
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await?
        .is_some())
}

pub(crate) async fn swap_in(
    pg_config: &tokio_postgres::Config,
    rebuild_schema: &str,
    live_schema: &str,
) -> Result<SwapReport, StoreError> {
    validate_schema_name(rebuild_schema)?;
    validate_schema_name(live_schema)?;
    if rebuild_schema == live_schema {
        return Err(StoreError::InvalidInput(
            "rebuild and live schema are the same".into(),
        ));
    }
    let mut client = connect(pg_config).await?;
    let transaction = client.transaction().await?;
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('flk.projections.migrate:' || $1::text, 0))",
            &[&live_schema],
        )
        .await?;
    if !schema_exists(&transaction, rebuild_schema).await? {
        return Err(StoreError::InvalidInput(format!(
            "rebuild schema {rebuild_schema} does not exist"
        )));
    }
    let old_schema_opt = if schema_exists(&transaction, live_schema).await? {
        carry_ring(&transaction, live_schema, rebuild_schema).await?;
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let old = format!("{live_schema}_old_{millis}");
        transaction
            .batch_execute(&format!(
                "UPDATE \"{live_schema}\".projection_offsets SET owner_epoch = owner_epoch + 1;\n\
                 ALTER SCHEMA \"{live_schema}\" RENAME TO \"{old}\";"
            ))
            .await?;
        Some(old)
    } else {
        None
    };
    transaction
        .batch_execute(&format!(
            "ALTER SCHEMA \"{rebuild_schema}\" RENAME TO \"{live_schema}\";"
        ))
        .await?;
    if let Some(old) = &old_schema_opt {
        // Claims made before the swap, on either schema, must not match an epoch of the new live
        // schema by coincidence: lift every epoch above all the old ones.
        transaction
            .batch_execute(&format!(
                "UPDATE \"{live_schema}\".projection_offsets SET owner_epoch = owner_epoch + \
                     (SELECT coalesce(max(owner_epoch), 0) FROM \"{old}\".projection_offsets);"
            ))
            .await?;
    }
    transaction.commit().await?;
    tracing::info!(rebuild_schema, live_schema, old_schema = ?old_schema_opt, "swapped rebuilt projections in");
    Ok(SwapReport {
        live_schema: live_schema.to_owned(),
        old_schema_opt,
    })
}

/// Tables that are not projections of the log but operator state the rebuild cannot derive: the
/// hot tier's ring versions, the state serving processes follow, and migration history. The
/// rebuilt schema starts with them empty; without a copy, every process would fall back to the
/// configuration's ring after the swap and look for keys where a finished migration moved them
/// away. Parents before children (foreign keys).
const RING_TABLES: [&str; 5] = [
    "ring_versions",
    "ring_state",
    "ring_migrations",
    "ring_events",
    "ring_followers",
];

/// Replaces the rebuild schema's ring tables with the live schema's, inside the swap transaction.
async fn carry_ring(
    transaction: &tokio_postgres::Transaction<'_>,
    live_schema: &str,
    rebuild_schema: &str,
) -> Result<(), StoreError> {
    // No ring change may commit between the copies of two tables.
    let mut sql = format!(
        "LOCK TABLE \"{live_schema}\".ring_state, \"{live_schema}\".ring_migrations IN SHARE MODE;\n"
    );
    for table in RING_TABLES.iter().rev() {
        sql.push_str(&format!("DELETE FROM \"{rebuild_schema}\".{table};\n"));
    }
    for table in RING_TABLES {
        sql.push_str(&format!(
            "INSERT INTO \"{rebuild_schema}\".{table} SELECT * FROM \"{live_schema}\".{table};\n"
        ));
    }
    // Event ids continue after the copied ones.
    sql.push_str(&format!(
        "SELECT setval(pg_get_serial_sequence('\"{rebuild_schema}\".ring_events', 'id'), max(id)) \
         FROM \"{rebuild_schema}\".ring_events HAVING max(id) IS NOT NULL;"
    ));
    transaction.batch_execute(&sql).await?;
    Ok(())
}

pub(crate) async fn drop_schema(
    pg_config: &tokio_postgres::Config,
    schema: &str,
) -> Result<(), StoreError> {
    // Old schemas carry a millisecond suffix and may exceed the length limit for new names.
    let valid = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && !schema.starts_with("pg_")
        && schema != "public";
    if !valid {
        return Err(StoreError::InvalidInput(format!(
            "refusing to drop schema {schema:?}"
        )));
    }
    let client = connect(pg_config).await?;
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await?;
    Ok(())
}
