/**
 * Offline audit proofs: every case of the shared file tests/vectors/audit-vectors.json (format 1,
 * see its README), judged exactly as the Rust `events` crate judges it, then the RFC 9162 proof
 * definitions over small trees and malformed input of every kind (clear errors, never a crash).
 * While the vector file does not exist the vector suite is skipped, like pcs-vectors.json's.
 */
import assert from "node:assert/strict";
import { createHash, sign as cryptoSign } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";

import {
  AuditLeafError,
  BundleError,
  CheckpointError,
  decodeAuditLeaf,
  decodeHashes,
  decodeProofBundle,
  emptyRoot,
  leafHash,
  MerkleProofError,
  nodeHash,
  NoteVerifier,
  parseCheckpoint,
  proofBundleFromJson,
  verifyBundle,
  verifyConsistency,
  verifyInclusion,
  type BundleErrorKind,
  type CheckpointErrorKind,
  type MerkleProofErrorKind,
  type ProofBundle,
} from "../src/audit.js";
import { canonicalPayload, type SignedFields } from "../src/canonical.js";
import { signedFieldsFromJson } from "../src/decode.js";
import { integerFromText, type WireInteger } from "../src/epoch.js";
import { JsonNumber, parseJson, stringifyJson, type JsonObject, type JsonValue } from "../src/json.js";
import { ed25519PrivateKey, ed25519PublicKey } from "../src/signing.js";
import { array, AUDIT_VECTOR_FILE, AUDIT_VECTOR_SHA_FILE, object, text } from "./fixtures.js";

const PRESENT = existsSync(AUDIT_VECTOR_FILE);
const SKIP = PRESENT ? false : `${AUDIT_VECTOR_FILE} not written yet`;

function integer(value: JsonValue | undefined, what: string): WireInteger {
  assert.ok(value instanceof JsonNumber && value.isIntegerLiteral, `${what} must be an integer`);
  return integerFromText(value.raw);
}

function bool(value: JsonValue | undefined, what: string): boolean {
  assert.equal(typeof value, "boolean", `${what} must be a boolean`);
  return value as boolean;
}

function strings(value: JsonValue | undefined, what: string): string[] {
  return array(value, what).map((item, i) => text(item, `${what}[${i}]`));
}

function caseName(entry: JsonObject, index: number): string {
  const name = entry["name"];
  return typeof name === "string" ? name : `#${index}`;
}

function fromB64(value: string): Buffer {
  return Buffer.from(value, "base64");
}

/** The error a call throws (fails the test when it returns). */
function thrown(fn: () => unknown, what: string): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  assert.fail(`${what}: expected an error`);
}

function merkleKind(fn: () => void, what: string): MerkleProofErrorKind | "ok" {
  try {
    fn();
    return "ok";
  } catch (error) {
    assert.ok(error instanceof MerkleProofError, `${what}: expected MerkleProofError, got ${String(error)}`);
    return error.kind;
  }
}

function checkpointKind(fn: () => unknown, what: string): CheckpointErrorKind {
  const error = thrown(fn, what);
  assert.ok(error instanceof CheckpointError, `${what}: expected CheckpointError, got ${String(error)}`);
  assert.ok(error.message.startsWith(`${error.kind}: `), `${what}: message names its kind`);
  return error.kind;
}

function bundleKind(fn: () => unknown, what: string): BundleErrorKind | "ok" {
  try {
    fn();
    return "ok";
  } catch (error) {
    assert.ok(error instanceof BundleError, `${what}: expected BundleError, got ${String(error)}`);
    assert.ok(error.message.startsWith(`${error.kind}: `), `${what}: message names its kind`);
    return error.kind;
  }
}

// ---------------------------------------------------------------------------------------------
// RFC 6962 / 9162 definitions, written straight from the RFC as an oracle for the verifiers.
// ---------------------------------------------------------------------------------------------

