/**
 * Decoding untrusted PCS JSON into a typed {@link Pcs}, with the server's notion of "malformed"
 * (HTTP 400), the same rule as the Rust `events` crate:
 * - not JSON, not an object, a key of the wrong JSON type (a float such as `1.0` where an integer
 *   belongs), an integer beyond 64 bits, a number beyond the double range, a bad `sent_at`: error;
 * - a missing key that verification step 1 names (`pcs_id`, `schema`, `version`, `shard_id`,
 *   `merkle_root`, `scales`) decodes as empty, so step 1 reports it as an outcome (202, not 400);
 * - any other missing required key (`epoch`, `N_j`, `coh_star`, `D_hat`, `regime`, `budget`): error;
 * - `null` on an optional key means absent; on a required key it is a type error.
 * Unknown keys are ignored.
 *
 * @module
 */

import { INT64_MAX, INT64_MIN, integerFromText, type WireInteger } from "./epoch.js";
import { isJsonObject, JsonNumber, JsonSyntaxError, parseJson, type JsonObject, type JsonValue } from "./json.js";
import type { SignedFields } from "./canonical.js";
import type { FaultTolerance, Pcs } from "./pcs.js";

/** A PCS body the server would reject with 400. `key` names the offending JSON key. */
export class PcsDecodeError extends Error {
  /**
   * The key at fault, as the server names it: top-level (`epoch`, `scales`), dotted inside objects
   * (`N_j.16`, `ft.degraded`); null when the body as a whole is wrong: not JSON (the message still
   * names the key whose value broke the syntax, e.g. `"D_hat": 1e400`) or not an object.
   */
  readonly key: string | null;

  constructor(key: string | null, message: string) {
    super(message);
    this.name = "PcsDecodeError";
    this.key = key;
  }
}

const UINT64_MAX = 2n ** 64n - 1n;

// RFC 3339 date-time (section 5.6 ABNF: 'T' and 'Z' case-insensitive). The optional space separator
// of the section 5.6 note is rejected, as the server does.
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;

/** True when `text` is an RFC 3339 timestamp with a zone (`Z` or an offset), with valid ranges. */
export function isRfc3339(text: string): boolean {
  const m = RFC3339.exec(text);
  if (m === null) {
    return false;
  }
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const monthDays = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  const daysInMonth = monthDays[month - 1];
  if (daysInMonth === undefined || day < 1 || day > daysInMonth) {
    return false;
  }
  if (hour > 23 || minute > 59 || second > 60) {
    return false;
  }
  if (m[7] !== undefined && (Number(m[8]) > 23 || Number(m[9]) > 59)) {
    return false;
  }
  const offsetMinutes = m[7] === undefined ? 0 : (m[7] === "-" ? -1 : 1) * (Number(m[8]) * 60 + Number(m[9]));
  if (second === 60) {
    // A leap second exists only as 23:59:60 UTC on the last day of a month (the server's rule too).
    const utc = new Date(0);
    utc.setUTCFullYear(year, month - 1, day); // not Date.UTC, which maps years 0-99 to 19xx
    utc.setUTCHours(hour, minute - offsetMinutes, 59, 0);
    const lastDay = new Date(0);
    lastDay.setUTCFullYear(utc.getUTCFullYear(), utc.getUTCMonth() + 1, 0);
    return utc.getUTCHours() === 23 && utc.getUTCMinutes() === 59 && utc.getUTCDate() === lastDay.getUTCDate();
  }
  return true;
}

/** Reads one field of the body; each getter names its path in errors. */
class Reader {
  /** @param label what is being decoded, for messages ("PCS", "signed fields"). */
  constructor(
    private readonly object: JsonObject,
    private readonly label = "PCS",
  ) {}

  /** The value, or undefined when the key is absent or JSON null (optional keys treat both alike). */
  private get(key: string): JsonValue | undefined {
    const value = this.object[key];
    return value === null ? undefined : value;
  }

  private fail(key: string, path: string, expected: string, value: JsonValue | undefined): never {
    const got = value === undefined ? "nothing" : describe(value);
    throw new PcsDecodeError(key, `malformed ${this.label}: \`${path}\` must be ${expected}, got ${got}`);
  }

  requiredPresent(key: string): void {
    if (!(key in this.object)) {
      throw new PcsDecodeError(key, `malformed ${this.label}: missing required key \`${key}\``);
    }
  }

  /** A string that verification step 1 checks for emptiness: absent (or null) decodes as "". */
  checkedString(key: string): string {
    return this.optionalString(key) ?? "";
  }

  requiredString(key: string): string {
    this.requiredPresent(key);
    const value = this.object[key];
    return typeof value === "string" ? value : this.fail(key, key, "a string", value);
  }

  optionalString(key: string): string | undefined {
    const value = this.get(key);
    if (value === undefined || typeof value === "string") {
      return value;
    }
    return this.fail(key, key, "a string", value);
  }

