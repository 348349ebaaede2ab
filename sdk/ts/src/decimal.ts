/**
 * Decimal arithmetic on IEEE-754 doubles, done on digit strings.
 *
 * Why strings: the wire contract (CONTRACT section 2) defines rounding and printing in terms of the
 * shortest round-trip decimal of a double and of exact decimal values. Any shortcut through float
 * math (`Math.round(x * 1e9) / 1e9`, `toFixed`) disagrees with Python and Rust on some inputs, and a
 * single differing digit breaks every signature over the payload.
 *
 * @module
 */

/** The shortest round-trip decimal of a finite double, as `0.DIGITS x 10^decimalPoint`. */
export interface ShortestDecimal {
  /** True for negative values, including negative zero. */
  readonly negative: boolean;
  /** Significant digits without leading or trailing zeros; `"0"` for zero. */
  readonly digits: string;
  /**
   * Position of the decimal point relative to the start of `digits` (the `decpt` of David Gay's
   * dtoa, which Python's repr is built on): 1.5 is digits "15" with point 1; 0.001 is "1" with -2.
   */
  readonly decimalPoint: number;
}

const JS_NUMBER_TEXT = /^(-?)(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/;

/**
 * Splits a finite double into its shortest round-trip digits.
 *
 * `String(x)` already yields the shortest digits that round-trip (ECMAScript Number::toString picks
 * the fewest digits, like Python repr and Rust `{}`), but in its own notation (`1e-7`, `1e+21`,
 * `0.000001`); this parses that text back into digits and a decimal point position.
 */
export function shortestDecimal(x: number): ShortestDecimal {
  if (!Number.isFinite(x)) {
    throw new RangeError(`expected a finite number, got ${String(x)}`);
  }
  const negative = x < 0 || Object.is(x, -0);
  if (x === 0) {
    return { negative, digits: "0", decimalPoint: 1 };
  }
  const match = JS_NUMBER_TEXT.exec(String(x));
  if (match === null) {
    // Unreachable for finite doubles; kept as an error rather than a silent wrong digit string.
    throw new Error(`unexpected number text ${String(x)}`);
  }
  const integerPart = match[2] ?? "";
  const fractionPart = match[3] ?? "";
  const exponent = Number(match[4] ?? "0");
  let digits = integerPart + fractionPart;
  let decimalPoint = integerPart.length + exponent;
  const leadingZeros = /^0*/.exec(digits)?.[0].length ?? 0;
  digits = digits.slice(leadingZeros);
  decimalPoint -= leadingZeros;
  digits = digits.replace(/0+$/, "");
  return { negative, digits, decimalPoint };
}

/** Number of decimals the signed floats are rounded to (CONTRACT section 2.2). */
export const SIGNED_DECIMALS = 9;

/**
 * Rounds a double to 9 decimals the way the contract defines it: shortest round-trip decimal,
 * rounded half-up (away from zero) at the 9th decimal in decimal arithmetic, parsed back.
 *
 * So `0.1234567895` (whose binary value is slightly below the tie) still rounds up to `0.12345679`,
 * because the decision is made on the digits a person sees, not on the binary value. A negative
 * value that rounds to zero keeps its sign (`-0`), as Python's `Decimal.quantize` does.
 */
export function round9(x: number): number {
  const { negative, digits, decimalPoint } = shortestDecimal(x);
  const keep = decimalPoint + SIGNED_DECIMALS;
  if (keep >= digits.length) {
    return x; // already at most 9 decimals: nothing to round
  }
  if (keep < 0) {
    return negative ? -0 : 0; // first digit lies past the 10th decimal: below half a unit
  }
  // The kept digits, read as an integer, count units of 1e-9.
  let units = BigInt(keep === 0 ? "0" : digits.slice(0, keep));
  if (digits.charCodeAt(keep) >= 0x35 /* '5' */) {
    units += 1n;
  }
  // Number() parses decimal text with correct rounding, so this is the nearest double.
  return Number(`${negative ? "-" : ""}${units}e-${SIGNED_DECIMALS}`);
}

/**
 * Prints a double as Python's `repr` does, which is what the canonical payload uses.
 *
 * Positional notation when 1e-4 <= |x| < 1e16, always with a fractional part (`1.0`, `-0.0`);
 * otherwise `d.ddde-XX` / `d.ddde+XX` with at least two exponent digits and no `.` for a single
 * digit (`1e-07`, `1.5e+16`).
 */
export function formatPythonFloat(x: number): string {
  const { negative, digits, decimalPoint } = shortestDecimal(x);
  const sign = negative ? "-" : "";
  if (digits === "0") {
    return `${sign}0.0`;
  }
  // Same switch as CPython's float_repr_style 'r': exponent form when decpt <= -4 or decpt > 16.
  if (decimalPoint <= -4 || decimalPoint > 16) {
    const mantissa = digits.length === 1 ? digits : `${digits[0]}.${digits.slice(1)}`;
    const exponent = decimalPoint - 1;
    const exponentDigits = String(Math.abs(exponent)).padStart(2, "0");
    return `${sign}${mantissa}e${exponent < 0 ? "-" : "+"}${exponentDigits}`;
  }
  if (decimalPoint <= 0) {
    return `${sign}0.${"0".repeat(-decimalPoint)}${digits}`;
  }
  if (decimalPoint >= digits.length) {
    return `${sign}${digits}${"0".repeat(decimalPoint - digits.length)}.0`;
  }
  return `${sign}${digits.slice(0, decimalPoint)}.${digits.slice(decimalPoint)}`;
}

/** Exact value of a finite double as `integer * 2^exponent`, with a non-negative integer. */
function exactBinary(x: number): { negative: boolean; mantissa: bigint; exponent: number } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const high = view.getUint32(0);
  const low = view.getUint32(4);
  const negative = high >>> 31 === 1;
  const biasedExponent = (high >>> 20) & 0x7ff;
  let mantissa = (BigInt(high & 0xfffff) << 32n) | BigInt(low);
  if (biasedExponent === 0) {
    return { negative, mantissa, exponent: -1074 }; // subnormal (or zero)
  }
  mantissa |= 1n << 52n;
  return { negative, mantissa, exponent: biasedExponent - 1075 };
}

