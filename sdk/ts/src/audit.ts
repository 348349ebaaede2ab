/**
 * Offline verification of the FLK audit log: RFC 6962 Merkle hashing, RFC 9162 inclusion and
 * consistency proofs, C2SP signed checkpoints (`tlog-checkpoint` in a `signed-note`) and whole
 * proof bundles. The same algorithms as the Rust `events` crate (`merkle`, `checkpoint`,
 * `audit_leaf`, `audit_proof`), judged alike by the shared file `tests/vectors/audit-vectors.json`.
 *
 * Nothing here talks to the network: given the log's verifier key (from its operator) and a bundle
 * (from the proof API), {@link verifyBundle} says whether the entry is in the log the key signs for,
 * and whether it is the record you hold.
 *
 * Hashes are accepted as 32 raw bytes or standard base64 text; tree sizes and indexes as a safe
 * integer `number` or a `bigint` (the log counts in unsigned 64 bits).
 *
 * @module
 */

import { createHash, createPublicKey, verify as cryptoVerify, type KeyObject } from "node:crypto";

import { canonicalPayloadBytes, type SignedFields } from "./canonical.js";
import { integerFromText, type WireInteger } from "./epoch.js";
import { isJsonObject, JsonNumber, JsonSyntaxError, parseJson, type JsonObject, type JsonValue } from "./json.js";
import { decodeBase64Strict } from "./signing.js";

// ---------------------------------------------------------------------------------------------
// Merkle hashing and proofs
// ---------------------------------------------------------------------------------------------

/** A hash given as 32 raw bytes or as standard base64 text. */
export type HashInput = Uint8Array | string;

/** Why a Merkle proof did not verify. */
export type MerkleProofErrorKind =
  /** An argument is not what it must be: a hash that is not 32 bytes, a size that is not a u64. */
  | "malformed"
  /** The leaf index or tree sizes cannot be (`index >= size`, `old_size > new_size`). */
  | "out_of_range"
  /** The proof does not lead to the expected root(s). */
  | "mismatch";

/** Thrown by {@link verifyInclusion}, {@link verifyConsistency} and {@link decodeHashes}. */
export class MerkleProofError extends Error {
  /** What went wrong. */
  readonly kind: MerkleProofErrorKind;

  constructor(kind: MerkleProofErrorKind, message: string) {
    super(message);
    this.name = "MerkleProofError";
    this.kind = kind;
  }
}

const UINT64_MAX = 2n ** 64n - 1n;

function sha256(...parts: Uint8Array[]): Buffer {
  const hasher = createHash("sha256");
  for (const part of parts) {
    hasher.update(part);
  }
  return hasher.digest();
}

/** 32 bytes from raw bytes or standard base64 text, else null. */
function toHash(value: HashInput): Buffer | null {
  let bytes: Buffer | null = null;
  if (typeof value === "string") {
    bytes = decodeBase64Strict(value);
  } else if (value instanceof Uint8Array) {
    bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  }
  return bytes !== null && bytes.length === 32 ? bytes : null;
}

function hashArg(value: HashInput, what: string): Buffer {
  const bytes = toHash(value);
  if (bytes === null) {
    throw new MerkleProofError("malformed", `${what} is not 32 bytes (raw, or standard base64 text)`);
  }
  return bytes;
}

function u64Arg(value: WireInteger, what: string): bigint {
  if (typeof value === "bigint") {
    if (value >= 0n && value <= UINT64_MAX) {
      return value;
    }
  } else if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) {
    return BigInt(value);
  } else if (typeof value === "number" && Number.isInteger(value) && value > 0) {
    throw new MerkleProofError("malformed", `${what} ${value} is beyond Number.MAX_SAFE_INTEGER; pass it as a bigint`);
  }
  throw new MerkleProofError("malformed", `${what} must be an integer in [0, 2^64), got ${String(value)}`);
}

/** Root of the empty tree: `SHA-256("")`. */
export function emptyRoot(): Buffer {
  return sha256();
}

/** `SHA-256(0x00 || entry)`: the hash of one leaf, from the entry bytes exactly as served. */
export function leafHash(entry: Uint8Array): Buffer {
  if (!(entry instanceof Uint8Array)) {
    throw new TypeError("a leaf entry must be bytes (a Uint8Array)");
  }
  return sha256(Uint8Array.of(0), entry);
}

/**
 * `SHA-256(0x01 || left || right)`.
 * @throws TypeError when either side is not a 32-byte hash.
 */
