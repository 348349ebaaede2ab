//! The bad-input corpus: malformed and hostile submissions, each with the exact answer a user
//! relies on. The same bodies go to the gateway (`chaos/tests/bad_input.rs`, status and error
//! code) and straight into Kafka (each must become a decision with the same status in the audit
//! log, and never stall its partition).
//!
//! Every case that reaches the log has its own `pcs_id` (or none), so no case is answered as a
//! duplicate of another.

use std::io::Write as _;

use serde_json::{Value, json};

use crate::records::{edited, resign, signed_record};

/// The tenant every corpus record is signed for.
pub const TENANT: &str = "default";
/// Its HMAC secret.
pub const SECRET: &str = "corpussecret";
/// A configured tenant with `enabled = false`.
pub const DISABLED_TENANT: &str = "frozen";
/// The body limit the corpus deployment runs with (`gateway.max_body_bytes`).
pub const BODY_LIMIT: usize = 64 * 1024;

/// One hostile request and what it must get.
#[derive(Debug, Clone)]
pub struct Case {
    /// What the request is (unique).
    pub name: String,
    /// `X-Tenant-Id` (and the `flk-tenant` header of the Kafka record) as raw bytes; none means
    /// the default tenant.
    pub tenant_opt: Option<Vec<u8>>,
    /// Other request headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body as sent.
    pub body: Vec<u8>,
    /// The status it must get.
    pub status: u16,
    /// The `error` code of the body, for error answers (decision bodies carry none).
    pub error_opt: Option<&'static str>,
    /// Text the message (or the outcome's `reason`) must contain; empty for no check.
    pub says: &'static str,
    /// Whether the body also goes into Kafka as a record (not for what only HTTP can carry:
    /// sizes past the limit, content encodings).
    pub in_kafka: bool,
    /// Send only the request head, declaring this `Content-Length` (a client announcing a body
    /// it never gets to send: the answer must come without reading it).
    pub declared_only_opt: Option<usize>,
}

/// The corpus: `first_seed` makes its `pcs_id`s unique to one run.
pub fn corpus(first_seed: u64) -> Vec<Case> {
    let mut seeds = first_seed..;
    let mut next = || signed_record(seeds.next().unwrap_or_default(), SECRET);
    let mut cases = Vec::new();
    syntax(&mut cases, &mut next);
    types(&mut cases, &mut next);
    signatures(&mut cases, &mut next);
    verification(&mut cases, &mut next);
    limits(&mut cases, &mut next);
    door(&mut cases, &mut next);
    cases
}

fn case(
    name: &str,
    body: impl Into<Vec<u8>>,
    status: u16,
    error_opt: Option<&'static str>,
    says: &'static str,
) -> Case {
    Case {
        name: name.to_owned(),
        tenant_opt: None,
        headers: Vec::new(),
        body: body.into(),
        status,
        error_opt,
        says,
        in_kafka: true,
        declared_only_opt: None,
    }
}

fn malformed(name: &str, body: impl Into<Vec<u8>>, says: &'static str) -> Case {
    case(name, body, 400, Some("malformed"), says)
}

fn text(record: &Value) -> String {
    serde_json::to_string(record).unwrap_or_default()
}

/// `record` as text with `"key":<old>` replaced by `"key":<raw>` (raw JSON, possibly invalid).
fn with_raw(record: &Value, key: &str, raw: &str) -> String {
    let mut body = text(record);
    let old = format!("\"{key}\":{}", record[key]);
    body = body.replacen(&old, &format!("\"{key}\":{raw}"), 1);
    body
}

/// `record` with `key` removed and re-signed.
fn without(record: &Value, key: &str) -> Value {
    let mut record = record.clone();
    if let Some(object) = record.as_object_mut() {
        object.remove(key);
    }
    resign(&mut record, SECRET);
    record
}

/// A record whose `pcs_id` matches its (edited) `merkle_root`, `epoch` and `shard_id`, signed.
fn consistent(record: &Value, edits: Value) -> Value {
    let mut record = edited(record, edits, SECRET);
    let pcs_id = events::derive_pcs_id(
        record["merkle_root"].as_str().unwrap_or_default(),
        record["epoch"].as_i64().unwrap_or_default(),
        record["shard_id"].as_str().unwrap_or_default(),
    );
    record["pcs_id"] = json!(pcs_id);
    resign(&mut record, SECRET);
    record
}