  integer(key: string, path: string, value: JsonValue | undefined): WireInteger {
    // `-0` too: the server's JSON parser reads it as the float -0.0, so it is no integer there.
    if (!(value instanceof JsonNumber) || !value.isIntegerLiteral || value.raw === "-0") {
      return this.fail(key, path, "an integer", value);
    }
    const big = BigInt(value.raw);
    if (big < INT64_MIN || big > INT64_MAX) {
      return this.fail(key, path, "a 64-bit integer", value);
    }
    return integerFromText(value.raw);
  }

  requiredInteger(key: string): WireInteger {
    this.requiredPresent(key);
    return this.integer(key, key, this.object[key]);
  }

  optionalInteger(key: string): WireInteger | undefined {
    const value = this.get(key);
    return value === undefined ? undefined : this.integer(key, key, value);
  }

  number(key: string, path: string, value: JsonValue | undefined): number {
    // The parser already rejected numbers beyond the double range.
    return value instanceof JsonNumber ? value.value : this.fail(key, path, "a number", value);
  }

  requiredNumber(key: string): number {
    this.requiredPresent(key);
    return this.number(key, key, this.object[key]);
  }

  optionalNumber(key: string): number | undefined {
    const value = this.get(key);
    return value === undefined ? undefined : this.number(key, key, value);
  }

  /** Absent (or null) decodes as [], which verification step 1 reports. */
  scales(): number[] {
    const value = this.get("scales");
    if (value === undefined) {
      return [];
    }
    if (!Array.isArray(value)) {
      return this.fail("scales", "scales", "an array of positive integers", value);
    }
    return value.map((item, i) => {
      // Unsigned 64-bit on the server; a double is all log2 needs.
      if (!(item instanceof JsonNumber) || !item.isIntegerLiteral || BigInt(item.raw) <= 0n || BigInt(item.raw) > UINT64_MAX) {
        return this.fail("scales", `scales[${i}]`, "a positive 64-bit integer", item);
      }
      return item.value;
    });
  }

  counts(): Record<string, number> {
    this.requiredPresent("N_j");
    const value = this.object["N_j"];
    if (!isJsonObject(value)) {
      return this.fail("N_j", "N_j", "an object of integers", value);
    }
    const counts: Record<string, number> = {};
    for (const [scale, count] of Object.entries(value)) {
      // Number(): counts only feed log2, where a double is what the server uses too.
      counts[scale] = Number(this.integer(`N_j.${scale}`, `N_j.${scale}`, count));
    }
    return counts;
  }

  numberArray(key: string): number[] | undefined {
    const value = this.get(key);
    if (value === undefined) {
      return undefined;
    }
    if (!Array.isArray(value)) {
      return this.fail(key, key, "an array of numbers", value);
    }
    return value.map((item, i) => this.number(key, `${key}[${i}]`, item));
  }

  /** Any string decodes; a value other than the three regimes fails verification step 5 instead. */
  regime(): string {
    this.requiredPresent("regime");
    const value = this.object["regime"];
    return typeof value === "string" ? value : this.fail("regime", "regime", "a string", value);
  }

  faultTolerance(): FaultTolerance | undefined {
    const value = this.get("ft");
    if (value === undefined) {
      return undefined;
    }
    if (!isJsonObject(value)) {
      return this.fail("ft", "ft", "an object", value);
    }
    const ft: FaultTolerance = {};
    const field = (name: string): JsonValue | undefined => {
      const v = value[name];
      return v === null ? undefined : v;
    };
    const outboxSeq = field("outbox_seq");
    if (outboxSeq !== undefined) {
      ft.outbox_seq = this.integer("ft.outbox_seq", "ft.outbox_seq", outboxSeq);
    }
    const degraded = field("degraded");
    if (degraded !== undefined) {
      ft.degraded = typeof degraded === "boolean" ? degraded : this.fail("ft.degraded", "ft.degraded", "a boolean", degraded);
    }
    const fallbacks = field("fallbacks");
    if (fallbacks !== undefined) {
      if (!Array.isArray(fallbacks)) {
        return this.fail("ft.fallbacks", "ft.fallbacks", "an array of strings", fallbacks);
      }
      ft.fallbacks = fallbacks.map((item, i) =>
        typeof item === "string" ? item : this.fail("ft.fallbacks", `ft.fallbacks[${i}]`, "a string", item),
      );
    }
    const skew = field("clock_skew_ms");
    if (skew !== undefined) {
      ft.clock_skew_ms = this.integer("ft.clock_skew_ms", "ft.clock_skew_ms", skew);
    }
    return ft;
  }
}

function describe(value: JsonValue): string {
  if (value === null) {
    return "null";
  }
  if (value instanceof JsonNumber) {
    return value.raw;
  }
  if (Array.isArray(value)) {
    return "an array";
  }
  if (typeof value === "object") {
    return "an object";
  }
  return typeof value === "string" ? "a string" : String(value);
}

/**
 * Decodes a parsed JSON value (from {@link parseJson}) into a PCS.
 * @throws PcsDecodeError naming the offending key.
 */
