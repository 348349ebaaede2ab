import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { formatFixed, formatPythonFloat, round9, shortestDecimal } from "../src/decimal.js";

/** Deterministic PRNG so a failing case can be reproduced. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random doubles over all magnitudes, from random bit patterns (finite only). */
function randomDoubles(count: number, seed: number): number[] {
  const random = mulberry32(seed);
  const view = new DataView(new ArrayBuffer(8));
  const out: number[] = [];
  while (out.length < count) {
    view.setUint32(0, Math.floor(random() * 2 ** 32));
    view.setUint32(4, Math.floor(random() * 2 ** 32));
    const x = view.getFloat64(0);
    if (Number.isFinite(x)) out.push(x);
  }
  return out;
}

describe("round9", () => {
  it("passes the CONTRACT section 2.6 rounding vectors", () => {
    assert.equal(formatPythonFloat(round9(1.412345678901234)), "1.412345679");
    assert.equal(formatPythonFloat(round9(0.1234567895)), "0.12345679");
    assert.equal(formatPythonFloat(round9(1.5e-9)), "2e-09");
    assert.equal(formatPythonFloat(round9(12345.6789012345)), "12345.678901235");
  });

  it("rounds half-up away from zero on the shortest digits, keeping the sign of zero", () => {
    assert.equal(round9(-0.1234567895), -0.12345679);
    assert.equal(round9(0.9999999995), 1);
    assert.ok(Object.is(round9(4e-10), 0));
    assert.ok(Object.is(round9(-4e-10), -0));
    assert.equal(round9(5e-10), 1e-9);
    assert.equal(round9(-5e-10), -1e-9);
    assert.ok(Object.is(round9(1e-12), 0));
    assert.ok(Object.is(round9(-0), -0));
    assert.equal(round9(1e300), 1e300);
    assert.equal(round9(99999.9999999995), 100000);
    assert.equal(round9(5e-324), 0);
    // 0.0000000015 is stored slightly below the tie; decimal rounding still goes up.
    assert.equal(round9(0.0000000015), 2e-9);
  });

  it("is idempotent and moves a value by at most half a unit", () => {
    for (const x of randomDoubles(5000, 7)) {
      const once = round9(x);
      assert.ok(Object.is(round9(once), once), `round9 not idempotent for ${x}`);
      if (Math.abs(x) < 1e6) {
        assert.ok(Math.abs(once - x) <= 5e-10 + Math.abs(x) * 1e-15, `round9(${x}) = ${once}`);
      }
    }
  });

  it("rejects non-finite input", () => {
    assert.throws(() => round9(Number.NaN), RangeError);
    assert.throws(() => round9(Infinity), RangeError);
  });
});

describe("formatPythonFloat", () => {
  it("prints like Python repr", () => {
    const cases: Array<[number, string]> = [
      [1, "1.0"],
      [0, "0.0"],
      [-0, "-0.0"],
      [0.1, "0.1"],
      [1e-4, "0.0001"],
      [-1e-4, "-0.0001"],
      [1e-5, "1e-05"],
      [1e-7, "1e-07"],
      [2e-9, "2e-09"],
      [1.5e-7, "1.5e-07"],
      [1e16, "1e+16"],
      [1.5e16, "1.5e+16"],
      [9999999999999998, "9999999999999998.0"],
      [123456789.125, "123456789.125"],
      [1e22, "1e+22"],
      [1e300, "1e+300"],
      [-2.5e-308, "-2.5e-308"],
      [5e-324, "5e-324"],
      [1.7976931348623157e308, "1.7976931348623157e+308"],
      [0.528320834, "0.528320834"],
      [100, "100.0"],
      [-12.5, "-12.5"],
    ];
    for (const [value, expected] of cases) {
      assert.equal(formatPythonFloat(value), expected, `repr of ${value}`);
    }
  });

  it("round-trips every double", () => {
    for (const x of randomDoubles(5000, 11)) {
      assert.ok(Object.is(Number(formatPythonFloat(x)), x), `repr of ${x}`);
    }
  });

  it("splits shortest digits", () => {
    assert.deepEqual(shortestDecimal(0.001), { negative: false, digits: "1", decimalPoint: -2 });
    assert.deepEqual(shortestDecimal(-1500), { negative: true, digits: "15", decimalPoint: 4 });
    assert.deepEqual(shortestDecimal(1e21), { negative: false, digits: "1", decimalPoint: 22 });
  });
});

describe("formatFixed (C printf %.Nf)", () => {
  it("rounds exact binary ties to even, unlike toFixed", () => {
    assert.equal(formatFixed(0.15625, 4), "0.1562");
    assert.equal(formatFixed(0.03125, 4), "0.0312");
    assert.equal((0.03125).toFixed(4), "0.0313"); // the difference that motivates formatFixed
    assert.equal(formatFixed(0.09375, 4), "0.0938");
    assert.equal(formatFixed(0.5, 0), "0");
    assert.equal(formatFixed(1.5, 0), "2");
    assert.equal(formatFixed(2.5, 0), "2");
  });

  it("rounds non-ties from the exact binary value", () => {
    assert.equal(formatFixed(1.05, 4), "1.0500");
    assert.equal(formatFixed(1.00005, 4), "1.0001"); // stored above the tie
    assert.equal(formatFixed(0.15, 4), "0.1500");
    assert.equal(formatFixed(1.15, 1), "1.1"); // stored below the tie
  });

  it("stays positional for huge values and keeps the sign of negative zero", () => {
    assert.equal(formatFixed(1e20, 4), "100000000000000000000.0000");
    assert.equal(formatFixed(1e21, 4), "1000000000000000000000.0000");
    assert.equal(formatFixed(-0.00001, 4), "-0.0000");
    assert.equal(formatFixed(-0, 4), "-0.0000");
    assert.equal(formatFixed(-1.25, 4), "-1.2500");
    assert.equal(formatFixed(5e-324, 4), "0.0000");
  });

  it("agrees with toFixed wherever toFixed is exact (no tie, below 1e21)", () => {
    for (const x of [...randomDoubles(3000, 3).map((v) => v % 1e6), ...randomDoubles(2000, 5).map((v) => v % 3)]) {
      if (Object.is(x, -0) || Number.isNaN(x)) continue;
      const scaled = x * 1e4;
      if (Number.isInteger(scaled * 2) && !Number.isInteger(scaled)) continue; // possible exact tie
      assert.equal(formatFixed(x, 4), x.toFixed(4), `%.4f of ${x}`);
    }
  });
});
