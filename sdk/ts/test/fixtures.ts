/** Shared fixtures: locations the tests read, resolved from the compiled file (build/test/*.js) up to the package. */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import type { SignedFields } from "../src/canonical.js";
import { isJsonObject, type JsonObject, type JsonValue } from "../src/json.js";

/** sdk/ts */
export const PACKAGE_ROOT = fileURLToPath(new URL("../../", import.meta.url));
/** The repository root (two levels above the package). */
export const REPO_ROOT = join(PACKAGE_ROOT, "..", "..");
/** tests/vectors at the repository root (FLK_VECTORS_DIR overrides it, to try a candidate file). */
export const VECTORS_DIR = process.env["FLK_VECTORS_DIR"] ?? join(REPO_ROOT, "tests", "vectors");
/** The shared vector file and its pinned digest. */
export const VECTOR_FILE = join(VECTORS_DIR, "pcs-vectors.json");
export const VECTOR_SHA_FILE = join(VECTORS_DIR, "pcs-vectors.json.sha256");
/** The shared audit log vectors (Merkle proofs, checkpoints, bundles) and their pinned digest. */
export const AUDIT_VECTOR_FILE = join(VECTORS_DIR, "audit-vectors.json");
export const AUDIT_VECTOR_SHA_FILE = join(VECTORS_DIR, "audit-vectors.json.sha256");
/** The built CLI, as users run it. */
export const CLI = join(PACKAGE_ROOT, "dist", "cli.js");

/** Golden records: the repo copy, else the shared folder beside the checkout. */
export const GOLDEN_DIR = [join(VECTORS_DIR, "golden"), join(REPO_ROOT, "..", "shared", "golden")].find((dir) =>
  existsSync(join(dir, "pcs_tiny_case_1.json")),
);

/** The explicit CONTRACT section 2.6 vector. */
export const CONTRACT_FIELDS: SignedFields = {
  pcs_id: "test-id",
  merkle_root: "abc123",
  epoch: 1,
  shard_id: "shard-001",
  D_hat: 1.412345679,
  coh_star: 0.73456789,
  r: 0.871234568,
  budget: 0.421234568,
};

/** Text of a golden record. */
export function golden(name: string): string {
  assert.ok(GOLDEN_DIR, "golden records not found (tests/vectors/golden or ../shared/golden)");
  return readFileSync(join(GOLDEN_DIR, name), "utf8");
}


/** The vector file's value as an object, failing the test with `what` when it is not one. */
export function object(value: JsonValue | undefined, what: string): JsonObject {
  assert.ok(isJsonObject(value), `${what} must be an object`);
  return value;
}

/** The vector file's value as an array, failing the test with `what` when it is not one. */
export function array(value: JsonValue | undefined, what: string): JsonValue[] {
  assert.ok(Array.isArray(value), `${what} must be an array`);
  return value;
}

/** The vector file's value as a string, failing the test with `what` when it is not one. */
export function text(value: JsonValue | undefined, what: string): string {
  assert.equal(typeof value, "string", `${what} must be a string`);
  return value as string;
}
