//! `flk audit ...`: the signing key of the audit log, offline verification of proof bundles, and
//! a full check of the stored Merkle log against the audit entries.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use actors::audit_task_kinds::task_record;
use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Subcommand;
use events::SignedFields;
use events::audit_proof::{ProofBundle, verify_bundle};
use events::checkpoint::{NoteSigner, NoteVerifier};
use infra::config::Config;

use super::service::{ConfigArgs, load};

/// Largest bundle or record read (a bundle is a few KiB).
const MAX_INPUT_BYTES: u64 = 1024 * 1024;

/// `flk audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Write a new checkpoint signing key (base64 of a 32-byte Ed25519 seed, mode 0600) and print
    /// its verifier key (`name+hash+key`), which auditors use to check checkpoints.
    Keygen {
        /// Where to write the key; refuses to overwrite.
        #[arg(long)]
        out: PathBuf,
        /// The log's origin (the key's name); `flk/<region>` of the config by default.
        #[arg(long)]
        origin: Option<String>,
        /// Config and logging.
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// Print the verifier key of the configured signing key.
    Key {
        /// Config and logging.
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// Recompute the audit log from its rows: every partition's hash chain, then every signed
    /// checkpoint (its signature, the leaves of its round, its root). Prints the first entry that
    /// does not match; exit 0 when everything matches, 1 otherwise.
    Check {
        /// Verifier key to check the checkpoints' signatures with; the configured signing key's by
        /// default (when one is configured).
        #[arg(long)]
        key: Option<String>,
        /// Config and logging.
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// Ask the audit workers for RFC 3161 time stamps of every checkpoint that has none yet (after
    /// a Kafka outage lost some tasks, or once a TSA is configured for an older log).
    Attest {
        /// Every checkpoint without an attestation (the only mode, named for clarity).
        #[arg(long, required = true)]
        missing: bool,
        /// At most this many checkpoints.
        #[arg(long, default_value_t = 10_000)]
        limit: i64,
        /// Config and logging.
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// Ask the audit workers for a report of a tenant's decisions (counts by verdict) between two
    /// times; the report is written to the object store as
    /// `<schema>/audit/reports/generate_report_<tenant>_<from>_<to>.json`.
    Report {
        /// Tenant.
        #[arg(long)]
        tenant: String,
        /// From (ms since the epoch, inclusive).
        #[arg(long)]
        from_ms: i64,
        /// To (ms since the epoch, exclusive).
        #[arg(long)]
        to_ms: i64,
        /// Config and logging.
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// The dead-letter queue of audit tasks: list, show, redrive (send back to the tasks topic)
    /// or drop tasks that used up their attempts.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Check a proof bundle offline (as served by `GET /v1/audit/proof`): the checkpoint's
    /// signature by the verifier key, the entry, the inclusion proof and, with `--record`, that
    /// the logged entry is that record. Exit 0 when every check passes, 1 with the reason.
    Verify {
        /// The bundle (JSON file, `-` for stdin).
        #[arg(long)]
        bundle: PathBuf,
        /// The log's verifier key (`name+hash+key`, as `flk audit key` prints it).
        #[arg(long)]
        key: String,
        /// The PCS record (JSON with its 8 signed fields) the entry must be.
        #[arg(long)]
        record: Option<PathBuf>,
    },
}

/// `flk audit dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List DLQ entries, newest first: task id, kind, state, when, reason.
    List {
        /// Only this state: dead (default), redriven, dropped or all.
        #[arg(long, default_value = "dead")]
        state: String,
        /// Only this task kind.
        #[arg(long)]
        kind: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Config and logging.
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// Print one entry as JSON: the task, the reason and every attempt.
    Show {
        /// Task id.
        id: String,
        /// Config and logging.
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// Send dead tasks back to `flk.audit.tasks` (one id, or every dead one of `--kind` with
    /// `--all`); a redriven task that fails again comes back as dead.
    Redrive {
        /// Which dead tasks.
        #[command(flatten)]
        selection: DlqSelection,
        /// Config and logging.
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// Mark dead tasks as dropped (kept for the record, never run again).
    Drop {
        /// Which dead tasks.
        #[command(flatten)]
        selection: DlqSelection,
        /// Config and logging.
        #[command(flatten)]
        common: ConfigArgs,
    },
}

/// The dead tasks `redrive` and `drop` act on: one id, or `--all` (of `--kind`).
#[derive(Debug, clap::Args)]
pub struct DlqSelection {
    /// Task id (or `--all`).
    id: Option<String>,
    /// Every dead task (of `--kind`, when given).
    #[arg(long)]
    all: bool,
    /// Only this kind (with `--all`).
    #[arg(long)]
    kind: Option<String>,
}

/// Runs an `flk audit` subcommand; returns the exit code.
pub fn run(command: AuditCommand) -> anyhow::Result<u8> {
    match command {
        AuditCommand::Keygen {
            out,
            origin,
            common,
        } => keygen(&out, origin, &common),
        AuditCommand::Key { common } => {
            let (config, _guard) = load(&common, "warn", "audit")?;
            let signer = signer(&config)?;
            println!("{}", signer.verifier_key());
            Ok(0)
        }
        AuditCommand::Verify {
            bundle,
            key,
            record,
        } => verify(&bundle, &key, record.as_deref()),
        AuditCommand::Check { key, common } => check(key.as_deref(), &common),
        AuditCommand::Dlq(command) => dlq(command),
        AuditCommand::Attest { limit, common, .. } => attest_missing(limit, &common),
        AuditCommand::Report {
            tenant,
            from_ms,
            to_ms,
            common,
        } => {
            if from_ms < 0 || to_ms <= from_ms {
                bail!("--to-ms must be after --from-ms, both non-negative");
            }
            let (config, _guard) = load(&common, "warn", "audit")?;
            if !config.tenants.contains_key(&tenant) {
                bail!("tenant {tenant} is not in the config");
            }
            let task = events::audit_task::AuditTask::generate_report(
                &tenant,
                from_ms,
                to_ms,
                infra::clock::now_ms(),
            );
            enqueue(&config, &[task])?;
            Ok(0)
        }
    }
}

fn signer(config: &Config) -> anyhow::Result<NoteSigner> {
    let seed = config.audit.signing_seed()?.context(
        "no audit signing key configured (audit.signing_key_file_opt or FLK_AUDIT_SIGNING_KEY_FILE)",
    )?;
    Ok(NoteSigner::new(
        &config.audit.origin(&config.region),
        &seed,
    )?)
}

fn keygen(out: &Path, origin: Option<String>, common: &ConfigArgs) -> anyhow::Result<u8> {
    let origin = match origin {
        Some(origin) => origin,
        None => {
            let (config, _guard) = load(common, "warn", "audit")?;
            config.audit.origin(&config.region)
        }
    };
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut seed))
        .context("reading /dev/urandom")?;
    let signer = NoteSigner::new(&origin, &seed)?;
    write_secret(out, &format!("{}\n", BASE64.encode(seed)))?;
    eprintln!("flk audit: wrote the signing key to {}", out.display());
    println!("{}", signer.verifier_key());
    Ok(0)
}

fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "creating {} (an existing key is never overwritten)",
                path.display()
            )
        })?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut bytes)
            .context("reading stdin")?;
    } else {
        std::fs::File::open(path)
            .with_context(|| format!("opening {}", path.display()))?
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", path.display()))?;
    }
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        bail!("{} is larger than {MAX_INPUT_BYTES} bytes", path.display());
    }
    Ok(bytes)
}

