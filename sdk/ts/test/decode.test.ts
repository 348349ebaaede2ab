import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { decodePcs, isRfc3339, pcsFromObject, PcsDecodeError, signedFieldsFromJson } from "../src/decode.js";
import { parseJson } from "../src/json.js";
import { golden } from "./fixtures.js";

const GOLDEN_1 = JSON.parse(golden("pcs_tiny_case_1.json")) as Record<string, unknown>;

/** The golden record with one key replaced (undefined removes it), as JSON text. */
function withKey(key: string, rawValue: string | undefined): string {
  const { [key]: _dropped, ...rest } = GOLDEN_1;
  const base = JSON.stringify(rest);
  return rawValue === undefined ? base : `${base.slice(0, -1)},${JSON.stringify(key)}:${rawValue}}`;
}

/** Asserts the body is malformed with `.key === key`; `mentioned` must appear in the message. */
function rejects(body: string, key: string | null, mentioned: string | null = key): PcsDecodeError {
  let caught: unknown;
  try {
    decodePcs(body);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof PcsDecodeError, `expected a decode error for ${body}`);
  assert.equal(caught.key, key, caught.message);
  if (mentioned !== null) {
    assert.ok(caught.message.includes(mentioned), `message should name ${mentioned}: ${caught.message}`);
  }
  return caught;
}