export function nodeHash(left: HashInput, right: HashInput): Buffer {
  const l = toHash(left);
  const r = toHash(right);
  if (l === null || r === null) {
    throw new TypeError("node children must be 32-byte hashes (raw, or standard base64 text)");
  }
  return sha256(Uint8Array.of(1), l, r);
}

/**
 * Decodes a list of standard base64 hashes (a proof as the proof API serves it).
 * @throws MerkleProofError (`malformed`) naming the first entry that is not 32 bytes of base64.
 */
export function decodeHashes(list: readonly string[]): Buffer[] {
  if (!Array.isArray(list)) {
    throw new MerkleProofError("malformed", "a proof must be a list of base64 hashes");
  }
  return list.map((text, i) => {
    const bytes = typeof text === "string" ? toHash(text) : null;
    if (bytes === null) {
      throw new MerkleProofError("malformed", `hash ${i} is not 32 bytes of base64`);
    }
    return bytes;
  });
}

function proofArg(proof: readonly HashInput[], what: string): Buffer[] {
  if (!Array.isArray(proof)) {
    throw new MerkleProofError("malformed", `${what} must be a list of hashes`);
  }
  return proof.map((item, i) => hashArg(item, `${what} hash ${i}`));
}

function isPowerOfTwo(n: bigint): boolean {
  return n > 0n && (n & (n - 1n)) === 0n;
}

/**
 * Checks that `leaf` (a {@link leafHash}) is leaf `index` of the tree of `size` leaves whose root is
 * `root` (RFC 9162 section 2.1.3.2). `proof` is the audit path, leaf side first.
 * @throws MerkleProofError: `out_of_range` when `index >= size`, `mismatch` when the proof is too
 * long, too short or leads elsewhere, `malformed` for a bad argument.
 */