fn verify(bundle_path: &Path, key: &str, record_opt: Option<&Path>) -> anyhow::Result<u8> {
    let verifier = NoteVerifier::parse(key).context("--key")?;
    let bundle: ProofBundle = serde_json::from_slice(&read_input(bundle_path)?)
        .with_context(|| format!("{} is not a proof bundle", bundle_path.display()))?;
    let record = record_opt
        .map(|path| {
            let bytes = read_input(path)?;
            SignedFields::from_json_bytes(&bytes)
                .map_err(|error| anyhow::anyhow!("{} is not a PCS record: {error}", path.display()))
        })
        .transpose()?;
    match verify_bundle(&bundle, &verifier, record.as_ref()) {
        Ok((checkpoint, leaf)) => {
            println!(
                "ok: leaf {} of {} (tree size {}): tenant {}, pcs_id {}, outcome {}",
                bundle.leaf_index,
                checkpoint.origin,
                checkpoint.size,
                leaf.tenant,
                leaf.pcs_id.as_deref().unwrap_or("-"),
                leaf.outcome
            );
            Ok(0)
        }
        Err(error) => {
            eprintln!("flk audit verify: FAILED: {error}");
            Ok(1)
        }
    }
}

fn check(key_opt: Option<&str>, common: &ConfigArgs) -> anyhow::Result<u8> {
    let (config, _guard) = load(common, "warn", "audit")?;
    let verifier_opt = match key_opt {
        Some(key) => Some(NoteVerifier::parse(key).context("--key")?),
        None if config.audit.signing_key_file_opt.is_some() => {
            Some(NoteVerifier::parse(&signer(&config)?.verifier_key())?)
        }
        None => None,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async {
        let store = crate::serve::open_store(&config, &config.postgres.schema).await?;
        let mut intact = true;
        for partition in store.audit_partitions().await? {
            let report = store.verify_audit_chain(partition).await?;
            match &report.break_opt {
                None => println!("chain {partition}: ok ({} entries)", report.entries),
                Some(broken) => {
                    intact = false;
                    println!(
                        "chain {partition}: BROKEN at seq {}: {:?}",
                        broken.seq, broken.kind
                    );
                }
            }
        }
        if verifier_opt.is_none() {
            println!("checkpoint signatures: not checked (no key given or configured)");
        }
        let tree = projections::merkle_check::check_tree(&store, verifier_opt.as_ref()).await?;
        match &tree.first_mismatch_opt {
            None => println!(
                "merkle log: ok ({} checkpoints, {} leaves)",
                tree.checkpoints, tree.leaves
            ),
            Some(what) => {
                intact = false;
                println!(
                    "merkle log: MISMATCH after {} good checkpoints: {what}",
                    tree.checkpoints
                );
            }
        }
        anyhow::Ok(if intact { 0 } else { 1 })
    })
}

