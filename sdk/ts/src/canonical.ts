/**
 * The canonical signing payload, CONTRACT section 2.
 *
 * Signatures cover these bytes, so every SDK and the server must produce them identically. The
 * format follows Python's `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=True)`
 * over floats rounded to 9 decimals, because the original agent was written that way.
 *
 * @module
 */

import { formatPythonFloat, round9 } from "./decimal.js";
import { integerText, type WireInteger } from "./epoch.js";

/** The 8 signed fields (section 2.1). Nothing else in a PCS is signed. */
export interface SignedFields {
  pcs_id: string;
  merkle_root: string;
  /** A safe integer or a bigint. */
  epoch: WireInteger;
  shard_id: string;
  D_hat: number;
  coh_star: number;
  /** Absent counts as 0.0, as the original agent signed it. */
  r?: number | undefined;
  budget: number;
}

/**
 * Escapes a string as the contract's ASCII-only JSON: short escapes for `"` `\` and five controls,
 * `\uXXXX` (lowercase hex, per UTF-16 code unit, so astral characters become surrogate pairs) for
 * everything else outside 0x20..0x7E, and `<>&/` literal.
 *
 * `JSON.stringify` differs (it leaves non-ASCII raw), so it must not be used here.
 */
export function canonicalString(value: string): string {
  let out = '"';
  for (let i = 0; i < value.length; i++) {
    const unit = value.charCodeAt(i);
    switch (unit) {
      case 0x22:
        out += '\\"';
        break;
      case 0x5c:
        out += "\\\\";
        break;
      case 0x0a:
        out += "\\n";
        break;
      case 0x0d:
        out += "\\r";
        break;
      case 0x09:
        out += "\\t";
        break;
      case 0x08:
        out += "\\b";
        break;
      case 0x0c:
        out += "\\f";
        break;
      default:
        out +=
          unit >= 0x20 && unit <= 0x7e ? value[i] : `\\u${unit.toString(16).padStart(4, "0")}`;
    }
  }
  return `${out}"`;
}

/** Rounds (section 2.2) and prints (section 2.3) one signed float. */
export function canonicalFloat(value: number, name: string): string {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new TypeError(`${name} must be a finite number, got ${String(value)}`);
  }
  return formatPythonFloat(round9(value));
}

function requireString(value: unknown, name: string): string {
  if (typeof value !== "string") {
    throw new TypeError(`${name} must be a string, got ${typeof value}`);
  }
  return value;
}

/**
 * Builds the canonical payload text. It is pure ASCII, so its UTF-8 bytes are its characters.
 *
 * Keys are in code-point order: `D_hat, budget, coh_star, epoch, merkle_root, pcs_id, r, shard_id`
 * (upper-case `D` sorts before lower-case letters).
 *
 * @throws TypeError for a missing or mistyped field, RangeError for an unsafe `number` epoch.
 */
export function canonicalPayload(fields: SignedFields): string {
  const parts = [
    `"D_hat":${canonicalFloat(fields.D_hat, "D_hat")}`,
    `"budget":${canonicalFloat(fields.budget, "budget")}`,
    `"coh_star":${canonicalFloat(fields.coh_star, "coh_star")}`,
    `"epoch":${integerText(fields.epoch)}`,
    `"merkle_root":${canonicalString(requireString(fields.merkle_root, "merkle_root"))}`,
    `"pcs_id":${canonicalString(requireString(fields.pcs_id, "pcs_id"))}`,
    `"r":${canonicalFloat(fields.r ?? 0, "r")}`,
    `"shard_id":${canonicalString(requireString(fields.shard_id, "shard_id"))}`,
  ];
  return `{${parts.join(",")}}`;
}

/** The canonical payload as the bytes that are signed. */
export function canonicalPayloadBytes(fields: SignedFields): Buffer {
  return Buffer.from(canonicalPayload(fields), "ascii");
}
