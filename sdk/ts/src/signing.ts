/**
 * PCS signatures over the canonical payload (CONTRACT sections 2.4, 2.5, 2.7).
 *
 * Verification never throws on a malformed signature: a bad signature is just "not valid", so a
 * caller cannot be tricked into a different error path by what an attacker sends.
 *
 * @module
 */

import {
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  sign as cryptoSign,
  timingSafeEqual,
  verify as cryptoVerify,
  KeyObject,
} from "node:crypto";

import { canonicalPayloadBytes, type SignedFields } from "./canonical.js";

/** A key given as text (its UTF-8 bytes are used) or as raw bytes. */
export type KeyMaterial = string | Uint8Array;

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Decodes standard base64 with padding, strictly: Node's decoder silently skips bad characters,
 * which would let two different strings stand for one signature.
 * @returns the bytes, or null when the text is not canonical standard base64.
 */
export function decodeBase64Strict(text: string): Buffer | null {
  if (typeof text !== "string" || !BASE64.test(text)) {
    return null;
  }
  const bytes = Buffer.from(text, "base64");
  // Non-zero padding bits decode fine but do not round-trip; reject them too.
  return bytes.toString("base64") === text ? bytes : null;
}

/** A Buffer view of caller bytes, without copying. */
function view(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Exactly 32 raw bytes, given raw or as standard base64 text. */
function raw32(material: KeyMaterial, what: string): Buffer {
  const bytes = typeof material === "string" ? decodeBase64Strict(material) : view(material);
  if (bytes === null || bytes.length !== 32) {
    throw new TypeError(`${what} must be 32 bytes (raw, or standard base64 text)`);
  }
  return bytes;
}

function sha256(data: Uint8Array): Buffer {
  return createHash("sha256").update(data).digest();
}

function hmac(key: KeyMaterial, message: Uint8Array): Buffer {
  return createHmac("sha256", typeof key === "string" ? Buffer.from(key, "utf8") : view(key)).update(message).digest();
}

function equalsConstantTime(expected: Buffer, given: string): boolean {
  const decoded = decodeBase64Strict(given);
  if (decoded === null || decoded.length !== expected.length) {
    return false;
  }
  return timingSafeEqual(expected, decoded);
}

/** `base64(HMAC-SHA256(key, payload))`; the key may be any string, including empty. */
export function signHmac(fields: SignedFields, key: KeyMaterial): string {
  return hmac(key, canonicalPayloadBytes(fields)).toString("base64");
}

/** Legacy pre-hash signature `base64(HMAC-SHA256(key, SHA-256(payload)))` (section 2.7). */
export function signHmacPrehash(fields: SignedFields, key: KeyMaterial): string {
  return hmac(key, sha256(canonicalPayloadBytes(fields))).toString("base64");
}

/** Options for {@link verifyHmac}. */
export interface HmacVerifyOptions {
  /** Also accept the legacy pre-hash form; a per-tenant opt-in on the server, off by default. */
  allowPrehash?: boolean;
}

/** Checks an HMAC signature in constant time; never throws on a malformed `sig`. */
export function verifyHmac(
  fields: SignedFields,
  key: KeyMaterial,
  sig: string,
  options: HmacVerifyOptions = {},
): boolean {
  const payload = canonicalPayloadBytes(fields);
  if (equalsConstantTime(hmac(key, payload), sig)) {
    return true;
  }
  return options.allowPrehash === true && equalsConstantTime(hmac(key, sha256(payload)), sig);
}

// DER prefixes that wrap a raw 32-byte Ed25519 key (RFC 8410), so node:crypto can load it.
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/** Builds a private key object from a 32-byte seed (raw bytes or standard base64). */
export function ed25519PrivateKey(seed: KeyMaterial): KeyObject {
  return createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519_PREFIX, raw32(seed, "ed25519 seed")]),
    format: "der",
    type: "pkcs8",
  });
}

/** The raw 32-byte public key of a seed, as standard base64 (the wire form of public keys). */
export function ed25519PublicKey(seed: KeyMaterial): string {
  const spki = createPublicKey(ed25519PrivateKey(seed)).export({ format: "der", type: "spki" });
  return spki.subarray(SPKI_ED25519_PREFIX.length).toString("base64");
}

/**
 * `base64(Ed25519_sign(seed, SHA-256(payload)))`: the 32-byte digest is the signed message, as
 * the original agent did it (section 2.5).
 */
export function signEd25519(fields: SignedFields, seed: KeyMaterial | KeyObject): string {
  const key = seed instanceof KeyObject ? seed : ed25519PrivateKey(seed);
  return cryptoSign(null, sha256(canonicalPayloadBytes(fields)), key).toString("base64");
}

/**
 * Verifies an Ed25519 signature against a raw public key (standard base64 or 32 bytes).
 * Returns false, never throws, for a malformed signature; throws TypeError for a malformed key,
 * since that is a configuration error rather than bad input.
 */
export function verifyEd25519(fields: SignedFields, publicKey: KeyMaterial | KeyObject, sig: string): boolean {
  const key = publicKey instanceof KeyObject ? publicKey : ed25519PublicKeyObject(publicKey);
  const signature = decodeBase64Strict(sig);
  if (signature === null || signature.length !== 64) {
    return false;
  }
  return cryptoVerify(null, sha256(canonicalPayloadBytes(fields)), key, signature);
}

function ed25519PublicKeyObject(publicKey: KeyMaterial): KeyObject {
  const raw = raw32(publicKey, "ed25519 public key");
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: "der", type: "spki" });
}