export function verifyInclusion(
  leaf: HashInput,
  index: WireInteger,
  size: WireInteger,
  proof: readonly HashInput[],
  root: HashInput,
): void {
  const i = u64Arg(index, "leaf index");
  const n = u64Arg(size, "tree size");
  const path = proofArg(proof, "inclusion proof");
  const expected = hashArg(root, "root");
  let r = hashArg(leaf, "leaf hash");
  if (i >= n) {
    throw new MerkleProofError("out_of_range", `leaf index ${i} is not in a tree of size ${n}`);
  }
  let fn = i;
  let sn = n - 1n;
  for (const p of path) {
    if (sn === 0n) {
      throw new MerkleProofError("mismatch", "inclusion proof is longer than the tree is deep");
    }
    if ((fn & 1n) === 1n || fn === sn) {
      r = nodeHash(p, r);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) {
    throw new MerkleProofError("mismatch", "inclusion proof is shorter than the tree is deep");
  }
  if (!r.equals(expected)) {
    throw new MerkleProofError("mismatch", "inclusion proof does not lead to the root");
  }
}

/**
 * Checks that the tree of `newSize` leaves with root `newRoot` extends the tree of `oldSize` leaves
 * with root `oldRoot` (RFC 9162 section 2.1.4.2). Equal sizes need an empty proof and equal roots;
 * every tree extends the empty one, with an empty proof.
 * @throws MerkleProofError: `out_of_range` when `oldSize > newSize`, `mismatch` when the proof does
 * not tie the two roots, `malformed` for a bad argument.
 */
export function verifyConsistency(
  oldSize: WireInteger,
  newSize: WireInteger,
  oldRoot: HashInput,
  newRoot: HashInput,
  proof: readonly HashInput[],
): void {
  const m = u64Arg(oldSize, "old size");
  const n = u64Arg(newSize, "new size");
  const oldHash = hashArg(oldRoot, "old root");
  const newHash = hashArg(newRoot, "new root");
  const path = proofArg(proof, "consistency proof");
  if (m > n) {
    throw new MerkleProofError("out_of_range", `old size ${m} is larger than new size ${n}`);
  }
  if (m === n) {
    if (path.length !== 0) {
      throw new MerkleProofError("mismatch", "equal sizes need an empty consistency proof");
    }
    if (!oldHash.equals(newHash)) {
      throw new MerkleProofError("mismatch", "two different roots for the same tree size");
    }
    return;
  }
  if (m === 0n) {
    if (path.length !== 0) {
      throw new MerkleProofError("mismatch", "a proof from the empty tree must be empty");
    }
    return;
  }
  const [first] = path;
  if (first === undefined) {
    throw new MerkleProofError("mismatch", "consistency proof is empty");
  }
  // When the old tree is a complete subtree, its root is the proof's implicit first element.
  const [seed, rest] = isPowerOfTwo(m) ? [oldHash, path] : [first, path.slice(1)];
  let fn = m - 1n;
  let sn = n - 1n;
  while ((fn & 1n) === 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = seed;
  let sr = seed;
  for (const c of rest) {
    if (sn === 0n) {
      throw new MerkleProofError("mismatch", "consistency proof is longer than expected");
    }
    if ((fn & 1n) === 1n || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) {
    throw new MerkleProofError("mismatch", "consistency proof is shorter than expected");
  }
  if (!fr.equals(oldHash)) {
    throw new MerkleProofError("mismatch", "consistency proof does not lead to the old root");
  }
  if (!sr.equals(newHash)) {
    throw new MerkleProofError("mismatch", "consistency proof does not lead to the new root");
  }
}

// ---------------------------------------------------------------------------------------------
// Signed checkpoints (C2SP signed-note + tlog-checkpoint)
// ---------------------------------------------------------------------------------------------

/** Why a checkpoint, note or verifier key was refused (the Rust `CheckpointError` variants). */
export type CheckpointErrorKind =
  /** The text is not a well-formed checkpoint or note. */
  | "malformed"
  /** No signature by the expected key, a signature that does not verify, or a foreign origin. */
  | "signature"
  /** A verifier key string could not be read. */
  | "key";

/** Thrown by {@link NoteVerifier} and {@link parseCheckpoint}; the message starts with the kind. */
export class CheckpointError extends Error {
  /** What went wrong. */
  readonly kind: CheckpointErrorKind;

  constructor(kind: CheckpointErrorKind, message: string) {
    super(`${kind}: ${message}`);
    this.name = "CheckpointError";
    this.kind = kind;
  }
}

/** What a checkpoint commits to. */
export interface Checkpoint {
  /** The log's name. */
  origin: string;
  /** Leaves in the tree: a `number` when safe, else a `bigint`. */
  size: WireInteger;
  /** RFC 6962 root of those leaves (32 bytes). */
  root: Buffer;
}

/** The algorithm byte of Ed25519 keys in signed notes. */
const ED25519 = 0x01;
/** Starts every signature line: an em dash and a space. */
const SIGNATURE_PREFIX = "\u2014 ";
/** DER prefix that wraps a raw 32-byte Ed25519 public key (RFC 8410) for node:crypto. */
const SPKI_ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

// Unicode general category Cc (what Rust's `char::is_control` matches), and lone UTF-16
// surrogates, which have no UTF-8 form (a Rust `&str` cannot hold them).
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const CONTROL_BUT_NEWLINE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
// Rust's `str::trim` (Unicode White_Space); JavaScript's `trim` also strips U+FEFF, Rust's does not.
const WHITE_SPACE = "[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const RUST_TRIM = new RegExp(`^${WHITE_SPACE}+|${WHITE_SPACE}+$`, "g");

function keyHash(name: string, publicKey: Buffer): Buffer {
  return sha256(Buffer.from(`${name}\n`, "utf8"), Uint8Array.of(ED25519), publicKey).subarray(0, 4);
}

function checkKeyName(name: string): void {
  if (name === "" || /[+ \n]/.test(name) || CONTROL.test(name) || LONE_SURROGATE.test(name)) {
    throw new CheckpointError("key", "key name must be non-empty, without '+', spaces or control characters");
  }
}

function checkBody(body: string): void {
  if (!body.endsWith("\n")) {
    throw new CheckpointError("malformed", "note text must end with a newline");
  }
  if (body.includes("\n\n") || body.startsWith("\n")) {
    throw new CheckpointError("malformed", "note text must not contain an empty line");
  }
  if (CONTROL_BUT_NEWLINE.test(body) || LONE_SURROGATE.test(body)) {
    throw new CheckpointError("malformed", "note text must not contain control characters");
  }
}

// Ed25519 point decompression (RFC 8032 section 5.1.3), to refuse at parse time a key that is not
// a curve point, as the Rust side does (node:crypto loads any 32 bytes and only fails to verify).
const P = 2n ** 255n - 19n;

function modPow(base: bigint, exponent: bigint): bigint {
  let result = 1n;
  let b = ((base % P) + P) % P;
  let e = exponent;
  while (e > 0n) {
    if ((e & 1n) === 1n) {
      result = (result * b) % P;
    }
    b = (b * b) % P;
    e >>= 1n;
  }
  return result;
}

const D = (((-121665n * modPow(121666n, P - 2n)) % P) + P) % P;

/** True when the 32 bytes decode to a point: `(y^2 - 1) / (d y^2 + 1)` has a square root mod p. */
function isCurvePoint(publicKey: Buffer): boolean {
  let y = 0n;
  for (let i = 31; i >= 0; i--) {
    y = (y << 8n) | BigInt(publicKey[i] ?? 0);
  }
  y &= (1n << 255n) - 1n; // the top bit is the sign of x; like curve25519-dalek, y is taken mod p
  const yy = (y * y) % P;
  const u = (yy - 1n + P) % P;
  const v = (D * yy + 1n) % P; // never 0: -1/d is not a square
  const chi = modPow(u * v, (P - 1n) / 2n); // Euler's criterion on u/v (same character as u*v)
  return chi === 0n || chi === 1n;
}

/**
 * Checks notes signed by one Ed25519 key, named like the log it signs for. Read it from the
 * verifier key string `name+<8 hex digits of the key hash>+base64(0x01 || public key)`, the form
 * Go's `note.NewVerifier` reads.
 */
export class NoteVerifier {
  /** The key's name (the log's origin). */
  readonly name: string;
  /** First four bytes of `SHA-256(name || "\n" || 0x01 || public key)`. */
  readonly keyHash: Buffer;
  /** The raw 32-byte Ed25519 public key. */
  readonly publicKey: Buffer;
  private readonly key: KeyObject;

  private constructor(name: string, publicKey: Buffer) {
    this.name = name;
    this.publicKey = publicKey;
    this.keyHash = keyHash(name, publicKey);
    this.key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]), format: "der", type: "spki" });
  }

  /**
   * Reads a verifier key string (surrounding whitespace is ignored).
   * @throws CheckpointError (`key`) saying what is wrong with it.
   */
  static parse(vkey: string): NoteVerifier {
    if (typeof vkey !== "string") {
      throw new CheckpointError("key", "verifier key must be a string");
    }
    const text = vkey.replace(RUST_TRIM, "");
    const first = text.indexOf("+");
    const second = first < 0 ? -1 : text.indexOf("+", first + 1);
    if (second < 0) {
      throw new CheckpointError("key", "verifier key must be name+hash+key");
    }
    const name = text.slice(0, first);
    const hashHex = text.slice(first + 1, second);
    checkKeyName(name);
    const keyBytes = decodeBase64Strict(text.slice(second + 1));
    if (keyBytes === null) {
      throw new CheckpointError("key", "verifier key is not base64");
    }
    if (keyBytes.length === 0) {
      throw new CheckpointError("key", "verifier key is empty");
    }
    if (keyBytes[0] !== ED25519) {
      throw new CheckpointError("key", "verifier key is not an Ed25519 key");
    }
    const publicKey = keyBytes.subarray(1);
    if (publicKey.length !== 32) {
      throw new CheckpointError("key", "Ed25519 public key must be 32 bytes");
    }
    if (!isCurvePoint(publicKey)) {
      throw new CheckpointError("key", "invalid Ed25519 key");
    }
    const verifier = new NoteVerifier(name, Buffer.from(publicKey));
    if (verifier.keyHash.toString("hex") !== hashHex.toLowerCase()) {
      throw new CheckpointError("key", "verifier key hash does not match the key");
    }
    return verifier;
  }

  /** The verifier key string (`name+hash+base64`), as {@link NoteVerifier.parse} reads it. */
  toString(): string {
    const key = Buffer.concat([Uint8Array.of(ED25519), this.publicKey]).toString("base64");
    return `${this.name}+${this.keyHash.toString("hex")}+${key}`;
  }

  /**
   * Checks that `note` carries a valid signature by this key and returns its text (the signed
   * body, ending in a newline). Signature lines of other keys are allowed and ignored (witness
   * cosignatures, for instance).
   * @throws CheckpointError: `malformed` for a note that is not a signed note, `signature` when no
   * line is by this key or its signature does not verify.
   */
  open(note: string): string {
    if (typeof note !== "string") {
      throw new CheckpointError("malformed", "a signed note must be text");
    }
    const split = note.lastIndexOf("\n\n");
    if (split < 0) {
      throw new CheckpointError("malformed", "note has no signature block");
    }
    const body = note.slice(0, split + 1);
    const signatures = note.slice(split + 2);
    checkBody(body);
    if (!signatures.endsWith("\n")) {
      throw new CheckpointError("malformed", "signature block must end with a newline");
    }
    let foundName = false;
    for (const line of signatures.slice(0, -1).split("\n")) {
      if (!line.startsWith(SIGNATURE_PREFIX)) {
        throw new CheckpointError("malformed", "signature line must start with an em dash and a space");
      }
      const rest = line.slice(SIGNATURE_PREFIX.length);
      const space = rest.indexOf(" ");
      if (space < 0) {
        throw new CheckpointError("malformed", "signature line must be name and signature");
      }
      const name = rest.slice(0, space);
      const blob = decodeBase64Strict(rest.slice(space + 1));
      if (blob === null) {
        throw new CheckpointError("malformed", "signature is not base64");
      }
      if (name !== this.name || blob.length < 4 || !blob.subarray(0, 4).equals(this.keyHash)) {
        foundName ||= name === this.name;
        continue;
      }
      const signature = blob.subarray(4);
      if (signature.length !== 64) {
        throw new CheckpointError("signature", "signature is not 64 bytes");
      }
      let valid = false;
      try {
        valid = cryptoVerify(null, Buffer.from(body, "utf8"), this.key, signature);
      } catch {
        valid = false;
      }
      if (!valid) {
        throw new CheckpointError("signature", `the signature by ${this.name} does not verify`);
      }
      return body;
    }
    throw new CheckpointError(
      "signature",
      foundName ? `signed by a different key named ${this.name}` : `no signature by ${this.name}`,
    );
  }

  /**
   * Opens a signed checkpoint and checks its origin is this key's name.
   * @throws CheckpointError as {@link NoteVerifier.open} and {@link parseCheckpoint} do, and
   * `signature` when the checkpoint is for another log.
   */
  openCheckpoint(note: string): Checkpoint {
    const checkpoint = parseCheckpoint(this.open(note));
    if (checkpoint.origin !== this.name) {
      throw new CheckpointError(
        "signature",
        `checkpoint origin ${JSON.stringify(checkpoint.origin)} is not the key's log ${JSON.stringify(this.name)}`,
      );
    }
    return checkpoint;
  }
}