fn syntax(cases: &mut Vec<Case>, next: &mut impl FnMut() -> Value) {
    let not_json = "body is not valid JSON";
    let not_object = "body must be a JSON object";
    cases.push(malformed("empty body", "", not_json));
    cases.push(malformed("whitespace only", " \n\t ", not_json));
    cases.push(malformed("null", "null", not_object));
    cases.push(malformed("an array", "[]", not_object));
    cases.push(malformed("a string", "\"pcs\"", not_object));
    cases.push(malformed("a number", "42", not_object));
    cases.push(malformed("a boolean", "true", not_object));
    let record = text(&next());
    cases.push(malformed(
        "truncated in the middle",
        &record[..record.len() / 2],
        not_json,
    ));
    cases.push(malformed(
        "trailing garbage",
        format!("{record} x"),
        not_json,
    ));
    cases.push(malformed(
        "two objects",
        format!("{record}{record}"),
        not_json,
    ));
    cases.push(malformed(
        "trailing NUL byte",
        [record.as_bytes(), b"\0"].concat(),
        not_json,
    ));
    cases.push(malformed(
        "UTF-8 byte order mark",
        [b"\xef\xbb\xbf".as_slice(), text(&next()).as_bytes()].concat(),
        not_json,
    ));
    let utf16: Vec<u8> = text(&next())
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    cases.push(malformed("UTF-16 encoded", utf16, not_json));
    let mut latin1 = text(&next())
        .replacen("test-shard-001", "test-shard-\u{1}01", 1)
        .into_bytes();
    for byte in &mut latin1 {
        if *byte == 0x01 {
            *byte = 0xe9; // `é` in Latin-1: not UTF-8
        }
    }
    cases.push(malformed("Latin-1 byte in a string", latin1, not_json));
    cases.push(malformed(
        "raw control character in a string",
        text(&next()).replacen("test-shard-001", "test-shard\u{1}001", 1),
        not_json,
    ));
    cases.push(malformed(
        "lone surrogate escape",
        text(&next()).replacen("test-shard-001", "test-shard-\\ud800", 1),
        not_json,
    ));
    cases.push(malformed(
        "invalid escape",
        text(&next()).replacen("test-shard-001", "test\\x41", 1),
        not_json,
    ));
    cases.push(malformed(
        "a comment",
        format!("/* hi */{}", text(&next())),
        not_json,
    ));
    cases.push(malformed(
        "single quotes",
        text(&next()).replace('"', "'"),
        not_json,
    ));
    cases.push(malformed(
        "NaN",
        with_raw(&next(), "coh_star", "NaN"),
        not_json,
    ));
    cases.push(malformed(
        "Infinity",
        with_raw(&next(), "D_hat", "Infinity"),
        not_json,
    ));
    cases.push(malformed(
        "-Infinity",
        with_raw(&next(), "budget", "-Infinity"),
        not_json,
    ));
    cases.push(malformed(
        "number beyond f64",
        with_raw(&next(), "coh_star", "1e400"),
        not_json,
    ));
    cases.push(malformed(
        "trailing comma",
        text(&next()).replacen('}', ",}", 1),
        not_json,
    ));
    let depth = 20_000;
    cases.push(malformed(
        "arrays nested 20,000 deep",
        with_raw(
            &next(),
            "v_star",
            &format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
        ),
        not_json,
    ));
    cases.push(malformed(
        "objects nested 1,000 deep",
        with_raw(
            &next(),
            "ft",
            &format!("{}{}", "{\"a\":".repeat(1_000) + "1", "}".repeat(1_000)),
        ),
        not_json,
    ));
    let record = next();
    let pcs_id = record["pcs_id"].clone();
    cases.push(malformed(
        "duplicate key with the same value",
        text(&record).replacen('{', &format!("{{\"pcs_id\":{pcs_id},"), 1),
        "duplicate key `pcs_id`",
    ));
    let record = next();
    cases.push(malformed(
        "duplicate sig (a second signature smuggled in)",
        text(&record).replacen('{', "{\"sig\":\"AAAA\",", 1),
        "duplicate key `sig`",
    ));
    let record = next();
    cases.push(malformed(
        "duplicate key inside N_j",
        with_raw(
            &record,
            "N_j",
            "{\"2\":3,\"2\":4,\"4\":5,\"8\":9,\"16\":17}",
        ),
        "duplicate key `2`",
    ));
}

