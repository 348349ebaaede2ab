/**
 * Epochs and other wire integers.
 *
 * JavaScript numbers hold integers exactly only up to 2^53 - 1 (`Number.MAX_SAFE_INTEGER`), while
 * the server reads epochs as 64-bit integers. A silently rounded epoch would change `pcs_id` and the
 * signed payload, so unsafe numbers are rejected with an error that says to pass a `bigint`.
 *
 * @module
 */

/** An epoch or other wire integer: a safe-integer `number`, or a `bigint` for anything larger. */
export type WireInteger = number | bigint;

/** Smallest and largest integers the server accepts (signed 64-bit). */
export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;

/**
 * Decimal text of a wire integer, as used in `pcs_id` and the canonical payload.
 * @throws RangeError for a non-integer or unsafe `number` (beyond 2^53 - 1: use a `bigint`), or a
 * `bigint` outside the signed 64-bit range.
 */
export function integerText(value: WireInteger, name = "epoch"): string {
  if (typeof value === "bigint") {
    if (value < INT64_MIN || value > INT64_MAX) {
      throw new RangeError(`${name} ${value} is outside the signed 64-bit range`);
    }
    return value.toString();
  }
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new RangeError(`${name} must be an integer, got ${String(value)}`);
  }
  if (!Number.isSafeInteger(value)) {
    throw new RangeError(
      `${name} ${value} is beyond Number.MAX_SAFE_INTEGER (2^53 - 1) and may have lost digits; pass it as a bigint`,
    );
  }
  // Number.isSafeInteger(-0) is true and String(-0) is "0", which is what the wire wants.
  return String(value);
}

/** Exact integer from decimal text: a `number` when safe, else a `bigint`. */
export function integerFromText(text: string): WireInteger {
  const big = BigInt(text);
  const asNumber = Number(big);
  return Number.isSafeInteger(asNumber) ? asNumber : big;
}

/** Compares a wire integer with zero without losing precision. */
export function isNegative(value: WireInteger): boolean {
  return typeof value === "bigint" ? value < 0n : value < 0;
}