export function pcsFromJson(value: JsonValue): Pcs {
  if (!isJsonObject(value)) {
    throw new PcsDecodeError(null, "malformed PCS: body is not a JSON object");
  }
  const reader = new Reader(value);
  const pcs: Pcs = {
    pcs_id: reader.checkedString("pcs_id"),
    schema: reader.checkedString("schema"),
    version: reader.checkedString("version"),
    shard_id: reader.checkedString("shard_id"),
    epoch: reader.requiredInteger("epoch"),
    scales: reader.scales(),
    N_j: reader.counts(),
    coh_star: reader.requiredNumber("coh_star"),
    D_hat: reader.requiredNumber("D_hat"),
    regime: reader.regime(),
    budget: reader.requiredNumber("budget"),
    merkle_root: reader.checkedString("merkle_root"),
  };
  const attempt = reader.optionalInteger("attempt");
  if (attempt !== undefined) pcs.attempt = attempt;
  const sentAt = reader.optionalString("sent_at");
  if (sentAt !== undefined) {
    if (!isRfc3339(sentAt)) {
      throw new PcsDecodeError("sent_at", `malformed PCS: \`sent_at\` must be RFC 3339 with a zone, got ${JSON.stringify(sentAt)}`);
    }
    pcs.sent_at = sentAt;
  }
  const seed = reader.optionalInteger("seed");
  if (seed !== undefined) pcs.seed = seed;
  const vStar = reader.numberArray("v_star");
  if (vStar !== undefined) pcs.v_star = vStar;
  const r = reader.optionalNumber("r");
  if (r !== undefined) pcs.r = r;
  const sig = reader.optionalString("sig");
  if (sig !== undefined) pcs.sig = sig;
  const ft = reader.faultTolerance();
  if (ft !== undefined) pcs.ft = ft;
  return pcs;
}

/**
 * Reads the 8 signed fields from a parsed JSON object. By default all 8 are required, `r` included,
 * as signing tools take them (a forgotten `r` is an error rather than a silent 0.0); with
 * `requireR: false` an absent `r` counts as 0.0, as in a PCS. Other keys are ignored.
 * @throws PcsDecodeError naming the offending key.
 */
export function signedFieldsFromJson(value: JsonValue, options: { requireR?: boolean } = {}): SignedFields {
  if (!isJsonObject(value)) {
    throw new PcsDecodeError(null, "malformed signed fields: not a JSON object");
  }
  const reader = new Reader(value, "signed fields");
  return {
    pcs_id: reader.requiredString("pcs_id"),
    merkle_root: reader.requiredString("merkle_root"),
    epoch: reader.requiredInteger("epoch"),
    shard_id: reader.requiredString("shard_id"),
    D_hat: reader.requiredNumber("D_hat"),
    coh_star: reader.requiredNumber("coh_star"),
    r: options.requireR === false ? reader.optionalNumber("r") : reader.requiredNumber("r"),
    budget: reader.requiredNumber("budget"),
  };
}

/** Parses JSON text for the decoders, turning syntax errors into {@link PcsDecodeError}. */
export function parseJsonForDecode(text: string): JsonValue {
  try {
    return parseJson(text);
  } catch (error) {
    if (error instanceof JsonSyntaxError) {
      // Like the server, a syntax error is about the body, not a key; the message says where.
      throw new PcsDecodeError(null, `malformed JSON: ${error.message}`);
    }
    throw error;
  }
}

/**
 * Decodes PCS JSON text, checking the raw text of integers (`"epoch": 1.0` is malformed, which
 * `JSON.parse` cannot tell apart from `1`).
 * @throws PcsDecodeError naming the offending key (null when the body is not a JSON object).
 */
export function decodePcs(text: string): Pcs {
  return pcsFromJson(parseJsonForDecode(text));
}

/**
 * Converts an already-parsed plain JS value (e.g. from `JSON.parse`) into the lossless form, so it
 * can go through the same checks. Integer-ness is judged from the number itself here, since the
 * source text is gone; `bigint` values are kept exact.
 */
export function toJsonValue(value: unknown, path = "$"): JsonValue {
  if (value === null || typeof value === "boolean" || typeof value === "string") {
    return value;
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) {
      throw new TypeError(`${path}: ${value} cannot appear in JSON`);
    }
    // String() is the shortest round-trip text, so safe integers print without '.' or exponent,
    // as they would in JSON.
    return new JsonNumber(String(value));
  }
  if (typeof value === "bigint") {
    return new JsonNumber(value.toString());
  }
  if (Array.isArray(value)) {
    return value.map((item, i) => toJsonValue(item, `${path}[${i}]`));
  }
  if (typeof value === "object") {
    const out: JsonObject = Object.create(null) as JsonObject;
    for (const [key, item] of Object.entries(value)) {
      if (item !== undefined) {
        out[key] = toJsonValue(item, `${path}.${key}`);
      }
    }
    return out;
  }
  throw new TypeError(`${path}: a ${typeof value} cannot appear in JSON`);
}

/** Decodes a PCS from a plain JS object. @throws PcsDecodeError naming the offending key. */
export function pcsFromObject(value: unknown): Pcs {
  return pcsFromJson(toJsonValue(value));
}