/**
 * Reads a checkpoint body: exactly three lines, each ending in a newline (origin, tree size in
 * decimal without leading zeros, root as standard base64 of 32 bytes). Extension lines are refused
 * (this log writes none). This does not check any signature: see {@link NoteVerifier.openCheckpoint}.
 * @throws CheckpointError (`malformed`).
 */
export function parseCheckpoint(body: string): Checkpoint {
  if (typeof body !== "string" || !body.endsWith("\n")) {
    throw new CheckpointError("malformed", "checkpoint body must end with a newline");
  }
  const lines = body.slice(0, -1).split("\n");
  if (lines.length !== 3) {
    throw new CheckpointError("malformed", "checkpoint body must have exactly three lines");
  }
  const [origin, sizeText, rootText] = lines as [string, string, string];
  if (origin === "") {
    throw new CheckpointError("malformed", "checkpoint origin is empty");
  }
  if (!/^(?:0|[1-9][0-9]*)$/.test(sizeText)) {
    throw new CheckpointError("malformed", "checkpoint tree size is not a decimal number");
  }
  if (BigInt(sizeText) > UINT64_MAX) {
    throw new CheckpointError("malformed", "checkpoint tree size is too large");
  }
  const root = decodeBase64Strict(rootText);
  if (root === null || root.length !== 32) {
    throw new CheckpointError("malformed", "checkpoint root is not 32 bytes of base64");
  }
  return { origin, size: integerFromText(sizeText), root };
}