/**
 * Formats a double like C's `printf("%.<precision>f", x)` with glibc: from the exact binary value,
 * rounding exact ties to even, always positional, sign kept for negative zero and for negative
 * values that round to zero (`-0.0000`).
 *
 * `Number.prototype.toFixed` is not that: it switches to exponent form at 1e21 and rounds exact
 * binary ties away from zero (`(0.03125).toFixed(4)` is `0.0313`, printf gives `0.0312`). The
 * verification reasons embed `%.4f` and must match the server byte for byte.
 */
export function formatFixed(x: number, precision: number): string {
  if (!Number.isFinite(x)) {
    throw new RangeError(`expected a finite number, got ${String(x)}`);
  }
  if (!Number.isInteger(precision) || precision < 0) {
    throw new RangeError(`precision must be a non-negative integer, got ${precision}`);
  }
  const { negative, mantissa, exponent } = exactBinary(x);
  // scaled = |x| * 10^precision, kept exact as numerator / denominator.
  let numerator: bigint;
  let denominator: bigint;
  if (exponent >= 0) {
    numerator = (mantissa << BigInt(exponent)) * 10n ** BigInt(precision);
    denominator = 1n;
  } else {
    numerator = mantissa * 10n ** BigInt(precision);
    denominator = 1n << BigInt(-exponent);
  }
  let quotient = numerator / denominator;
  const twiceRemainder = (numerator % denominator) * 2n;
  if (twiceRemainder > denominator || (twiceRemainder === denominator && quotient % 2n === 1n)) {
    quotient += 1n;
  }
  const text = quotient.toString().padStart(precision + 1, "0");
  const integerDigits = text.slice(0, text.length - precision);
  const body = precision === 0 ? integerDigits : `${integerDigits}.${text.slice(-precision)}`;
  return negative ? `-${body}` : body;
}