describe("decodePcs", () => {
  it("decodes the golden records", () => {
    const pcs = decodePcs(golden("pcs_tiny_case_1.json"));
    assert.deepEqual(pcs.scales, [2, 4, 8, 16]);
    assert.equal(pcs.N_j["16"], 15);
    assert.equal(pcs.epoch, 1);
    assert.equal(pcs.ft?.degraded, false);
    assert.equal(pcs.sent_at, "2025-01-19T12:00:00Z");
  });

  it("rejects a float epoch, even 1.0, naming the key", () => {
    const error = rejects(withKey("epoch", "1.0"), "epoch");
    assert.match(error.message, /integer.*1\.0/);
    rejects(withKey("epoch", "1e0"), "epoch");
    rejects(withKey("epoch", '"1"'), "epoch");
    rejects(withKey("epoch", "null"), "epoch");
    rejects(withKey("epoch", "18446744073709551615"), "epoch");
    rejects(withKey("epoch", "-9223372036854775809"), "epoch");
    rejects(withKey("epoch", "-0"), "epoch"); // a float (-0.0) to the server's parser
    rejects(withKey("N_j", '{"2": -0}'), "N_j.2");
  });

  it("keeps big epochs exact and lets negative ones through to verification", () => {
    assert.equal(decodePcs(withKey("epoch", "9223372036854775807")).epoch, 9223372036854775807n);
    assert.equal(decodePcs(withKey("epoch", "9007199254740991")).epoch, 9007199254740991);
    assert.equal(decodePcs(withKey("epoch", "-1")).epoch, -1);
    assert.equal(decodePcs(withKey("epoch", "-9223372036854775808")).epoch, -(2n ** 63n));
    assert.ok(Object.is(decodePcs(withKey("D_hat", "-0")).D_hat, -0));
  });

  it("decodes missing step-1 keys as empty and rejects other missing required keys", () => {
    const pcs = decodePcs(withKey("pcs_id", undefined));
    assert.equal(pcs.pcs_id, "");
    assert.deepEqual(decodePcs(withKey("scales", undefined)).scales, []);
    assert.equal(decodePcs(withKey("merkle_root", "null")).merkle_root, "");
    for (const key of ["epoch", "N_j", "coh_star", "D_hat", "regime", "budget"]) {
      rejects(withKey(key, undefined), key);
    }
  });

  it("rejects wrong JSON types, naming the key", () => {
    rejects(withKey("pcs_id", "5"), "pcs_id");
    rejects(withKey("D_hat", '"1.0"'), "D_hat");
    rejects(withKey("budget", "null"), "budget");
    rejects(withKey("regime", "1"), "regime");
    rejects(withKey("scales", "[2, 0]"), "scales");
    rejects(withKey("scales", "[2, 4.0]"), "scales");
    rejects(withKey("scales", "{}"), "scales");
    rejects(withKey("N_j", '{"2": 1.5}'), "N_j.2");
    rejects(withKey("v_star", '[1, "x"]'), "v_star");
    rejects(withKey("ft", '{"degraded": "yes"}'), "ft.degraded");
    rejects(withKey("ft", '{"fallbacks": [1]}'), "ft.fallbacks");
    rejects(withKey("ft", "[]"), "ft");
    rejects(withKey("N_j", "[]"), "N_j");
    rejects(withKey("attempt", "1.5"), "attempt");
    rejects(withKey("sig", "false"), "sig");
  });

  it("treats null on optional keys as absent and ignores unknown keys", () => {
    const pcs = decodePcs(withKey("r", "null"));
    assert.equal(pcs.r, undefined);
    assert.equal(decodePcs(withKey("ft", "null")).ft, undefined);
    assert.equal(decodePcs(withKey("extra", '{"anything": [1.5]}')).pcs_id, GOLDEN_1["pcs_id"]);
    assert.equal(decodePcs(withKey("regime", '"chaotic"')).regime, "chaotic");
  });

  it("checks sent_at as RFC 3339 with a zone", () => {
    for (const bad of ["2025-01-19T12:00:00", "yesterday", "2025-01-19 12:00:00Z", "2025-02-30T00:00:00Z", "2025-01-19T24:00:00Z"]) {
      rejects(withKey("sent_at", JSON.stringify(bad)), "sent_at");
    }
    for (const good of ["2025-01-19T12:00:00+05:30", "2024-02-29t23:59:59.123456z", "2025-01-19T12:00:00-00:00"]) {
      assert.ok(isRfc3339(good), good);
    }
    // Leap seconds only at 23:59:60 UTC on a month's last day, offsets applied.
    assert.ok(isRfc3339("2016-12-31T23:59:60Z"));
    assert.ok(isRfc3339("2016-12-31T23:59:60.5Z"));
    assert.ok(isRfc3339("2017-01-01T00:59:60+01:00"));
    assert.ok(isRfc3339("2016-12-31T15:59:60-08:00"));
    assert.ok(!isRfc3339("2016-12-30T23:59:60Z"));
    assert.ok(!isRfc3339("2016-12-31T23:58:60Z"));
    assert.ok(!isRfc3339("2016-12-31T23:59:60+01:00"));
    assert.ok(!isRfc3339("2025-01-19T12:00:00+24:00"));
    assert.ok(!isRfc3339("2025-01-19T12:00:00+05:60"));
    assert.ok(!isRfc3339("2025-01-19T12:00:00.Z"));
  });

  it("rejects bodies that are not JSON objects with key null", () => {
    rejects("[1]", null);
    rejects('"pcs"', null);
    rejects("", null);
    rejects("{", null);
    rejects(`${golden("pcs_tiny_case_1.json")} x`, null);
  });

  it("rejects invalid JSON inside a value with key null, naming the key in the message", () => {
    rejects(withKey("D_hat", "1e400"), null, "D_hat");
    rejects(withKey("epoch", "01"), null, "epoch");
    rejects(withKey("shard_id", '"\\ud800"'), null, "shard_id");
    rejects(withKey("shard_id", '"a\u0001"'), null, "shard_id");
    rejects('{"pcs_id": ', null, "pcs_id");
  });

  it("decodes plain objects too (integer-ness judged from the number)", () => {
    assert.equal(pcsFromObject(GOLDEN_1).budget, 0.317807017);
    assert.throws(() => pcsFromObject({ ...GOLDEN_1, epoch: 1.5 }), (e: unknown) => e instanceof PcsDecodeError && e.key === "epoch");
    assert.equal(pcsFromObject({ ...GOLDEN_1, epoch: 2n ** 60n }).epoch, 2n ** 60n);
  });
});

describe("signedFieldsFromJson", () => {
  it("requires all 8 fields, r included", () => {
    const fields = signedFieldsFromJson(parseJson(golden("pcs_tiny_case_1.json")));
    assert.equal(fields.r, 0.318421053);
    const { r: _r, ...withoutR } = GOLDEN_1;
    assert.throws(() => signedFieldsFromJson(parseJson(JSON.stringify(withoutR))), /`r`/);
  });
});
