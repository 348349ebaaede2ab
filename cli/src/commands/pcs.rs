//! `flk pcs ...`: the contract's pure functions on stdin, so any outside vector file can be checked
//! against this build and against every SDK's signer (they share this interface).

use std::io::{BufRead as _, Read as _, Write as _};

use anyhow::{Context as _, bail};
use clap::{Subcommand, ValueEnum};
use events::{
    Ed25519Signer, SignedFields, TenantKey, TenantPolicy, Verdict, VerifyParams, VerifyingSecret,
    decide, sign_hmac,
};

/// Largest stdin document we read (a PCS is about 1 KiB; this only stops runaway input).
const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

/// Signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Algorithm {
    /// HMAC-SHA256 over the canonical payload, keyed by the UTF-8 bytes of `--key`.
    Hmac,
    /// Ed25519 over SHA-256 of the canonical payload, from a 32-byte seed.
    Ed25519,
}

/// `flk pcs` subcommands.
#[derive(Debug, Subcommand)]
pub enum PcsCommand {
    /// Print the canonical signing payload of the JSON object on stdin (exact bytes, no newline).
    ///
    /// The object must hold at least the 8 signed fields: pcs_id, merkle_root, epoch, shard_id,
    /// D_hat, coh_star, r, budget. Other keys are ignored.
    Canonical,
    /// Sign the JSON object on stdin and print the base64 signature.
    ///
    /// HMAC: `flk pcs sign --key SECRET` (any UTF-8 string, even empty, is a valid key).
    /// Ed25519: `flk pcs sign --alg ed25519 --seed BASE64_OF_32_BYTES`.
    Sign {
        /// Signature algorithm.
        #[arg(long, value_enum, default_value_t = Algorithm::Hmac)]
        alg: Algorithm,
        /// HMAC secret (with `--alg hmac`).
        #[arg(long, required_if_eq("alg", "hmac"), allow_hyphen_values = true)]
        key: Option<String>,
        /// Standard base64 of the 32-byte Ed25519 seed (with `--alg ed25519`).
        #[arg(long, required_if_eq("alg", "ed25519"))]
        seed: Option<String>,
    },
    /// Verify the PCS on stdin and print the outcome JSON.
    ///
    /// Exit status: 0 when accepted and not escalated (HTTP 200), 2 when escalated but accepted,
    /// 1 when rejected, malformed or badly signed (the error goes to stderr). Without a key the
    /// signature is not checked.
    Verify {
        /// HMAC secret to check `sig` with.
        #[arg(long, allow_hyphen_values = true)]
        key: Option<String>,
        /// Ed25519 public key (standard base64 of 32 bytes) to check `sig` with.
        #[arg(long)]
        ed25519_public: Option<String>,
        /// Also accept legacy pre-hash HMAC signatures.
        #[arg(long)]
        legacy_prehash: bool,
        /// Verification parameters as a JSON object (e.g. '{"tol_D": 0.2}'); defaults otherwise.
        #[arg(long)]
        params: Option<String>,
    },
    /// Canonicalize and sign many records: JSON lines in, JSON lines out (for cross-language checks).
    ///
    /// Input lines: {"fields": {...8 signed fields...}, "hmac_key": "...", "ed25519_seed": "b64"}.
    /// Output lines: {"payload": "...", "hmac": "...", "ed25519": "..."} (signatures only for the
    /// keys given).
    Batch,
}

/// Runs one `flk pcs` subcommand and returns the exit code.
pub fn run(command: PcsCommand) -> anyhow::Result<u8> {
    match command {
        PcsCommand::Canonical => {
            let fields = read_signed_fields()?;
            std::io::stdout().write_all(&fields.canonical_payload())?;
            Ok(0)
        }
        PcsCommand::Sign { alg, key, seed } => {
            let payload = read_signed_fields()?.canonical_payload();
            let signature = match alg {
                Algorithm::Hmac => sign_hmac(key.unwrap_or_default().as_bytes(), &payload),
                Algorithm::Ed25519 => {
                    Ed25519Signer::from_seed_base64(&seed.unwrap_or_default())?.sign(&payload)
                }
            };
            println!("{signature}");
            Ok(0)
        }
        PcsCommand::Verify {
            key,
            ed25519_public,
            legacy_prehash,
            params,
        } => verify(key, ed25519_public, legacy_prehash, params),
        PcsCommand::Batch => batch(),
    }
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut input)
        .context("reading stdin")?;
    if input.len() as u64 > MAX_INPUT_BYTES {
        bail!("stdin is larger than {MAX_INPUT_BYTES} bytes");
    }
    Ok(input)
}

