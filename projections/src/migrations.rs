//! Numbered SQL migrations, embedded in the binary and applied in order at connect time.
//!
//! Each store lives in its own Postgres schema. [`migrate`] runs in one transaction that first takes
//! a transaction-scoped advisory lock derived from the schema name, so two processes starting at
//! once serialize: the second waits, then finds everything applied. Applied versions are recorded
//! in `schema_migrations` with the SHA-256 of their text; an edited migration is reported as
//! [`StoreError::Corrupt`], a version this build does not know as [`StoreError::Fatal`].

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::error::StoreError;

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version number (the file's numeric prefix).
    pub version: i32,
    /// File name.
    pub name: &'static str,
    /// SQL text; names are unqualified and resolve in the store's schema.
    pub sql: &'static str,
}

/// All migrations, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_offsets_dedup_audit.sql",
        sql: include_str!("../migrations/0001_offsets_dedup_audit.sql"),
    },
    Migration {
        version: 2,
        name: "0002_audit_append_only.sql",
        sql: include_str!("../migrations/0002_audit_append_only.sql"),
    },
    Migration {
        version: 3,
        name: "0003_outcome_codes.sql",
        sql: include_str!("../migrations/0003_outcome_codes.sql"),
    },
    Migration {
        version: 4,
        name: "0004_merkle_log.sql",
        sql: include_str!("../migrations/0004_merkle_log.sql"),
    },
    Migration {
        version: 5,
        name: "0005_audit_tasks.sql",
        sql: include_str!("../migrations/0005_audit_tasks.sql"),
    },
    Migration {
        version: 6,
        name: "0006_audit_writer_role.sql",
        sql: include_str!("../migrations/0006_audit_writer_role.sql"),
    },
    Migration {
        version: 7,
        name: "0007_cold_tier.sql",
        sql: include_str!("../migrations/0007_cold_tier.sql"),
    },
    Migration {
        version: 8,
        name: "0008_ring_versions.sql",
        sql: include_str!("../migrations/0008_ring_versions.sql"),
    },
    Migration {
        version: 9,
        name: "0009_geo_divergence.sql",
        sql: include_str!("../migrations/0009_geo_divergence.sql"),
    },
    Migration {
        version: 10,
        name: "0010_dedup_origin_region.sql",
        sql: include_str!("../migrations/0010_dedup_origin_region.sql"),
    },
];

/// Longest schema name accepted: leaves room for `_rebuild`, `_old_<ms>` and `_decided` within
/// Postgres' 63-byte identifiers.
pub const MAX_SCHEMA_NAME_LEN: usize = 40;

/// Checks that `schema` is a plain lowercase identifier (`[a-z_][a-z0-9_]*`, at most
/// [`MAX_SCHEMA_NAME_LEN`] bytes), so it can be spliced into DDL and channel names safely.
pub fn validate_schema_name(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let first_ok = matches!(chars.next(), Some('a'..='z' | '_'));
    let rest_ok = chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'));
    if !first_ok || !rest_ok || schema.len() > MAX_SCHEMA_NAME_LEN {
        return Err(StoreError::InvalidInput(format!(
            "schema name {schema:?} must match [a-z_][a-z0-9_]* and be at most {MAX_SCHEMA_NAME_LEN} bytes"
        )));
    }
    if schema.starts_with("pg_") || schema == "public" || schema == "information_schema" {
        return Err(StoreError::InvalidInput(format!(
            "schema name {schema:?} is reserved"
        )));
    }
    Ok(())
}

fn checksum(sql: &str) -> Vec<u8> {
    Sha256::digest(sql.as_bytes()).to_vec()
}

/// Creates `schema` if missing and applies every pending migration in it. Returns the versions
/// applied by this call.
pub async fn migrate(client: &mut Client, schema: &str) -> Result<Vec<i32>, StoreError> {
    migrate_up_to(client, schema, i32::MAX).await
}

/// [`migrate`], but stops after version `last_version`: lets a test build a schema as an older
/// release left it, fill it, then let the current build migrate it.
pub async fn migrate_up_to(
    client: &mut Client,
    schema: &str,
    last_version: i32,
) -> Result<Vec<i32>, StoreError> {
    validate_schema_name(schema)?;
    let transaction = client.transaction().await?;
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('flk.projections.migrate:' || $1::text, 0))",
            &[&schema],
        )
        .await?;
    // DDL only when something is missing: Postgres checks the CREATE privilege even for
    // `IF NOT EXISTS`, and a serving login without it (docs/runbooks/audit.md) must still start.
    let ready = transaction
        .query_one(
            "SELECT to_regclass(format('%I.schema_migrations', $1::text)) IS NOT NULL",
            &[&schema],
        )
        .await?
        .try_get::<_, bool>(0)?;
    transaction
        .batch_execute(&format!("SET LOCAL search_path TO \"{schema}\";"))
        .await?;
    if !ready {
        transaction
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\";\n\
             SET LOCAL search_path TO \"{schema}\";\n\
             CREATE TABLE IF NOT EXISTS schema_migrations (\n\
                 version int PRIMARY KEY,\n\
                 name text NOT NULL,\n\
                 checksum bytea NOT NULL,\n\
                 applied_at timestamptz NOT NULL DEFAULT now()\n\
             );"
            ))
            .await?;
    }
    let applied_rows = transaction
        .query(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
            &[],
        )
        .await?;
    let mut applied_versions = Vec::with_capacity(applied_rows.len());
    for row in &applied_rows {
        let version: i32 = row.try_get(0)?;
        let stored_checksum: Vec<u8> = row.try_get(2)?;
        match MIGRATIONS.iter().find(|m| m.version == version) {
            None => {
                return Err(StoreError::Fatal(format!(
                    "schema {schema} has migration {version}, unknown to this build (newer release?)"
                )));
            }
            Some(known) if checksum(known.sql) != stored_checksum => {
                return Err(StoreError::Corrupt(format!(
                    "migration {} in schema {schema} was applied with different text",
                    known.name
                )));
            }
            Some(_) => applied_versions.push(version),
        }
    }
    let mut newly_applied = Vec::new();
    for migration in MIGRATIONS {
        if applied_versions.contains(&migration.version) || migration.version > last_version {
            continue;
        }
        transaction.batch_execute(migration.sql).await?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                &[
                    &migration.version,
                    &migration.name,
                    &checksum(migration.sql),
                ],
            )
            .await?;
        newly_applied.push(migration.version);
    }
    transaction.commit().await?;
    if !newly_applied.is_empty() {
        tracing::info!(schema, versions = ?newly_applied, "applied projection migrations");
    }
    Ok(newly_applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_numbered_in_order_and_match_file_names() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version as usize, index + 1);
            assert!(
                migration
                    .name
                    .starts_with(&format!("{:04}_", migration.version))
            );
        }
    }

    #[test]
    fn schema_names() {
        assert!(validate_schema_name("flk_live").is_ok());
        assert!(validate_schema_name("_x9").is_ok());
        for bad in [
            "",
            "9a",
            "Flk",
            "a-b",
            "a\"b",
            "pg_x",
            "public",
            &"a".repeat(41),
        ] {
            assert!(validate_schema_name(bad).is_err(), "{bad:?}");
        }
    }
}