/// Most dead tasks one `--all` acts on.
const DLQ_ALL_LIMIT: i64 = 10_000;

fn dlq(command: DlqCommand) -> anyhow::Result<u8> {
    let common = match &command {
        DlqCommand::List { common, .. }
        | DlqCommand::Show { common, .. }
        | DlqCommand::Redrive { common, .. }
        | DlqCommand::Drop { common, .. } => common,
    };
    let (config, _guard) = load(common, "warn", "audit")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async {
        let store = crate::serve::open_store(&config, &config.postgres.schema).await?;
        match command {
            DlqCommand::List {
                state, kind, limit, ..
            } => {
                let state_opt = match state.as_str() {
                    "all" => None,
                    "dead" | "redriven" | "dropped" => Some(state.as_str()),
                    other => bail!("--state must be dead, redriven, dropped or all, not {other:?}"),
                };
                let entries = store.dlq_entries(state_opt, kind.as_deref(), limit).await?;
                println!(
                    "{:<48} {:<16} {:<9} {:>15}  reason",
                    "task id", "kind", "state", "dead at (ms)"
                );
                for entry in &entries {
                    println!(
                        "{:<48} {:<16} {:<9} {:>15}  {} ({} attempts)",
                        entry.task_id,
                        entry.kind,
                        entry.state,
                        entry.dead.dead_at_ms,
                        entry.dead.reason,
                        entry.dead.attempts.len()
                    );
                }
                eprintln!("{} entries", entries.len());
                Ok(0)
            }
            DlqCommand::Show { id, .. } => match store.dlq_entry(&id).await? {
                Some(entry) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&serde_json::json!({
                            "task_id": entry.task_id, "kind": entry.kind, "state": entry.state,
                            "resolved_at_ms": entry.resolved_at_ms_opt, "dead": entry.dead,
                        }))?
                    );
                    Ok(0)
                }
                None => {
                    eprintln!("flk audit dlq: no DLQ entry {id:?}");
                    Ok(1)
                }
            },
            DlqCommand::Redrive { selection, .. } => {
                let entries = selected(&store, selection).await?;
                let sink = infra::kafka::sink::KafkaSink::new(&config.kafka, "flk-audit-dlq")?;
                let mut redriven = 0;
                for entry in entries {
                    let Ok(mut task) = serde_json::from_value::<events::audit_task::AuditTask>(
                        entry.dead.task.clone(),
                    ) else {
                        eprintln!("{}: not a readable task; drop it instead", entry.task_id);
                        continue;
                    };
                    task.redrives += 1;
                    let record = task_record(&config.kafka.audit_tasks_topic(), &task);
                    infra::log::LogSink::produce(&sink, record)?.await?;
                    store
                        .resolve_dlq(&entry.task_id, "redriven", infra::clock::now_ms())
                        .await?;
                    println!("redriven {}", entry.task_id);
                    redriven += 1;
                }
                eprintln!("{redriven} tasks redriven");
                Ok(0)
            }
            DlqCommand::Drop { selection, .. } => {
                let entries = selected(&store, selection).await?;
                for entry in &entries {
                    store
                        .resolve_dlq(&entry.task_id, "dropped", infra::clock::now_ms())
                        .await?;
                    println!("dropped {}", entry.task_id);
                }
                eprintln!("{} tasks dropped", entries.len());
                Ok(0)
            }
        }
    })
}