// ---------------------------------------------------------------------------------------------
// Audit leaves
// ---------------------------------------------------------------------------------------------

/** The leaf format version this module reads. */
export const AUDIT_LEAF_VERSION = 1;

/** Where the submission was in the log. */
export interface AuditLeafSource {
  /** Submissions topic (with prefix). */
  topic: string;
  /** Partition. */
  partition: number;
  /** Offset (a `bigint` beyond 2^53). */
  offset: WireInteger;
}

/** One audit entry as a Merkle leaf (the JSON object the leaf bytes hold). */
export interface AuditLeaf {
  /** Decided at, ms since the epoch. */
  decided_at_ms: WireInteger;
  /** Relation to the first write of its (tenant, pcs_id): `first`, `duplicate`, `conflict`, `superseded` or `not_deduplicated`. */
  dedup: string;
  /** Hex of the audit chain entry's hash. */
  entry_hash: string;
  /** Verdict code of the decision. */
  outcome: string;
  /** Decisions partition (the audit chain). */
  partition: number;
  /** `pcs_id`, when the body decoded. */
  pcs_id: string | null;
  /** Region that decided. */
  region: string;
  /** Position in the partition's chain. */
  seq: WireInteger;
  /** Hex of SHA-256 of the canonical signing payload, when the signature was checked. */
  signed_digest: string | null;
  /** The submission's coordinates. */
  source: AuditLeafSource;
  /** Tenant. */
  tenant: string;
  /** Format version ({@link AUDIT_LEAF_VERSION}). */
  v: number;
}