function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** MTH(D[n]) over leaf hashes. */
function mth(leaves: readonly Buffer[]): Buffer {
  if (leaves.length === 0) return emptyRoot();
  if (leaves.length === 1) return leaves[0] as Buffer;
  const k = split(leaves.length);
  return nodeHash(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

/** PATH(m, D[n]) (RFC 9162 section 2.1.3.1). */
function path(m: number, leaves: readonly Buffer[]): Buffer[] {
  if (leaves.length <= 1) return [];
  const k = split(leaves.length);
  return m < k
    ? [...path(m, leaves.slice(0, k)), mth(leaves.slice(k))]
    : [...path(m - k, leaves.slice(k)), mth(leaves.slice(0, k))];
}

/** SUBPROOF(m, D[n], b) (RFC 9162 section 2.1.4.1). */
function subproof(m: number, leaves: readonly Buffer[], complete: boolean): Buffer[] {
  if (m === leaves.length) return complete ? [] : [mth(leaves)];
  const k = split(leaves.length);
  return m <= k
    ? [...subproof(m, leaves.slice(0, k), complete), mth(leaves.slice(k))]
    : [...subproof(m - k, leaves.slice(k), false), mth(leaves.slice(0, k))];
}

function testLeaves(n: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => leafHash(Buffer.from(`flk test leaf ${i}`, "utf8")));
}

// ---------------------------------------------------------------------------------------------
// A signer for notes the vector file does not have (same format as the Rust NoteSigner).
// ---------------------------------------------------------------------------------------------

class TestSigner {
  readonly vkey: string;
  private readonly hash: Buffer;

  constructor(
    readonly name: string,
    private readonly seed: Uint8Array,
  ) {
    const publicKey = fromB64(ed25519PublicKey(seed));
    const prefixed = Buffer.concat([Uint8Array.of(1), publicKey]);
    this.hash = createHash("sha256").update(`${name}\n`).update(prefixed).digest().subarray(0, 4);
    this.vkey = `${name}+${this.hash.toString("hex")}+${prefixed.toString("base64")}`;
  }

  line(body: string): string {
    const signature = cryptoSign(null, Buffer.from(body, "utf8"), ed25519PrivateKey(this.seed));
    return `\u2014 ${this.name} ${Buffer.concat([this.hash, signature]).toString("base64")}\n`;
  }

  sign(body: string): string {
    return `${body}\n${this.line(body)}`;
  }
}

const ROOT_9 = Buffer.alloc(32, 9).toString("base64");
const A = new TestSigner("flk.test/local", new Uint8Array(32).fill(7));

// ---------------------------------------------------------------------------------------------
// The shared vectors
// ---------------------------------------------------------------------------------------------

function loadVectors(): JsonObject {
  const bytes = readFileSync(AUDIT_VECTOR_FILE);
  const root = object(parseJson(new TextDecoder("utf-8", { fatal: true }).decode(bytes)), "audit vector file");
  assert.equal(integer(root["format"], "format"), 1, "only format 1 is understood");
  return root;
}

it("shared audit vector file is present", { skip: SKIP }, () => {
  assert.ok(existsSync(AUDIT_VECTOR_SHA_FILE), "audit-vectors.json exists without its .sha256");
});

describe("shared audit vector file", { skip: SKIP }, () => {
  // Loaded lazily so a missing file skips instead of failing at import.
  const root = PRESENT ? loadVectors() : (Object.create(null) as JsonObject);
  const cases = (value: JsonValue | undefined, name: string): JsonObject[] =>
    array(value, name).map((entry, i) => object(entry, `${name}[${i}]`));

  it("matches its pinned SHA-256", () => {
    const pinned = readFileSync(AUDIT_VECTOR_SHA_FILE, "utf8");
    const match = /^([0-9a-f]{64}) {2}audit-vectors\.json\n?$/.exec(pinned);
    assert.ok(match, `unexpected .sha256 line: ${JSON.stringify(pinned)}`);
    const actual = createHash("sha256").update(readFileSync(AUDIT_VECTOR_FILE)).digest("hex");
    assert.equal(actual, match[1], "audit-vectors.json changed without its .sha256 (regenerate both)");
  });

  it("has every section, none empty", () => {
    for (const name of ["roots", "inclusion", "consistency"]) {
      assert.ok(cases(root[name], name).length > 0, `${name} is empty`);
    }
    const hashing = object(root["hashing"], "hashing");
    assert.ok(cases(hashing["leaves"], "hashing.leaves").length > 0, "hashing.leaves is empty");
    for (const name of ["checkpoints", "bundles"]) {
      assert.ok(cases(object(root[name], name)["cases"], `${name}.cases`).length > 0, `${name} is empty`);
    }
  });

  it("hashing: empty root, leaf hashes, node hash", () => {
    const hashing = object(root["hashing"], "hashing");
    assert.equal(emptyRoot().toString("base64"), text(hashing["empty_root"], "empty_root"));
    for (const [i, entry] of cases(hashing["leaves"], "hashing.leaves").entries()) {
      const bytes = fromB64(text(entry["entry"], `leaves[${i}].entry`));
      assert.equal(leafHash(bytes).toString("base64"), text(entry["leaf_hash"], `leaves[${i}].leaf_hash`), `leaf ${i}`);
    }
    const node = object(hashing["node"], "hashing.node");
    const got = nodeHash(text(node["left"], "node.left"), text(node["right"], "node.right"));
    assert.equal(got.toString("base64"), text(node["hash"], "node.hash"));
    // Raw bytes and base64 text are the same hash.
    assert.ok(nodeHash(fromB64(text(node["left"], "l")), fromB64(text(node["right"], "r"))).equals(got));
  });

  it("roots: leaf i is 'flk test leaf <i>'", () => {
    const entries = cases(root["roots"], "roots");
    const sizes = entries.map((entry, i) => Number(integer(entry["size"], `roots[${i}].size`)));
    const leaves = testLeaves(Math.max(...sizes));
    for (const [i, entry] of entries.entries()) {
      const size = sizes[i] as number;
      assert.equal(mth(leaves.slice(0, size)).toString("base64"), text(entry["root"], `roots[${i}].root`), `size ${size}`);
    }
  });

  it("inclusion: every case judged as recorded", () => {
    for (const [i, entry] of cases(root["inclusion"], "inclusion").entries()) {
      const name = caseName(entry, i);
      const leaf = leafHash(fromB64(text(entry["entry"], `${name}.entry`)));
      const got = merkleKind(
        () =>
          verifyInclusion(
            leaf,
            integer(entry["index"], `${name}.index`),
            integer(entry["size"], `${name}.size`),
            decodeHashes(strings(entry["proof"], `${name}.proof`)),
            fromB64(text(entry["root"], `${name}.root`)),
          ),
        name,
      );
      const valid = bool(entry["valid"], `${name}.valid`);
      assert.equal(got === "ok", valid, `${name}: ${got}`);
      if (!valid) assert.notEqual(got, "malformed", `${name}: refused for the right reason`);
    }
  });

  it("consistency: every case judged as recorded", () => {
    for (const [i, entry] of cases(root["consistency"], "consistency").entries()) {
      const name = caseName(entry, i);
      const got = merkleKind(
        () =>
          verifyConsistency(
            integer(entry["old_size"], `${name}.old_size`),
            integer(entry["new_size"], `${name}.new_size`),
            text(entry["old_root"], `${name}.old_root`),
            text(entry["new_root"], `${name}.new_root`),
            strings(entry["proof"], `${name}.proof`),
          ),
        name,
      );
      const valid = bool(entry["valid"], `${name}.valid`);
      assert.equal(got === "ok", valid, `${name}: ${got}`);
      if (!valid) assert.notEqual(got, "malformed", `${name}: refused for the right reason`);
    }
  });

  it("checkpoints: every note opened or refused as recorded", () => {
    const section = object(root["checkpoints"], "checkpoints");
    const vkey = text(section["verifier_key"], "checkpoints.verifier_key");
    const verifier = NoteVerifier.parse(vkey);
    assert.equal(verifier.name, text(section["origin"], "checkpoints.origin"));
    assert.equal(String(verifier), vkey, "the key string round-trips");
    for (const [i, entry] of cases(section["cases"], "checkpoints.cases").entries()) {
      const name = caseName(entry, i);
      const note = text(entry["note"], `${name}.note`);
      if (bool(entry["valid"], `${name}.valid`)) {
        const checkpoint = verifier.openCheckpoint(note);
        assert.equal(checkpoint.origin, verifier.name, name);
        assert.equal(checkpoint.size, integer(entry["size"], `${name}.size`), name);
        assert.equal(checkpoint.root.toString("base64"), text(entry["root"], `${name}.root`), name);
      } else {
        checkpointKind(() => verifier.openCheckpoint(note), name);
      }
    }
  });

  const bundles = (): { verifierKey: string; entries: JsonObject[]; payload: string } => {
    const section = object(root["bundles"], "bundles");
    return {
      verifierKey: text(section["verifier_key"], "bundles.verifier_key"),
      entries: cases(section["cases"], "bundles.cases"),
      payload: text(section["record_payload"], "bundles.record_payload"),
    };
  };
  const recordOf = (entry: JsonObject, name: string): SignedFields | null => {
    const record = entry["record"];
    return record === null || record === undefined ? null : signedFieldsFromJson(object(record, `${name}.record`));
  };

  it("bundles: every bundle gives the recorded first failing check", () => {
    const { verifierKey, entries, payload } = bundles();
    const verifier = NoteVerifier.parse(verifierKey);
    for (const [i, entry] of entries.entries()) {
      const name = caseName(entry, i);
      const bundle = proofBundleFromJson(object(entry["bundle"], `${name}.bundle`));
      const record = recordOf(entry, name);
      const expect = text(entry["expect"], `${name}.expect`);
      assert.equal(bundleKind(() => verifyBundle(bundle, verifier, record), name), expect, name);
      // The key as its string, and the same bundle read from JSON text, judge alike.
      const fromText = decodeProofBundle(stringifyJson(entry["bundle"]));
      assert.equal(bundleKind(() => verifyBundle(fromText, verifierKey, record), name), expect, `${name} (from text)`);
      if (expect === "ok") {
        const { checkpoint, leaf } = verifyBundle(bundle, verifier, record);
        assert.equal(checkpoint.size, bundle.tree_size);
        const entryBytes = fromB64(bundle.entry);
        assert.deepEqual(leaf, decodeAuditLeaf(entryBytes));
        if (record !== null) {
          assert.equal(canonicalPayload(record), payload, `${name}: record_payload`);
          assert.equal(leaf.pcs_id, record.pcs_id);
          assert.equal(leaf.signed_digest, createHash("sha256").update(payload).digest("hex"));
        }
      }
    }
  });

  it("bundles: plain JSON.parse objects work as bundles", () => {
    const document = JSON.parse(readFileSync(AUDIT_VECTOR_FILE, "utf8")) as {
      bundles: { verifier_key: string; cases: Array<{ name: string; bundle: ProofBundle; record: SignedFields | null; expect: string }> };
    };
    for (const entry of document.bundles.cases) {
      assert.equal(bundleKind(() => verifyBundle(entry.bundle, document.bundles.verifier_key, entry.record), entry.name), entry.expect, entry.name);
    }
  });

  // Cases the file does not have, built from its valid bundle.
  describe("bundle failures beyond the file", () => {
    const valid = (): { bundle: ProofBundle; record: SignedFields; verifier: NoteVerifier; leafText: string } => {
      const { verifierKey, entries } = bundles();
      const entry = entries.find((item) => item["expect"] === "ok" && item["record"] !== null);
      assert.ok(entry, "the file has a valid bundle with a record");
      const bundle = proofBundleFromJson(object(entry["bundle"], "bundle"));
      const record = recordOf(entry, "valid");
      assert.ok(record !== null);
      return { bundle, record, verifier: NoteVerifier.parse(verifierKey), leafText: fromB64(bundle.entry).toString("utf8") };
    };
    const withEntry = (bundle: ProofBundle, leafText: string): ProofBundle => ({
      ...bundle,
      entry: Buffer.from(leafText, "utf8").toString("base64"),
    });

    it("checkpoint: not a signed note, or for another key", () => {
      const { bundle, record, verifier } = valid();
      for (const checkpoint of ["", "garbage", bundle.checkpoint.replace("\u2014", "-"), A.sign(parseCheckpointBody(bundle.checkpoint))]) {
        assert.equal(bundleKind(() => verifyBundle({ ...bundle, checkpoint }, verifier, record), checkpoint), "checkpoint");
      }
      // The checkpoint check comes first: a broken entry and proof do not change the answer.
      const everything = { ...bundle, checkpoint: "garbage", entry: "!", inclusion: ["!"], tree_size: 1 };
      assert.equal(bundleKind(() => verifyBundle(everything, verifier, record), "all broken"), "checkpoint");
    });

    it("entry: not base64, not a leaf (unknown, repeated, mistyped fields, other version)", () => {
      const { bundle, record, verifier, leafText } = valid();
      const leaves = [
        "",
        "[]",
        "{}",
        leafText.replace('"v":1', '"v":2'),
        leafText.replace('"v":1', '"v":1.0'),
        leafText.replace('"seq":0', '"seq":-0'),
        leafText.replace('"seq":0', '"seq":"0"'),
        leafText.replace('"partition":2,"pcs_id"', '"partition":2147483648,"pcs_id"'),
        leafText.replace('"tenant"', '"extra":1,"tenant"'),
        leafText.replace('"tenant":"alpha"', '"tenant":"alpha","tenant":"beta"'),
        leafText.replace('"offset":0', '"offset":0,"more":true'),
        leafText.replace(/,"region":"local"/, ""),
        `\ufeff${leafText}`,
        leafText.replace('"local"', '"lo\\ud800cal"'),
      ];
      for (const leaf of leaves) {
        assert.equal(bundleKind(() => verifyBundle(withEntry(bundle, leaf), verifier, record), leaf), "entry", leaf);
      }
      for (const entry of ["not base64!", "eyJ9", "eyJ9=", Buffer.from([0xff, 0xfe]).toString("base64")]) {
        assert.equal(bundleKind(() => verifyBundle({ ...bundle, entry }, verifier, record), entry), "entry", entry);
      }
    });

    it("inclusion: other bytes of the same leaf, other size, bad proof hashes, index out of range", () => {
      const { bundle, record, verifier, leafText } = valid();
      // Parsed, the leaf is the same; hashed, it is not: verifiers hash the bytes as served.
      const spaced = leafText.replace('"v":1', '"v": 1');
      assert.deepEqual(decodeAuditLeaf(Buffer.from(spaced)), decodeAuditLeaf(Buffer.from(leafText)));
      const variants: Array<[string, ProofBundle]> = [
        ["same leaf, other bytes", withEntry(bundle, spaced)],
        ["tree size differs from the checkpoint's", { ...bundle, tree_size: bigintPlus(bundle.tree_size, 1) }],
        ["proof hash not base64", { ...bundle, inclusion: ["not base64!", ...bundle.inclusion.slice(1)] }],
        ["proof hash of 31 bytes", { ...bundle, inclusion: [Buffer.alloc(31).toString("base64"), ...bundle.inclusion.slice(1)] }],
        ["proof too long", { ...bundle, inclusion: [...bundle.inclusion, ROOT_9] }],
        ["empty proof", { ...bundle, inclusion: [] }],
        ["other index", { ...bundle, leaf_index: 4 }],
        ["index beyond size", { ...bundle, leaf_index: bundle.tree_size }],
        ["index beyond 2^53", { ...bundle, leaf_index: 2n ** 60n }],
      ];
      for (const [name, variant] of variants) {
        assert.equal(bundleKind(() => verifyBundle(variant, verifier, record), name), "inclusion", name);
      }
    });

    it("record: another pcs_id, or a leaf without one", () => {
      const { bundle, record, verifier, leafText } = valid();
      const error = thrown(() => verifyBundle(bundle, verifier, { ...record, pcs_id: "other" }), "other pcs_id");
      assert.ok(error instanceof BundleError && error.kind === "record" && error.message.includes("pcs_id"), String(error));
      // A leaf without pcs_id (an undecodable body) is in the log but is no record's entry. Its
      // bytes are not in the tree, so this is judged on a proof built for it.
      const bare = leafText.replace(/"pcs_id":"[0-9a-f]+"/, '"pcs_id":null');
      const leaf = decodeAuditLeaf(Buffer.from(bare));
      assert.equal(leaf.pcs_id, null);
      const signer = new TestSigner("flk.test/local", new Uint8Array(32).fill(1));
      const single = leafHash(Buffer.from(bare));
      const note = signer.sign(`flk.test/local\n1\n${single.toString("base64")}\n`);
      const lone: ProofBundle = { checkpoint: note, leaf_index: 0, tree_size: 1, entry: Buffer.from(bare).toString("base64"), inclusion: [] };
      assert.equal(bundleKind(() => verifyBundle(lone, signer.vkey, null), "no record"), "ok");
      assert.equal(bundleKind(() => verifyBundle(lone, signer.vkey, record), "leaf without pcs_id"), "record");
    });

    it("the caller's own input is not a bundle failure", () => {
      const { bundle, record, verifier } = valid();
      const shapes: unknown[] = [
        null,
        "bundle",
        [],
        { ...bundle, leaf_index: -1 },
        { ...bundle, leaf_index: "5" },
        { ...bundle, leaf_index: 1.5 },
        { ...bundle, tree_size: 2 ** 60 },
        { ...bundle, tree_size: 2n ** 64n },
        { ...bundle, checkpoint: undefined },
        { ...bundle, inclusion: "proof" },
        { ...bundle, inclusion: [1, 2] },
      ];
      for (const shape of shapes) {
        const error = thrown(() => verifyBundle(shape as ProofBundle, verifier, record), String(shape));
        assert.ok(error instanceof TypeError && /malformed proof bundle/.test(error.message), String(error));
      }
      assert.equal(checkpointKind(() => verifyBundle(bundle, "not a key", record), "bad key string"), "key");
      const badRecord = { ...record, D_hat: Number.NaN };
      assert.ok(thrown(() => verifyBundle(bundle, verifier, badRecord), "NaN record") instanceof TypeError);
    });
  });
});

function bigintPlus(value: WireInteger, n: number): WireInteger {
  return typeof value === "bigint" ? value + BigInt(n) : value + n;
}

/** The body of a signed note (up to and including the line before the empty one). */
function parseCheckpointBody(note: string): string {
  return note.slice(0, note.lastIndexOf("\n\n") + 1);
}

// ---------------------------------------------------------------------------------------------
// The RFC definitions over small trees
// ---------------------------------------------------------------------------------------------

describe("Merkle proofs against the RFC 9162 definitions", () => {
  const leaves = testLeaves(40);
  const roots = Array.from({ length: leaves.length + 1 }, (_, n) => mth(leaves.slice(0, n)));

  it("every inclusion proof of every leaf of trees up to 40 verifies, and nothing else does", () => {
    for (let n = 1; n <= leaves.length; n++) {
      const root = roots[n] as Buffer;
      for (let m = 0; m < n; m++) {
        const proof = path(m, leaves.slice(0, n));
        const leaf = leaves[m] as Buffer;
        assert.equal(merkleKind(() => verifyInclusion(leaf, m, n, proof, root), `${m}/${n}`), "ok", `${m} in ${n}`);
        assert.equal(merkleKind(() => verifyInclusion(leaf, BigInt(m), BigInt(n), proof, root), "bigint"), "ok");
        const other = leaves[(m + 1) % n] as Buffer;
        if (n > 1) {
          assert.equal(merkleKind(() => verifyInclusion(other, m, n, proof, root), "other leaf"), "mismatch");
          assert.equal(merkleKind(() => verifyInclusion(leaf, m, n, proof.slice(1), root), "short"), "mismatch");
        }
        assert.equal(merkleKind(() => verifyInclusion(leaf, m, n, [...proof, root], root), "long"), "mismatch");
      }
      assert.equal(merkleKind(() => verifyInclusion(leaves[0] as Buffer, n, n, [], root), "beyond"), "out_of_range");
    }
  });

  it("every consistency proof between trees up to 40 verifies, and nothing else does", () => {
    for (let n = 0; n <= leaves.length; n++) {
      for (let m = 0; m <= n; m++) {
        const proof = m === 0 ? [] : subproof(m, leaves.slice(0, n), true);
        const [oldRoot, newRoot] = [roots[m] as Buffer, roots[n] as Buffer];
        assert.equal(merkleKind(() => verifyConsistency(m, n, oldRoot, newRoot, proof), `${m}->${n}`), "ok", `${m} -> ${n}`);
        if (m > 0 && m < n) {
          const wrong = nodeHash(oldRoot, oldRoot);
          assert.equal(merkleKind(() => verifyConsistency(m, n, wrong, newRoot, proof), "old"), "mismatch");
          assert.equal(merkleKind(() => verifyConsistency(m, n, oldRoot, wrong, proof), "new"), "mismatch");
          assert.equal(merkleKind(() => verifyConsistency(m, n, oldRoot, newRoot, []), "empty"), "mismatch");
          assert.equal(merkleKind(() => verifyConsistency(m, n, oldRoot, newRoot, [...proof, wrong]), "long"), "mismatch");
          assert.equal(merkleKind(() => verifyConsistency(m, n, oldRoot, newRoot, proof.slice(0, -1)), "short"), "mismatch");
          assert.equal(merkleKind(() => verifyConsistency(n, m, newRoot, oldRoot, proof), "reversed"), "out_of_range");
        }
      }
    }
  });

  it("edge rules: equal sizes, the empty tree", () => {
    const [r5, r4] = [roots[5] as Buffer, roots[4] as Buffer];
    assert.equal(merkleKind(() => verifyConsistency(5, 5, r5, r5, []), "same"), "ok");
    assert.equal(merkleKind(() => verifyConsistency(5, 5, r5, r5, [r5]), "same, proof"), "mismatch");
    assert.equal(merkleKind(() => verifyConsistency(5, 5, r5, r4, []), "same, other root"), "mismatch");
    assert.equal(merkleKind(() => verifyConsistency(0, 5, emptyRoot(), r5, []), "from empty"), "ok");
    // Any root counts as the empty tree's here, as in the Rust verifier: size 0 commits to nothing.
    assert.equal(merkleKind(() => verifyConsistency(0, 5, r4, r5, []), "from empty, any root"), "ok");
    assert.equal(merkleKind(() => verifyConsistency(0, 5, emptyRoot(), r5, [r4]), "from empty, proof"), "mismatch");
    assert.equal(merkleKind(() => verifyConsistency(0, 0, emptyRoot(), emptyRoot(), []), "empty"), "ok");
    assert.equal(merkleKind(() => verifyInclusion(leaves[0] as Buffer, 0, 0, [], emptyRoot()), "empty tree"), "out_of_range");
  });
});

// ---------------------------------------------------------------------------------------------
// Malformed input: clear errors, never a crash
// ---------------------------------------------------------------------------------------------

describe("malformed Merkle input", () => {
  const leaves = testLeaves(8);
  const root = mth(leaves);
  const leaf = leaves[5] as Buffer;
  const proof = path(5, leaves);

  it("hashes must be 32 bytes of raw bytes or strict base64", () => {
    const bad: Array<[string, () => void]> = [
      ["root not base64", () => verifyInclusion(leaf, 5, 8, proof, "not base64!")],
      ["root of 31 bytes", () => verifyInclusion(leaf, 5, 8, proof, root.subarray(1))],
      ["root unpadded", () => verifyInclusion(leaf, 5, 8, proof, root.toString("base64").replace("=", ""))],
      ["leaf of 33 bytes", () => verifyInclusion(Buffer.concat([leaf, Buffer.alloc(1)]), 5, 8, proof, root)],
      ["proof hash of 3 bytes", () => verifyInclusion(leaf, 5, 8, ["AAAA", ...proof.slice(1)], root)],
      ["proof not a list", () => verifyInclusion(leaf, 5, 8, "proof" as unknown as string[], root)],
      ["proof hash not bytes", () => verifyInclusion(leaf, 5, 8, [42 as unknown as string], root)],
      ["consistency root", () => verifyConsistency(4, 8, "", root, [])],
      ["consistency proof", () => verifyConsistency(4, 8, root, root, ["QUFB"])],
    ];
    for (const [name, fn] of bad) {
      const error = thrown(fn, name);
      assert.ok(error instanceof MerkleProofError && error.kind === "malformed", `${name}: ${String(error)}`);
      assert.match(error.message, /32 bytes|a list of hashes/, name);
    }
    const error = thrown(() => decodeHashes(["AAAA"]), "decodeHashes");
    assert.ok(error instanceof MerkleProofError && error.message === "hash 0 is not 32 bytes of base64", String(error));
    assert.throws(() => nodeHash(root, root.subarray(0, 31)), TypeError);
    assert.throws(() => leafHash("text" as unknown as Uint8Array), TypeError);
  });

  it("sizes and indexes must be unsigned 64-bit integers", () => {
    const bad: Array<[string, () => void, RegExp]> = [
      ["negative index", () => verifyInclusion(leaf, -1, 8, proof, root), /integer in \[0, 2\^64\)/],
      ["fractional size", () => verifyInclusion(leaf, 5, 8.5, proof, root), /integer/],
      ["NaN", () => verifyConsistency(Number.NaN, 8, root, root, []), /integer/],
      ["unsafe number", () => verifyInclusion(leaf, 5, 2 ** 60, proof, root), /bigint/],
      ["beyond u64", () => verifyConsistency(1, 2n ** 64n, root, root, []), /2\^64/],
      ["a string", () => verifyInclusion(leaf, "5" as unknown as number, 8, proof, root), /integer/],
    ];
    for (const [name, fn, message] of bad) {
      const error = thrown(fn, name);
      assert.ok(error instanceof MerkleProofError && error.kind === "malformed", `${name}: ${String(error)}`);
      assert.match(error.message, message, name);
    }
    // Huge but valid sizes are fine: the proof is just wrong, not a crash.
    assert.equal(merkleKind(() => verifyInclusion(leaf, 2n ** 63n, 2n ** 64n - 1n, proof, root), "huge"), "mismatch");
    assert.equal(merkleKind(() => verifyConsistency(2n ** 62n + 1n, 2n ** 64n - 1n, root, root, proof), "huge"), "mismatch");
  });
});

describe("verifier keys", () => {
  const good = A.vkey;
  // Split by hand: base64 has '+' too.
  const [name, hash] = good.split("+") as [string, string];
  const key = good.slice(name.length + hash.length + 2);

  it("parse, with surrounding whitespace and upper-case hex", () => {
    const verifier = NoteVerifier.parse(good);
    assert.equal(verifier.name, "flk.test/local");
    assert.equal(verifier.keyHash.length, 4);
    assert.equal(verifier.publicKey.length, 32);
    assert.equal(String(NoteVerifier.parse(` ${good}\n`)), good);
    assert.equal(String(NoteVerifier.parse(`${name}+${hash.toUpperCase()}+${key}`)), good);
  });

  it("malformed keys are refused, saying why", () => {
    const raw = fromB64(key);
    const offCurve = Buffer.concat([Uint8Array.of(1), Buffer.from([2, ...new Uint8Array(31)])]);
    const offCurveHash = createHash("sha256").update(`${name}\n`).update(offCurve).digest().subarray(0, 4).toString("hex");
    const bad: Array<[string, RegExp]> = [
      ["no-plus-signs", /name\+hash\+key/],
      [`${name}+${hash}`, /name\+hash\+key/],
      [good.replace("+", "+0"), /hash does not match/],
      [`${name}+00000000+${key}`, /hash does not match/],
      [`${name}+${hash}+not base64!`, /not base64/],
      [`${name}+${hash}+${key.slice(0, -1)}`, /not base64/],
      [`${name}+${hash}+`, /empty/],
      [`${name}+${hash}+${Buffer.concat([Uint8Array.of(2), raw.subarray(1)]).toString("base64")}`, /not an Ed25519 key/],
      [`${name}+${hash}+${raw.subarray(0, 32).toString("base64")}`, /32 bytes/],
      [`${name}+${hash}+${Buffer.concat([raw, Uint8Array.of(0)]).toString("base64")}`, /32 bytes/],
      [`${name}+${offCurveHash}+${offCurve.toString("base64")}`, /invalid Ed25519 key/],
      [`+${hash}+${key}`, /key name/],
      [`a b+${hash}+${key}`, /key name/],
      [`a\u0007b+${hash}+${key}`, /key name/],
      [`\ufeff${good}`, /hash does not match/], // U+FEFF is not whitespace to Rust's trim
    ];
    for (const [vkey, message] of bad) {
      const error = thrown(() => NoteVerifier.parse(vkey), vkey);
      assert.ok(error instanceof CheckpointError && error.kind === "key", `${vkey}: ${String(error)}`);
      assert.match(error.message, message, vkey);
    }
    assert.equal(checkpointKind(() => NoteVerifier.parse(42 as unknown as string), "not a string"), "key");
  });
});

describe("signed notes and checkpoints", () => {
  const body = `flk.test/local\n12\n${ROOT_9}\n`;
  const note = A.sign(body);
  const verifier = NoteVerifier.parse(A.vkey);

  it("a signed checkpoint opens with its key; other keys' lines are ignored", () => {
    assert.equal(verifier.open(note), body);
    assert.deepEqual(verifier.openCheckpoint(note), { origin: "flk.test/local", size: 12, root: Buffer.alloc(32, 9) });
    const witness = new TestSigner("witness.example", new Uint8Array(32).fill(3));
    const cosigned = `${body}\n${witness.line(body)}${A.line(body)}`;
    assert.equal(verifier.open(cosigned), body);
    assert.equal(verifier.open(`${note}${witness.line(body)}`), body);
    assert.equal(checkpointKind(() => NoteVerifier.parse(witness.vkey).openCheckpoint(note), "witness only"), "signature");
  });

  it("tampering, foreign keys, foreign origins are refused", () => {
    const refused: Array<[string, string, CheckpointErrorKind, RegExp]> = [
      ["size edited", note.replace("\n12\n", "\n13\n"), "signature", /does not verify/],
      ["same name, other key", new TestSigner("flk.test/local", new Uint8Array(32).fill(8)).sign(body), "signature", /different key named/],
      ["unsigned", body, "malformed", /no signature block/],
      ["other key name", new TestSigner("flk.test/other", new Uint8Array(32).fill(7)).sign(body), "signature", /no signature by/],
      ["origin is another log", A.sign(`flk.test/other\n12\n${ROOT_9}\n`), "signature", /origin "flk.test\/other" is not the key's log/],
    ];
    for (const [name, text, kind, message] of refused) {
      const error = thrown(() => verifier.openCheckpoint(text), name);
      assert.ok(error instanceof CheckpointError && error.kind === kind, `${name}: ${String(error)}`);
      assert.match(error.message, message, name);
    }
  });

  it("malformed notes are refused, saying why", () => {
    const hashB64 = verifier.keyHash.toString("base64");
    const short = Buffer.concat([verifier.keyHash, Buffer.alloc(10)]).toString("base64");
    const bad: Array<[string, CheckpointErrorKind, RegExp]> = [
      ["", "malformed", /no signature block/],
      [note.replace("\n\n", "\n"), "malformed", /no signature block/],
      [`\n${note}`, "malformed", /empty line/],
      [`a\n\n${note}`, "malformed", /empty line/],
      [note.replace("flk.test/local\n12", "flk.test/local\t\n12"), "malformed", /control characters/],
      [note.replace("flk.test/local\n12", "flk.test/local\u0085\n12"), "malformed", /control characters/],
      [note.replace("flk.test/local\n12", "flk.test/\ud800local\n12"), "malformed", /control characters/],
      [note.slice(0, -1), "malformed", /must end with a newline/],
      [note.replace("\u2014 ", "- "), "malformed", /em dash/],
      [note.replace("\u2014 ", "\u2014"), "malformed", /em dash/],
      [`${body}\n\u2014 flk.test/local\n`, "malformed", /name and signature/],
      [`${body}\n\u2014 flk.test/local not-base64!\n`, "malformed", /not base64/],
      [`${body}\n\u2014 flk.test/local ${short}\n`, "signature", /not 64 bytes/],
      [`${body}\n\u2014 flk.test/local ${hashB64}\n`, "signature", /not 64 bytes/],
      [`${body}\n\u2014 flk.test/local AAA=\n`, "signature", /different key named/],
      [`${note}\n`, "malformed", /empty line|em dash/],
    ];
    for (const [text, kind, message] of bad) {
      const error = thrown(() => verifier.open(text), JSON.stringify(text));
      assert.ok(error instanceof CheckpointError && error.kind === kind, `${JSON.stringify(text)}: ${String(error)}`);
      assert.match(error.message, message, JSON.stringify(text));
    }
    assert.equal(checkpointKind(() => verifier.open(null as unknown as string), "null"), "malformed");
  });

  it("checkpoint bodies: three lines, decimal size without leading zeros, 32-byte root", () => {
    assert.deepEqual(parseCheckpoint(`o\n0\n${ROOT_9}\n`).size, 0);
    assert.equal(parseCheckpoint(`o\n18446744073709551615\n${ROOT_9}\n`).size, 2n ** 64n - 1n);
    assert.equal(parseCheckpoint(`o\n9007199254740993\n${ROOT_9}\n`).size, 2n ** 53n + 1n);
    const bad: Array<[string, RegExp]> = [
      ["o\n12\n", /three lines/],
      [`o\n12\n${ROOT_9}\next\n`, /three lines/],
      [`o\n12\n${ROOT_9}`, /end with a newline/],
      [`\n12\n${ROOT_9}\n`, /origin is empty/],
      [`o\n012\n${ROOT_9}\n`, /decimal/],
      [`o\n+12\n${ROOT_9}\n`, /decimal/],
      [`o\n 12\n${ROOT_9}\n`, /decimal/],
      [`o\n\n${ROOT_9}\n`, /decimal/],
      [`o\n1e3\n${ROOT_9}\n`, /decimal/],
      [`o\n18446744073709551616\n${ROOT_9}\n`, /too large/],
      ["o\n12\nshort\n", /32 bytes of base64/],
      [`o\n12\n${ROOT_9.slice(0, -1)}\n`, /32 bytes of base64/],
      [`o\n12\n${Buffer.alloc(33).toString("base64")}\n`, /32 bytes of base64/],
    ];
    for (const [text, message] of bad) {
      const error = thrown(() => parseCheckpoint(text), JSON.stringify(text));
      assert.ok(error instanceof CheckpointError && error.kind === "malformed", `${JSON.stringify(text)}: ${String(error)}`);
      assert.match(error.message, message, JSON.stringify(text));
    }
  });
});

describe("audit leaves and bundle text", () => {
  const leafText =
    '{"decided_at_ms":1700000000000,"dedup":"first","entry_hash":"ab","outcome":"accepted","partition":3,' +
    '"pcs_id":"p-1","region":"local","seq":17,"signed_digest":null,"source":{"topic":"flk.submissions",' +
    '"partition":3,"offset":9007199254740993},"tenant":"alpha","v":1}';

  it("decodes a leaf; absent or null options are null; big integers stay exact", () => {
    const leaf = decodeAuditLeaf(Buffer.from(leafText));
    assert.equal(leaf.pcs_id, "p-1");
    assert.equal(leaf.signed_digest, null);
    assert.equal(leaf.source.offset, 2n ** 53n + 1n);
    assert.equal(leaf.decided_at_ms, 1_700_000_000_000);
    assert.equal(decodeAuditLeaf(Buffer.from(leafText.replace('"signed_digest":null,', ""))).signed_digest, null);
  });

  it("refuses what is not a leaf, saying why", () => {
    const bad: Array<[Uint8Array, RegExp]> = [
      [Buffer.from([0xc3, 0x28]), /not UTF-8/],
      [Buffer.from("not json"), /not JSON/],
      [Buffer.from("null"), /not a JSON object/],
      [Buffer.from(leafText.replace('"v":1', '"v":2')), /version 2 is not 1/],
      [Buffer.from(leafText.replace('"v":1', '"v":-1')), /`v` must be an integer/],
      [Buffer.from(leafText.replace('"dedup":"first"', '"dedup":1')), /`dedup` must be a string/],
      [Buffer.from(leafText.replace('"pcs_id":"p-1"', '"pcs_id":7')), /`pcs_id` must be a string or null/],
      [Buffer.from(leafText.replace('"source":{', '"source":[').replace('},"tenant"', '],"tenant"')), /not JSON|`source` must be an object/],
      [Buffer.from(leafText.replace('"tenant":"alpha",', "")), /missing field `tenant`/],
      [Buffer.from(leafText.replace('"topic"', '"Topic"')), /leaf source: unknown field `Topic`/],
      [Buffer.from(leafText.replace('"seq":17', '"seq":9223372036854775808')), /`seq` must be an integer/],
      [Buffer.from(leafText.replace('"seq":17', '"seq":17,"seq":18')), /duplicate key "seq"/],
    ];
    for (const [bytes, message] of bad) {
      const error = thrown(() => decodeAuditLeaf(bytes), Buffer.from(bytes).toString());
      assert.ok(error instanceof AuditLeafError, String(error));
      assert.match(error.message, message);
    }
  });

  it("reads bundle JSON text exactly, refusing what is not a bundle", () => {
    const text = `{"checkpoint":"c","leaf_index":9007199254740993,"tree_size":1,"entry":"","inclusion":[],"extra":0}`;
    const bundle = decodeProofBundle(text);
    assert.equal(bundle.leaf_index, 2n ** 53n + 1n);
    assert.equal(bundle.tree_size, 1);
    for (const badText of [
      "",
      "[]",
      text.replace('"tree_size":1', '"tree_size":1.0'),
      text.replace('"tree_size":1', '"tree_size":-0'),
      text.replace('"tree_size":1', '"tree_size":18446744073709551616'),
      text.replace('"tree_size":1', '"tree_size":1,"tree_size":2'),
      text.replace('"entry":""', '"entry":null'),
      text.replace('"inclusion":[]', '"inclusion":[null]'),
    ]) {
      const error = thrown(() => decodeProofBundle(badText), badText);
      assert.ok(error instanceof TypeError && /malformed proof bundle/.test(error.message), `${badText}: ${String(error)}`);
    }
  });
});