/// The dead entries an id or `--all [--kind]` names.
async fn selected(
    store: &projections::ProjectionStore,
    DlqSelection { id, all, kind }: DlqSelection,
) -> anyhow::Result<Vec<projections::audit_tasks::DlqEntry>> {
    match (id, all) {
        (Some(id), false) => match store.dlq_entry(&id).await? {
            Some(entry) if entry.state == "dead" => Ok(vec![entry]),
            Some(entry) => bail!("{id} is {}, not dead", entry.state),
            None => bail!("no DLQ entry {id:?}"),
        },
        (None, true) => Ok(store
            .dlq_entries(Some("dead"), kind.as_deref(), DLQ_ALL_LIMIT)
            .await?),
        _ => bail!("give a task id or --all"),
    }
}

fn attest_missing(limit: i64, common: &ConfigArgs) -> anyhow::Result<u8> {
    let (config, _guard) = load(common, "warn", "audit")?;
    let origin = config.audit.origin(&config.region);
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async {
        let store = crate::serve::open_store(&config, &config.postgres.schema).await?;
        let sizes = store.unattested_checkpoints(limit).await?;
        let tasks: Vec<_> = sizes
            .iter()
            .map(|size| {
                events::audit_task::AuditTask::attest_external(
                    &origin,
                    *size,
                    infra::clock::now_ms(),
                )
            })
            .collect();
        produce_tasks(&config, &tasks).await?;
        println!("{} attestation tasks enqueued", sizes.len());
        if config.audit.tsa_url_opt.is_none() {
            eprintln!(
                "note: no audit.tsa_url_opt is configured here; the workers need one to run them"
            );
        }
        anyhow::Ok(0)
    })
}

/// Produces `tasks` to `flk.audit.tasks` and waits for the log to take each.
async fn produce_tasks(
    config: &Config,
    tasks: &[events::audit_task::AuditTask],
) -> anyhow::Result<()> {
    let sink = infra::kafka::sink::KafkaSink::new(&config.kafka, "flk-audit")?;
    for task in tasks {
        let record = task_record(&config.kafka.audit_tasks_topic(), task);
        infra::log::LogSink::produce(&sink, record)?.await?;
    }
    Ok(())
}

/// [`produce_tasks`] from synchronous code; prints each task id.
fn enqueue(config: &Config, tasks: &[events::audit_task::AuditTask]) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(produce_tasks(config, tasks))?;
    for task in tasks {
        println!("enqueued {}", task.id);
    }
    Ok(())
}