/** Thrown by {@link decodeAuditLeaf}. */
export class AuditLeafError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AuditLeafError";
  }
}

const I32: readonly [bigint, bigint] = [-(2n ** 31n), 2n ** 31n - 1n];
const I64: readonly [bigint, bigint] = [-(2n ** 63n), 2n ** 63n - 1n];
const U32: readonly [bigint, bigint] = [0n, 2n ** 32n - 1n];

/**
 * Integer text as serde reads it for an integer field: no fraction or exponent, and not `-0`
 * (which serde_json reads as a float).
 */
function exactInteger(value: JsonValue | undefined, [min, max]: readonly [bigint, bigint]): bigint | null {
  if (!(value instanceof JsonNumber) || !/^-?(?:0|[1-9][0-9]*)$/.test(value.raw) || value.raw === "-0") {
    return null;
  }
  const big = BigInt(value.raw);
  return big >= min && big <= max ? big : null;
}

/** Reads one typed record the way serde does with `deny_unknown_fields`. */
class LeafReader {
  constructor(
    private readonly fields: JsonObject,
    private readonly where: string,
    allowed: readonly string[],
  ) {
    for (const key of Object.keys(fields)) {
      if (!allowed.includes(key)) {
        this.fail(`unknown field \`${key}\``);
      }
    }
  }

  fail(message: string): never {
    throw new AuditLeafError(`${this.where}: ${message}`);
  }

  private present(key: string): JsonValue {
    const value = this.fields[key];
    if (value === undefined) {
      this.fail(`missing field \`${key}\``);
    }
    return value;
  }

  string(key: string): string {
    const value = this.present(key);
    if (typeof value !== "string") {
      this.fail(`\`${key}\` must be a string`);
    }
    return value;
  }

  /** `Option<String>`: absent or null is null. */
  optionalString(key: string): string | null {
    const value = this.fields[key];
    if (value === undefined || value === null) {
      return null;
    }
    if (typeof value !== "string") {
      this.fail(`\`${key}\` must be a string or null`);
    }
    return value;
  }

  integer(key: string, range: readonly [bigint, bigint]): bigint {
    const value = exactInteger(this.present(key), range);
    if (value === null) {
      this.fail(`\`${key}\` must be an integer in [${range[0]}, ${range[1]}]`);
    }
    return value;
  }

  object(key: string): JsonObject {
    const value = this.present(key);
    if (!isJsonObject(value)) {
      this.fail(`\`${key}\` must be an object`);
    }
    return value;
  }
}

function wire(value: bigint): WireInteger {
  return integerFromText(value.toString());
}

/**
 * Reads leaf bytes: one JSON object with exactly the leaf's fields (unknown or repeated fields,
 * wrong types and other versions are refused). The bytes are only parsed, never re-serialized:
 * the leaf hash is over the bytes as served.
 * @throws AuditLeafError saying what is wrong.
 */