fn read_signed_fields() -> anyhow::Result<SignedFields> {
    Ok(SignedFields::from_json_bytes(&read_stdin()?)?)
}

fn verify(
    key: Option<String>,
    ed25519_public: Option<String>,
    legacy_prehash: bool,
    params: Option<String>,
) -> anyhow::Result<u8> {
    let params = match params {
        None => VerifyParams::default(),
        Some(text) => serde_json::from_str(&text).context("--params")?,
    };
    if let Err(problem) = params.validate() {
        bail!("--params: {problem}");
    }
    let mut keys = Vec::new();
    if let Some(secret) = key {
        keys.push(TenantKey {
            id: "cli-hmac".to_owned(),
            secret: VerifyingSecret::Hmac(secret.into_bytes()),
        });
    }
    if let Some(public) = ed25519_public {
        keys.push(TenantKey {
            id: "cli-ed25519".to_owned(),
            secret: VerifyingSecret::ed25519_from_base64(&public)?,
        });
    }
    let policy = TenantPolicy {
        enabled: true,
        keys,
        accept_legacy_prehash: legacy_prehash,
        params,
        params_version: 0,
    };
    let decision = decide(&read_stdin()?, "cli", Some(&policy));
    match decision.verdict {
        Verdict::Verified { outcome } => {
            println!("{}", outcome.to_json());
            match (outcome.accepted, outcome.escalated) {
                (true, false) => Ok(0),
                (true, true) => Ok(2),
                (false, _) => {
                    eprintln!(
                        "flk: rejected: {}",
                        outcome.reason_opt.as_deref().unwrap_or("not accepted")
                    );
                    Ok(1)
                }
            }
        }
        Verdict::Malformed { error } => {
            eprintln!("flk: malformed PCS: {error}");
            Ok(1)
        }
        Verdict::SignatureRejected { reason } => {
            eprintln!("flk: bad signature: {reason}");
            Ok(1)
        }
        Verdict::TenantRefused { reason } => {
            eprintln!("flk: refused: {reason}");
            Ok(1)
        }
    }
}

fn batch() -> anyhow::Result<u8> {
    let stdin = std::io::stdin();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for (index, line) in stdin.lock().lines().enumerate() {
        let line = line.context("reading stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let output = batch_line(&line).with_context(|| format!("line {}", index + 1))?;
        serde_json::to_writer(&mut stdout, &output)?;
        stdout.write_all(b"\n")?;
    }
    stdout.flush()?;
    Ok(0)
}

fn batch_line(line: &str) -> anyhow::Result<serde_json::Value> {
    let input: serde_json::Value = serde_json::from_str(line)?;
    let fields = input
        .get("fields")
        .context("`fields` is required")?
        .to_string();
    let payload = SignedFields::from_json_bytes(fields.as_bytes())?.canonical_payload();
    let mut output = serde_json::Map::new();
    output.insert("payload".into(), String::from_utf8(payload.clone())?.into());
    if let Some(key) = input.get("hmac_key").and_then(|key| key.as_str()) {
        output.insert("hmac".into(), sign_hmac(key.as_bytes(), &payload).into());
    }
    if let Some(seed) = input.get("ed25519_seed").and_then(|seed| seed.as_str()) {
        output.insert(
            "ed25519".into(),
            Ed25519Signer::from_seed_base64(seed)?.sign(&payload).into(),
        );
    }
    Ok(serde_json::Value::Object(output))
}
