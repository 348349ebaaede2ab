/**
 * Runs the shared vector file tests/vectors/pcs-vectors.json (format 1, see its README) in full.
 * The file is the one source of truth for every implementation; this suite never edits it. While it
 * does not exist yet the suite is skipped, and the CONTRACT vectors in the other files still run.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { canonicalPayload } from "../src/canonical.js";
import { formatPythonFloat, round9 } from "../src/decimal.js";
import { decodePcs, PcsDecodeError, pcsFromJson, signedFieldsFromJson } from "../src/decode.js";
import { integerFromText } from "../src/epoch.js";
import { JsonNumber, parseJson, type JsonObject, type JsonValue } from "../src/json.js";
import { pcsId } from "../src/pcs.js";
import { ed25519PublicKey, signEd25519, signHmac, signHmacPrehash, verifyEd25519, verifyHmac } from "../src/signing.js";
import { outcomeStatus, verifyPcs, type VerifyParams } from "../src/verify.js";
import { array, object, text, VECTOR_FILE, VECTOR_SHA_FILE } from "./fixtures.js";

const PRESENT = existsSync(VECTOR_FILE);
const SKIP = PRESENT ? false : `${VECTOR_FILE} not written yet`;

function num(value: JsonValue | undefined, what: string): number {
  assert.ok(value instanceof JsonNumber, `${what} must be a number`);
  return value.value;
}

function caseName(entry: JsonObject, index: number): string {
  const name = entry["name"];
  return typeof name === "string" ? name : `#${index}`;
}

const PARAM_NAMES: ReadonlyArray<keyof VerifyParams> = ["tol_D", "tol_coh", "alpha", "beta", "gamma", "base", "D0", "budget_tol"];

function loadVectors(): JsonObject {
  const bytes = readFileSync(VECTOR_FILE);
  const root = object(parseJson(new TextDecoder("utf-8", { fatal: true }).decode(bytes)), "vector file");
  assert.equal(num(root["format"], "format"), 1, "only format 1 is understood");
  return root;
}

it("shared vector file is present", { skip: SKIP }, () => {
  assert.ok(existsSync(VECTOR_SHA_FILE), "pcs-vectors.json exists without its .sha256");
});

describe("shared vector file", { skip: SKIP }, () => {
  // Loaded lazily so a missing file skips instead of failing at import.
  const root = PRESENT ? loadVectors() : (Object.create(null) as JsonObject);
  const section = (name: string): JsonObject[] =>
    array(root[name], name).map((entry, i) => object(entry, `${name}[${i}]`));

  it("matches its pinned SHA-256", () => {
    const pinned = readFileSync(VECTOR_SHA_FILE, "utf8");
    const match = /^([0-9a-f]{64}) {2}pcs-vectors\.json\n?$/.exec(pinned);
    assert.ok(match, `unexpected .sha256 line: ${JSON.stringify(pinned)}`);
    const actual = createHash("sha256").update(readFileSync(VECTOR_FILE)).digest("hex");
    assert.equal(actual, match[1], "pcs-vectors.json changed without its .sha256 (regenerate both)");
  });

  it("has every section, none empty", () => {
    for (const name of ["signing", "rounding", "pcs_id", "verification", "malformed"]) {
      assert.ok(section(name).length > 0, `${name} is empty`);
    }
  });

  it("signing: payload, hmac, hmac_prehash, ed25519_public, ed25519", () => {
    for (const [i, entry] of section("signing").entries()) {
      const name = caseName(entry, i);
      const fields = signedFieldsFromJson(object(entry["fields"], `${name}.fields`), { requireR: false });
      const key = text(entry["hmac_key"], `${name}.hmac_key`);
      const seed = text(entry["ed25519_seed"], `${name}.ed25519_seed`);
      assert.equal(canonicalPayload(fields), text(entry["payload"], `${name}.payload`), `${name}: payload`);
      const hmac = text(entry["hmac"], `${name}.hmac`);
      assert.equal(signHmac(fields, key), hmac, `${name}: hmac`);
      assert.ok(verifyHmac(fields, key, hmac), `${name}: verifyHmac`);
      const prehash = text(entry["hmac_prehash"], `${name}.hmac_prehash`);
      assert.equal(signHmacPrehash(fields, key), prehash, `${name}: hmac_prehash`);
      assert.ok(verifyHmac(fields, key, prehash, { allowPrehash: true }), `${name}: prehash accepted on opt-in`);
      assert.ok(!verifyHmac(fields, key, prehash), `${name}: prehash refused by default`);
      const publicKey = text(entry["ed25519_public"], `${name}.ed25519_public`);
      assert.equal(ed25519PublicKey(seed), publicKey, `${name}: ed25519_public`);
      const ed = text(entry["ed25519"], `${name}.ed25519`);
      assert.equal(signEd25519(fields, seed), ed, `${name}: ed25519`);
      assert.ok(verifyEd25519(fields, publicKey, ed), `${name}: verifyEd25519`);
    }
  });

  it("rounding: round9 then Python repr", () => {
    for (const [i, entry] of section("rounding").entries()) {
      const input = num(entry["input"], `rounding[${i}].input`);
      assert.equal(formatPythonFloat(round9(input)), text(entry["output_repr"], `rounding[${i}].output_repr`), `round9(${input})`);
    }
  });

  it("pcs_id", () => {
    for (const [i, entry] of section("pcs_id").entries()) {
      const epoch = entry["epoch"];
      assert.ok(epoch instanceof JsonNumber && epoch.isIntegerLiteral, `pcs_id[${i}].epoch`);
      const id = pcsId(text(entry["merkle_root"], "merkle_root"), integerFromText(epoch.raw), text(entry["shard_id"], "shard_id"));
      assert.equal(id, text(entry["pcs_id"], `pcs_id[${i}].pcs_id`), `pcs_id[${i}]`);
    }
  });

  it("verification: outcome and status", () => {
    for (const [i, entry] of section("verification").entries()) {
      const name = caseName(entry, i);
      const params: Partial<VerifyParams> = {};
      const given = entry["params"];
      if (given !== undefined && given !== null) {
        for (const [key, value] of Object.entries(object(given, `${name}.params`))) {
          assert.ok((PARAM_NAMES as readonly string[]).includes(key), `${name}: unknown param ${key}`);
          params[key as keyof VerifyParams] = num(value, `${name}.params.${key}`);
        }
      }
      const outcome = verifyPcs(pcsFromJson(object(entry["pcs"], `${name}.pcs`)), params);
      const expected = object(entry["expected"], `${name}.expected`);
      const actual: Record<string, unknown> = { ...outcome };
      assert.deepEqual(Object.keys(actual).sort(), Object.keys(expected).sort(), `${name}: outcome keys`);
      for (const [key, value] of Object.entries(expected)) {
        if (value instanceof JsonNumber) {
          assert.equal(actual[key], value.value, `${name}: ${key}`);
        } else {
          assert.equal(actual[key], value, `${name}: ${key}`);
        }
      }
      assert.equal(outcomeStatus(outcome), num(entry["status"], `${name}.status`), `${name}: status`);
    }
  });

  it("malformed: every body rejected, naming its key", () => {
    for (const [i, entry] of section("malformed").entries()) {
      const name = caseName(entry, i);
      const body = text(entry["body"], `${name}.body`);
      const key = entry["key"];
      assert.throws(
        () => decodePcs(body),
        (error: unknown) => {
          assert.ok(error instanceof PcsDecodeError, `${name}: expected PcsDecodeError, got ${String(error)}`);
          if (key !== null && key !== undefined) {
            assert.ok(error.message.includes(text(key, `${name}.key`)), `${name}: "${error.message}" does not mention ${String(key)}`);
          }
          // Stricter than the format asks: the error's key is the one the server names.
          assert.equal(error.key, key ?? null, `${name}: error key`);
          return true;
        },
        `${name}: accepted a malformed body`,
      );
    }
  });
});