export function decodeAuditLeaf(bytes: Uint8Array): AuditLeaf {
  let value: JsonValue;
  try {
    // ignoreBOM keeps a byte order mark in the text, so the parser refuses it as serde_json does.
    const text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
    value = parseJson(text, { rejectDuplicateKeys: true });
  } catch (error) {
    if (error instanceof JsonSyntaxError) {
      throw new AuditLeafError(`leaf is not JSON: ${error.message}`);
    }
    if (error instanceof TypeError) {
      throw new AuditLeafError("leaf is not UTF-8");
    }
    throw error;
  }
  if (!isJsonObject(value)) {
    throw new AuditLeafError("leaf is not a JSON object");
  }
  const reader = new LeafReader(value, "leaf", [
    "decided_at_ms",
    "dedup",
    "entry_hash",
    "outcome",
    "partition",
    "pcs_id",
    "region",
    "seq",
    "signed_digest",
    "source",
    "tenant",
    "v",
  ]);
  const source = new LeafReader(reader.object("source"), "leaf source", ["topic", "partition", "offset"]);
  const leaf: AuditLeaf = {
    decided_at_ms: wire(reader.integer("decided_at_ms", I64)),
    dedup: reader.string("dedup"),
    entry_hash: reader.string("entry_hash"),
    outcome: reader.string("outcome"),
    partition: Number(reader.integer("partition", I32)),
    pcs_id: reader.optionalString("pcs_id"),
    region: reader.string("region"),
    seq: wire(reader.integer("seq", I64)),
    signed_digest: reader.optionalString("signed_digest"),
    source: {
      topic: source.string("topic"),
      partition: Number(source.integer("partition", I32)),
      offset: wire(source.integer("offset", I64)),
    },
    tenant: reader.string("tenant"),
    v: Number(reader.integer("v", U32)),
  };
  if (leaf.v !== AUDIT_LEAF_VERSION) {
    throw new AuditLeafError(`leaf version ${leaf.v} is not ${AUDIT_LEAF_VERSION}`);
  }
  return leaf;
}

// ---------------------------------------------------------------------------------------------
// Proof bundles
// ---------------------------------------------------------------------------------------------

/** What the proof API returns for one entry. */
export interface ProofBundle {
  /** The signed checkpoint (a C2SP signed note). */
  checkpoint: string;
  /** The leaf's global index. */
  leaf_index: WireInteger;
  /** The tree size the proof is for (the checkpoint's). */
  tree_size: WireInteger;
  /** Base64 of the leaf bytes. */
  entry: string;
  /** Base64 of each hash of the RFC 9162 inclusion proof, leaf side first. */
  inclusion: readonly string[];
}

/** The checks of {@link verifyBundle}, in the order they run; a failure is named by the first. */
export type BundleErrorKind = "checkpoint" | "entry" | "inclusion" | "record";

/** The first check a bundle failed; the message starts with the kind. */
export class BundleError extends Error {
  /**
   * `checkpoint`: not signed by the trusted key (or malformed, or for another log); `entry`: the
   * entry is not an audit leaf; `inclusion`: the proof does not tie the entry to the checkpoint;
   * `record`: the logged entry is not the given record.
   */
  readonly kind: BundleErrorKind;

  constructor(kind: BundleErrorKind, message: string, options?: { cause?: unknown }) {
    super(`${kind}: ${message}`, options);
    this.name = "BundleError";
    this.kind = kind;
  }
}

/** What a verified bundle proves: the signed checkpoint and the logged leaf. */
export interface VerifiedBundle {
  checkpoint: Checkpoint;
  leaf: AuditLeaf;
}

function bundleInteger(value: unknown, key: string): WireInteger {
  let big: bigint | null = null;
  if (value instanceof JsonNumber) {
    big = exactInteger(value, [0n, UINT64_MAX]);
  } else if (typeof value === "bigint") {
    big = value >= 0n && value <= UINT64_MAX ? value : null;
  } else if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) {
    big = BigInt(value);
  }
  if (big === null) {
    throw new TypeError(`malformed proof bundle: \`${key}\` must be an integer in [0, 2^64) (a bigint beyond 2^53)`);
  }
  return wire(big);
}

/**
 * Checks the shape of a bundle: from {@link parseJson} (exact integers), from `JSON.parse`, or
 * built by hand. Unknown keys are ignored.
 * @throws TypeError naming the first key that is missing or of the wrong type.
 */
export function proofBundleFromJson(value: unknown): ProofBundle {
  if (typeof value !== "object" || value === null || Array.isArray(value) || value instanceof JsonNumber) {
    throw new TypeError("malformed proof bundle: not an object");
  }
  const record = value as Record<string, unknown>;
  const text = (key: string): string => {
    const item = record[key];
    if (typeof item !== "string") {
      throw new TypeError(`malformed proof bundle: \`${key}\` must be a string`);
    }
    return item;
  };
  const inclusion = record["inclusion"];
  if (!Array.isArray(inclusion) || !inclusion.every((item) => typeof item === "string")) {
    throw new TypeError("malformed proof bundle: `inclusion` must be a list of strings");
  }
  return {
    checkpoint: text("checkpoint"),
    leaf_index: bundleInteger(record["leaf_index"], "leaf_index"),
    tree_size: bundleInteger(record["tree_size"], "tree_size"),
    entry: text("entry"),
    inclusion: [...(inclusion as string[])],
  };
}

