import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { canonicalPayload, canonicalString } from "../src/canonical.js";
import { decodePcs } from "../src/decode.js";
import { pcsId } from "../src/pcs.js";
import { CONTRACT_FIELDS, golden } from "./fixtures.js";

describe("pcsId", () => {
  it("matches the CONTRACT reference value", () => {
    assert.equal(pcsId("abc123", 1, "shard-001"), "9c2a1a9fe3d87edab9aaee193852edc091aa03e263580f9556f1f0d0f1679b93");
  });

  it("matches the golden records", () => {
    for (const name of ["pcs_tiny_case_1.json", "pcs_tiny_case_2.json"]) {
      const pcs = decodePcs(golden(name));
      assert.equal(pcsId(pcs.merkle_root, pcs.epoch, pcs.shard_id), pcs.pcs_id);
    }
  });

  it("takes bigint epochs and rejects unsafe numbers", () => {
    assert.equal(pcsId("abc123", 1n, "shard-001"), pcsId("abc123", 1, "shard-001"));
    const big = 2n ** 60n;
    assert.equal(pcsId("m", big, "s"), pcsId("m", big, "s"));
    assert.throws(() => pcsId("m", 2 ** 60, "s"), /MAX_SAFE_INTEGER.*bigint/);
    assert.throws(() => pcsId("m", 1.5, "s"), /integer/);
    assert.throws(() => pcsId("m", 2n ** 64n, "s"), /64-bit/);
  });

  it("hashes UTF-8 and refuses lone surrogates", () => {
    assert.equal(pcsId("é", 0, "😀").length, 64);
    assert.throws(() => pcsId("\ud800", 0, "s"), /lone surrogate/);
  });
});

describe("canonicalPayload", () => {
  it("matches the CONTRACT section 2.6 explicit vector", () => {
    assert.equal(
      canonicalPayload(CONTRACT_FIELDS),
      '{"D_hat":1.412345679,"budget":0.421234568,"coh_star":0.73456789,"epoch":1,"merkle_root":"abc123","pcs_id":"test-id","r":0.871234568,"shard_id":"shard-001"}',
    );
  });

  it("matches golden case 1 exactly and golden case 2's prefix", () => {
    assert.equal(
      canonicalPayload(decodePcs(golden("pcs_tiny_case_1.json"))),
      '{"D_hat":0.528320834,"budget":0.317807017,"coh_star":0.066666667,"epoch":1,"merkle_root":"e966b52c992aefad3c3d0196db02554f30d10d55e8a6e5e3038f88e79e414112","pcs_id":"c50bb25a7aff94164147b73c846f0e5e10890d75df204875ca70c448f52c6edf","r":0.318421053,"shard_id":"test-shard-001"}',
    );
    assert.ok(
      canonicalPayload(decodePcs(golden("pcs_tiny_case_2.json"))).startsWith('{"D_hat":1.0,"budget":0.349073359,"coh_star":0.2,'),
    );
  });

  it("rounds to 9 decimals, prints integers as floats, and counts absent r as 0.0", () => {
    const payload = canonicalPayload({ ...CONTRACT_FIELDS, D_hat: 2, coh_star: 1.5e-9, budget: -0, r: undefined });
    assert.equal(
      payload,
      '{"D_hat":2.0,"budget":-0.0,"coh_star":2e-09,"epoch":1,"merkle_root":"abc123","pcs_id":"test-id","r":0.0,"shard_id":"shard-001"}',
    );
    const { r: _omitted, ...withoutR } = CONTRACT_FIELDS;
    assert.ok(canonicalPayload(withoutR).includes('"r":0.0,'));
  });

  it("prints big epochs exactly", () => {
    assert.ok(canonicalPayload({ ...CONTRACT_FIELDS, epoch: 9223372036854775807n }).includes('"epoch":9223372036854775807,'));
    assert.throws(() => canonicalPayload({ ...CONTRACT_FIELDS, epoch: 2 ** 53 }), /bigint/);
  });

  it("rejects non-finite and mistyped fields", () => {
    assert.throws(() => canonicalPayload({ ...CONTRACT_FIELDS, D_hat: Number.NaN }), /D_hat/);
    assert.throws(() => canonicalPayload({ ...CONTRACT_FIELDS, budget: Infinity }), /budget/);
    assert.throws(() => canonicalPayload({ ...CONTRACT_FIELDS, shard_id: 5 as unknown as string }), /shard_id/);
  });
});

describe("canonicalString", () => {
  it("escapes like Python json.dumps(ensure_ascii=True)", () => {
    assert.equal(canonicalString('q"b\\s'), '"q\\"b\\\\s"');
    assert.equal(canonicalString("\n\r\t\b\f"), '"\\n\\r\\t\\b\\f"');
    assert.equal(canonicalString("\u0000\u001f\u007f"), '"\\u0000\\u001f\\u007f"');
    assert.equal(canonicalString("é€"), '"\\u00e9\\u20ac"');
    assert.equal(canonicalString("😀"), '"\\ud83d\\ude00"');
    assert.equal(canonicalString("<>&/ ~"), '"<>&/ ~"');
    assert.equal(canonicalString("\u2028\ufeff"), '"\\u2028\\ufeff"');
  });
});
