/**
 * The PCS record (CONTRACT section 1) and its identifier.
 *
 * @module
 */

import { createHash } from "node:crypto";

import { integerText, type WireInteger } from "./epoch.js";

/** Schema name every PCS carries. */
export const PCS_SCHEMA = "fractal-lba-kakeya";

/** Schema version written by this SDK. */
export const PCS_VERSION = "0.1";

/** The three regimes a PCS may claim. */
export type Regime = "sticky" | "mixed" | "non_sticky";

/** Fault-tolerance hints an agent may attach; only `degraded` affects verification. */
export interface FaultTolerance {
  /** Agent outbox sequence number. */
  outbox_seq?: WireInteger;
  /** True when the agent ran in degraded mode; verification then escalates (section 3, step 7). */
  degraded?: boolean;
  /** Names of fallbacks the agent used. */
  fallbacks?: string[];
  /** Agent's measured clock skew in milliseconds. */
  clock_skew_ms?: WireInteger;
}

/**
 * A Proof-of-Computation Summary, schema `fractal-lba-kakeya` v0.1.
 *
 * Keys keep their wire spelling (`D_hat`, `N_j`) so an object can be posted as is.
 */
export interface Pcs {
  /** Lowercase hex SHA-256 of `merkle_root|epoch|shard_id`; see {@link pcsId}. */
  pcs_id: string;
  /** Always {@link PCS_SCHEMA}. */
  schema: string;
  /** Non-empty version string, `0.1` today. */
  version: string;
  /** The agent's shard (not a Kafka partition). */
  shard_id: string;
  /** Non-negative integer; a `bigint` when beyond 2^53 - 1. */
  epoch: WireInteger;
  /** Delivery attempt counter. */
  attempt?: WireInteger;
  /** RFC 3339 timestamp with zone. */
  sent_at?: string;
  /** Seed the agent used for its random directions. */
  seed?: WireInteger;
  /** Positive scales, in the order the regression uses. */
  scales: number[];
  /** Distinct voxel counts keyed by the decimal text of each scale. */
  N_j: Record<string, number>;
  /** Coherence: the largest fraction of points in one bin of the best projection. */
  coh_star: number;
  /** The best projection direction. */
  v_star?: number[];
  /** Claimed fractal dimension estimate. */
  D_hat: number;
  /** Compression ratio; only feeds the budget, and counts as 0.0 when absent. */
  r?: number;
  /** Claimed regime, normally a {@link Regime}; any other string fails verification step 5. */
  regime: Regime | (string & {});
  /** Claimed budget. */
  budget: number;
  /** Merkle root over the agent's canonical rows. */
  merkle_root: string;
  /** Standard base64 signature over the canonical payload, when signing is on. */
  sig?: string;
  /** Fault-tolerance hints. */
  ft?: FaultTolerance;
}

/**
 * Computes `pcs_id`: lowercase hex SHA-256 of the UTF-8 bytes of `merkle_root|epoch|shard_id`.
 *
 * @param epoch a safe integer or a bigint (numbers beyond 2^53 - 1 are rejected, since they may
 *   already have lost digits).
 * @throws RangeError for an unsafe epoch, TypeError for strings that are not valid Unicode (a lone
 *   surrogate has no UTF-8 encoding; Node would silently hash U+FFFD instead).
 */
export function pcsId(merkleRoot: string, epoch: WireInteger, shardId: string): string {
  assertWellFormed(merkleRoot, "merkle_root");
  assertWellFormed(shardId, "shard_id");
  const input = `${merkleRoot}|${integerText(epoch)}|${shardId}`;
  return createHash("sha256").update(input, "utf8").digest("hex");
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Rejects strings with lone surrogates, which cannot be encoded as UTF-8. */
export function assertWellFormed(value: string, name: string): void {
  if (LONE_SURROGATE.test(value)) {
    throw new TypeError(`${name} contains a lone surrogate and has no UTF-8 encoding`);
  }
}