/**
 * Reads a bundle from JSON text (integers beyond 2^53 stay exact; a repeated key is refused).
 * @throws TypeError when the text is not JSON or not a bundle.
 */
export function decodeProofBundle(text: string): ProofBundle {
  let value: JsonValue;
  try {
    value = parseJson(text, { rejectDuplicateKeys: true });
  } catch (error) {
    if (error instanceof JsonSyntaxError) {
      throw new TypeError(`malformed proof bundle: ${error.message}`);
    }
    throw error;
  }
  return proofBundleFromJson(value);
}

function bigintOf(value: WireInteger): bigint {
  return typeof value === "bigint" ? value : BigInt(value);
}

/**
 * Checks, offline, that a bundle proves its entry is in the log `verifier` signs for and, when a
 * record is given, that the entry is that record. The checks run in this order and the first
 * failure is thrown as a {@link BundleError} of its kind:
 *
 * 1. `checkpoint`: the note carries a valid signature by the trusted key and its origin is the
 *    key's log;
 * 2. `entry`: the entry is base64 of an audit leaf;
 * 3. `inclusion`: the bundle's tree size is the checkpoint's and the proof leads from
 *    `SHA-256(0x00 || entry)` at the leaf index to the checkpoint's root;
 * 4. `record` (only when a record is given): the leaf's `pcs_id` is the record's and its
 *    `signed_digest` is the hex SHA-256 of the record's canonical signing payload.
 *
 * @param verifier the log's key, parsed or as its verifier key string.
 * @param record the 8 signed fields (a decoded `Pcs` will do), or null/undefined to skip check 4.
 * @returns the signed checkpoint and the logged leaf.
 * @throws BundleError for a bundle that fails a check; TypeError for a bundle that is not shaped
 * like one (see {@link proofBundleFromJson}) or a record whose fields cannot be signed;
 * CheckpointError (`key`) for a verifier key string that cannot be read. Those last three are the
 * caller's input, not the log's answer, so they are not bundle failures.
 */
export function verifyBundle(
  bundle: ProofBundle,
  verifier: NoteVerifier | string,
  record?: SignedFields | null,
): VerifiedBundle {
  const shaped = proofBundleFromJson(bundle);
  const key = verifier instanceof NoteVerifier ? verifier : NoteVerifier.parse(verifier);
  // Computed first so a record that cannot be signed is reported as such, whatever the bundle.
  const recordDigest = record == null ? null : sha256(canonicalPayloadBytes(record)).toString("hex");

  let checkpoint: Checkpoint;
  try {
    checkpoint = key.openCheckpoint(shaped.checkpoint);
  } catch (error) {
    if (error instanceof CheckpointError) {
      throw new BundleError("checkpoint", error.message, { cause: error });
    }
    throw error;
  }

  const entry = decodeBase64Strict(shaped.entry);
  if (entry === null) {
    throw new BundleError("entry", "entry is not base64");
  }
  let leaf: AuditLeaf;
  try {
    leaf = decodeAuditLeaf(entry);
  } catch (error) {
    if (error instanceof AuditLeafError) {
      throw new BundleError("entry", error.message, { cause: error });
    }
    throw error;
  }

  if (bigintOf(shaped.tree_size) !== bigintOf(checkpoint.size)) {
    throw new BundleError(
      "inclusion",
      `proof is for tree size ${shaped.tree_size} but the checkpoint is for ${checkpoint.size}`,
    );
  }
  try {
    const proof = decodeHashes(shaped.inclusion);
    verifyInclusion(leafHash(entry), shaped.leaf_index, checkpoint.size, proof, checkpoint.root);
  } catch (error) {
    if (error instanceof MerkleProofError) {
      throw new BundleError("inclusion", error.message, { cause: error });
    }
    throw error;
  }

  if (record != null) {
    if (leaf.pcs_id !== record.pcs_id) {
      throw new BundleError(
        "record",
        `the log holds pcs_id ${JSON.stringify(leaf.pcs_id)}, the record is ${JSON.stringify(record.pcs_id)}`,
      );
    }
    if (leaf.signed_digest !== recordDigest) {
      throw new BundleError(
        "record",
        "the logged signed digest is not the record's (a different record under this pcs_id)",
      );
    }
  }
  return { checkpoint, leaf };
}
