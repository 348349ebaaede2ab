/**
 * `@flk/sdk`: everything a TypeScript agent or service needs to speak the FLK wire contract.
 *
 * Layout, bottom up: `decimal` (digit-string rounding and printing), `json` (lossless parser),
 * `epoch` (exact integers), `pcs` (record type, `pcsId`), `canonical` (signed payload),
 * `signing` (HMAC, Ed25519), `decode` (untrusted JSON to `Pcs`), `verify` (section 3),
 * `audit` (offline audit proofs: Merkle, checkpoints, bundles), `client` (HTTP gateway), `kafka`
 * (direct producer). Each module only imports the ones before it.
 *
 * @module
 */

export * from "./decimal.js";
export * from "./json.js";
export * from "./epoch.js";
export * from "./pcs.js";
export * from "./canonical.js";
export * from "./signing.js";
export * from "./decode.js";
export * from "./verify.js";
export * from "./audit.js";
export * from "./errors.js";
export * from "./client.js";
export * from "./kafka.js";