fn types(cases: &mut Vec<Case>, next: &mut impl FnMut() -> Value) {
    let mut wrong = |name: &str, key: &str, raw: &str, says: &'static str| {
        cases.push(malformed(name, with_raw(&next(), key, raw), says));
    };
    wrong(
        "pcs_id a number",
        "pcs_id",
        "7",
        "`pcs_id` must be a string",
    );
    wrong("epoch a float", "epoch", "1.0", "`epoch`");
    wrong("epoch in exponent form", "epoch", "1e0", "`epoch`");
    wrong("epoch a string", "epoch", "\"1\"", "`epoch`");
    wrong("epoch past i64", "epoch", "9223372036854775808", "`epoch`");
    wrong("scales an object", "scales", "{}", "`scales`");
    wrong(
        "scales with a string",
        "scales",
        "[2,\"4\",8,16]",
        "`scales`",
    );
    wrong("scales with zero", "scales", "[0,4,8,16]", "`scales`");
    wrong(
        "scales with a fraction",
        "scales",
        "[2.5,4,8,16]",
        "`scales`",
    );
    wrong("scales negative", "scales", "[-2,4,8,16]", "`scales`");
    wrong("N_j an array", "N_j", "[3,5,9,17]", "`N_j`");
    wrong(
        "N_j with a float",
        "N_j",
        "{\"2\":3.5,\"4\":5,\"8\":9,\"16\":17}",
        "`N_j",
    );
    wrong(
        "N_j with a string",
        "N_j",
        "{\"2\":\"3\",\"4\":5,\"8\":9,\"16\":17}",
        "`N_j",
    );
    wrong(
        "coh_star a string",
        "coh_star",
        "\"0.5\"",
        "`coh_star` must be a number",
    );
    wrong("D_hat null", "D_hat", "null", "`D_hat`");
    wrong(
        "budget a boolean",
        "budget",
        "true",
        "`budget` must be a number",
    );
    wrong(
        "regime a number",
        "regime",
        "1",
        "`regime` must be a string",
    );
    wrong(
        "merkle_root a number",
        "merkle_root",
        "12",
        "`merkle_root` must be a string",
    );
    wrong("sig a number", "sig", "12", "`sig` must be a string");
    wrong("ft a string", "ft", "\"degraded\"", "`ft`");
    wrong(
        "ft.degraded a string",
        "ft",
        "{\"degraded\":\"yes\"}",
        "`ft.degraded`",
    );
    wrong("v_star with a string", "v_star", "[0.1,\"x\"]", "`v_star`");
    wrong(
        "sent_at without a zone",
        "sent_at",
        "\"2025-01-19T12:00:00\"",
        "`sent_at`",
    );
    wrong(
        "sent_at not a date",
        "sent_at",
        "\"yesterday\"",
        "`sent_at`",
    );
    wrong("sent_at a number", "sent_at", "1737288000", "`sent_at`");
    for key in ["N_j", "epoch", "regime"] {
        cases.push(malformed(
            &format!("{key} missing"),
            text(&without(&next(), key)),
            "is required",
        ));
    }
}

fn signatures(cases: &mut Vec<Case>, next: &mut impl FnMut() -> Value) {
    let mut unsigned = |name: &str, sig_opt: Option<Value>, says: &'static str| {
        let mut record = next();
        match sig_opt {
            Some(sig) => record["sig"] = sig,
            None => {
                if let Some(object) = record.as_object_mut() {
                    object.remove("sig");
                }
            }
        }
        cases.push(case(
            name,
            text(&record),
            401,
            Some("signature_invalid"),
            says,
        ));
    };
    unsigned("no signature", None, "");
    unsigned("empty signature", Some(json!("")), "");
    unsigned("signature not base64", Some(json!("!!!not base64!!!")), "");
    unsigned("signature of the wrong length", Some(json!("AAAA")), "");
    unsigned(
        "signature with a line break",
        Some(json!("x5KLRpKb75Oy1oxLA+3V\n+bgY/HL/3ZYOk1rw3pCiSm4=")),
        "",
    );
    let other_key = edited(&next(), json!({}), "someone-elses-secret");
    cases.push(case(
        "signed with another key",
        text(&other_key),
        401,
        Some("signature_invalid"),
        "",
    ));
    let mut replayed = next();
    replayed["sig"] = next()["sig"].clone();
    cases.push(case(
        "another record's signature",
        text(&replayed),
        401,
        Some("signature_invalid"),
        "",
    ));
    let mut tampered = next();
    tampered["budget"] = json!(0.9);
    cases.push(case(
        "edited after signing",
        text(&tampered),
        401,
        Some("signature_invalid"),
        "",
    ));
}

fn verification(cases: &mut Vec<Case>, next: &mut impl FnMut() -> Value) {
    let mut answered = |name: &str, record: Value, status: u16, says: &'static str| {
        cases.push(case(name, text(&record), status, None, says));
    };
    answered(
        "wrong schema",
        edited(&next(), json!({"schema": "other"}), SECRET),
        202,
        "invalid schema",
    );
    answered(
        "empty version",
        edited(&next(), json!({"version": ""}), SECRET),
        202,
        "version is required",
    );
    answered(
        "empty shard_id",
        edited(&next(), json!({"shard_id": ""}), SECRET),
        202,
        "shard_id is required",
    );
    answered(
        "negative epoch",
        edited(&next(), json!({"epoch": -1}), SECRET),
        202,
        "epoch must be non-negative",
    );
    answered(
        "pcs_id not derived from its fields",
        edited(&next(), json!({"pcs_id": "0".repeat(64)}), SECRET),
        202,
        "pcs_id mismatch",
    );
    answered(
        "pcs_id of 10,000 characters",
        edited(&next(), json!({"pcs_id": "a".repeat(10_000)}), SECRET),
        202,
        "pcs_id mismatch",
    );
    answered(
        "no scales",
        edited(&next(), json!({"scales": []}), SECRET),
        202,
        "scales cannot be empty",
    );
    answered(
        "one scale",
        edited(&next(), json!({"scales": [2]}), SECRET),
        202,
        "need at least 2 scales",
    );
    answered(
        "N_j without a scale's entry",
        edited(&next(), json!({"scales": [2, 4, 8, 32]}), SECRET),
        202,
        "missing N_j entry",
    );
    answered(
        "N_j zero",
        edited(
            &next(),
            json!({"N_j": {"2": 0, "4": 8, "8": 17, "16": 20}}),
            SECRET,
        ),
        202,
        "N_j must be positive",
    );
    answered(
        "coh_star far out of bounds",
        edited(&next(), json!({"coh_star": 5.0}), SECRET),
        202,
        "",
    );
    answered(
        "D_hat 1e300",
        edited(&next(), json!({"D_hat": 1e300}), SECRET),
        202,
        "D_hat out of tolerance",
    );
    answered(
        "D_hat -1e300",
        edited(&next(), json!({"D_hat": -1e300}), SECRET),
        202,
        "D_hat out of tolerance",
    );
    answered(
        "regime claimed wrong",
        edited(&next(), json!({"regime": "sticky"}), SECRET),
        202,
        "regime mismatch",
    );
    answered(
        "regime unknown",
        edited(&next(), json!({"regime": "chaotic"}), SECRET),
        202,
        "regime mismatch",
    );
    answered(
        "budget far off",
        edited(&next(), json!({"budget": 1e308}), SECRET),
        202,
        "budget deviation",
    );
    answered(
        "agent degraded",
        edited(&next(), json!({"ft": {"degraded": true}}), SECRET),
        202,
        "degraded",
    );
    answered(
        "epoch i64::MAX",
        consistent(&next(), json!({"epoch": i64::MAX})),
        200,
        "",
    );
    answered("epoch 0", consistent(&next(), json!({"epoch": 0})), 200, "");
    answered(
        "non-ASCII shard_id",
        consistent(&next(), json!({"shard_id": "шард-😀-<&>/\u{7f}"})),
        200,
        "",
    );
    answered(
        "merkle_root of 20,000 characters",
        consistent(&next(), json!({"merkle_root": "m".repeat(20_000)})),
        200,
        "",
    );
    let mut extra = next();
    if let Some(object) = extra.as_object_mut() {
        for n in 0..200 {
            object.insert(format!("extra_{n}"), json!({"nested": [n, "x"]}));
        }
    }
    answered("200 unknown keys", extra, 200, "");
    answered(
        "integers where floats go",
        edited(&next(), json!({"coh_star": 0, "r": 1}), SECRET),
        202,
        "",
    );
    answered(
        "sent_at with an offset",
        edited(
            &next(),
            json!({"sent_at": "2025-01-19T12:00:00+05:30"}),
            SECRET,
        ),
        200,
        "",
    );
}

fn limits(cases: &mut Vec<Case>, next: &mut impl FnMut() -> Value) {
    let padded = |record: Value, size: usize| {
        let mut body = text(&record).into_bytes();
        body.resize(size, b' ');
        body
    };
    cases.push(case(
        "body exactly at the limit",
        padded(next(), BODY_LIMIT),
        200,
        None,
        "",
    ));
    let mut over = case(
        "body one byte over the limit",
        padded(next(), BODY_LIMIT + 1),
        413,
        Some("payload_too_large"),
        "",
    );
    over.in_kafka = false;
    cases.push(over);
    let mut huge = case(
        "declares a body of 4 MiB",
        Vec::new(),
        413,
        Some("payload_too_large"),
        "",
    );
    huge.declared_only_opt = Some(4 * 1024 * 1024);
    huge.in_kafka = false;
    cases.push(huge);
    // Bodies are taken as sent: a compressed one is refused, never inflated (no bomb to defuse).
    let encoded = |name: &str, encoding: &str, body: Vec<u8>| {
        let mut refused = case(
            name,
            body,
            415,
            Some("unsupported_encoding"),
            "not supported",
        );
        refused
            .headers
            .push(("Content-Encoding", encoding.to_owned()));
        refused.in_kafka = false;
        refused
    };
    cases.push(encoded(
        "gzip-encoded record",
        "gzip",
        gzip(text(&next()).as_bytes()),
    ));
    cases.push(encoded(
        "gzip bomb (16 MiB of spaces)",
        "gzip",
        gzip(&vec![b' '; 16 * 1024 * 1024]),
    ));
    cases.push(encoded(
        "gzip header on a plain body",
        "gzip",
        text(&next()).into_bytes(),
    ));
    cases.push(encoded("brotli", "br", text(&next()).into_bytes()));
    let mut identity = case("Content-Encoding identity", text(&next()), 200, None, "");
    identity
        .headers
        .push(("Content-Encoding", "identity".to_owned()));
    identity.in_kafka = false;
    cases.push(identity);
}

fn door(cases: &mut Vec<Case>, next: &mut impl FnMut() -> Value) {
    let mut as_tenant = |name: &str, tenant: Vec<u8>, status: u16, error_opt, says| {
        let mut refused = case(name, text(&next()), status, error_opt, says);
        refused.tenant_opt = Some(tenant);
        cases.push(refused);
    };
    as_tenant(
        "unknown tenant",
        b"nobody".to_vec(),
        403,
        Some("tenant_refused"),
        "unknown tenant",
    );
    as_tenant(
        "disabled tenant",
        DISABLED_TENANT.as_bytes().to_vec(),
        403,
        Some("tenant_refused"),
        "disabled",
    );
    as_tenant(
        "tenant name in another case",
        b"Default".to_vec(),
        403,
        Some("tenant_refused"),
        "unknown tenant",
    );
    as_tenant(
        "empty tenant name",
        Vec::new(),
        403,
        Some("tenant_refused"),
        "unknown tenant",
    );
    as_tenant(
        "tenant name of 6,000 bytes",
        vec![b't'; 6_000],
        403,
        Some("tenant_refused"),
        "unknown tenant",
    );
    as_tenant(
        "tenant name not UTF-8",
        b"caf\xe9".to_vec(),
        403,
        Some("tenant_refused"),
        "unknown tenant",
    );
    as_tenant(
        "tenant name with a space inside",
        b"def ault".to_vec(),
        403,
        Some("tenant_refused"),
        "unknown tenant",
    );
    let mut traced = case("malformed traceparent", text(&next()), 200, None, "");
    traced
        .headers
        .push(("traceparent", "00-zzzz-not-a-trace-01".to_owned()));
    cases.push(traced);
    let mut typed = case("Content-Type text/plain", text(&next()), 200, None, "");
    typed
        .headers
        .push(("Content-Type", "text/plain".to_owned()));
    cases.push(typed);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}
