/**
 * The client and the Kafka producer against a running `flk serve`.
 *
 * infra/scripts/sdk-integration.sh starts an isolated server and sets FLK_GATEWAY_URL (tenant
 * `default` signs with FLK_TEST_SECRET; tenant `slow` allows 0.5 records/s with a burst of 1 and
 * checks no signatures), FLK_KAFKA_BROKERS and FLK_SUBMISSIONS_TOPIC, then runs
 * `node --test build/test/integration.test.js`. Without FLK_GATEWAY_URL everything here is skipped,
 * so the unit run (`bash sdk/ts/test.sh`) stays self-contained.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { describe, it } from "node:test";

import { Kafka, logLevel } from "kafkajs";

import { BundleError, decodeProofBundle, verifyBundle } from "../src/audit.js";
import { FlkClient, type GatewayOutcome } from "../src/client.js";
import { decodePcs } from "../src/decode.js";
import { RateLimitedError, UnauthorizedError } from "../src/errors.js";
import { stringifyJson } from "../src/json.js";
import { FlkProducer, SUBMISSIONS_TOPIC } from "../src/kafka.js";
import { pcsId, type Pcs } from "../src/pcs.js";
import { signHmac } from "../src/signing.js";
import { golden } from "./fixtures.js";

const GATEWAY = process.env["FLK_GATEWAY_URL"] ?? "";
const SKIP = GATEWAY === "" ? "FLK_GATEWAY_URL is not set; infra/scripts/sdk-integration.sh starts flk serve and sets it" : false;
const SECRET = process.env["FLK_TEST_SECRET"] || "testsecret";

function env(name: string): string {
  const value = process.env[name] ?? "";
  assert.ok(value, `${name} must be set when FLK_GATEWAY_URL is (see infra/scripts/sdk-integration.sh)`);
  return value;
}

/** Golden case 1 with a new merkle_root (so a new pcs_id), signed with `key`. */
function freshPcs(key: string = SECRET): Pcs {
  const pcs = decodePcs(golden("pcs_tiny_case_1.json"));
  pcs.merkle_root = randomBytes(32).toString("hex");
  pcs.pcs_id = pcsId(pcs.merkle_root, pcs.epoch, pcs.shard_id);
  pcs.sig = signHmac(pcs, key);
  return pcs;
}

/** The decision proper, without bookkeeping fields (pcs_id...) that differ between answers. */
function decision(outcome: GatewayOutcome | null | undefined): unknown {
  assert.ok(outcome, "an outcome");
  const { accepted, escalated, recomputed_D_hat, recomputed_budget, reason } = outcome;
  return { accepted, escalated, recomputed_D_hat, recomputed_budget, reason };
}

function client(options: { tenant?: string; maxRetries?: number } = {}): FlkClient {
  return new FlkClient({ baseUrl: GATEWAY, timeoutMs: 10_000, maxRetries: 2, ...options });
}

describe("FlkClient against flk serve", { skip: SKIP }, () => {
  it("accepts a fresh record, replays the duplicate, answers 409 with the first outcome, looks it up", async () => {
    const c = client();
    const pcs = freshPcs();
    const first = await c.submit(pcs);
    assert.ok(first.kind === "accepted" && !first.replayed, `first submit: ${JSON.stringify(first)}`);
    assert.equal(first.status, 200);
    assert.equal(first.outcome.recomputed_D_hat, 0.528320834);
    assert.equal(first.outcome.recomputed_budget, 0.317807017);

    const again = await c.submit(stringifyJson(pcs));
    assert.ok(again.kind === "accepted" && again.replayed, `duplicate: ${JSON.stringify(again)}`);
    assert.deepEqual(decision(again.outcome), decision(first.outcome));

    const changed: Pcs = { ...pcs, budget: 0.3178 };
    changed.sig = signHmac(changed, SECRET); // validly signed, but other signed fields
    const conflict = await c.submit(changed);
    assert.equal(conflict.kind, "conflict");
    assert.equal(conflict.status, 409);
    assert.ok(conflict.kind === "conflict" && conflict.code === "conflict");
    assert.deepEqual(decision(conflict.outcome), decision(first.outcome));

    const stored = await c.lookup(pcs.pcs_id);
    assert.ok(stored, "lookup finds the decision");
    assert.equal(stored.status, 200);
    assert.deepEqual(decision(stored.outcome), decision(first.outcome));
    assert.equal(stored.body["pcs_id"], pcs.pcs_id);
    assert.equal(stored.body["tenant"], "default");
  });

  it("looks up per tenant and answers null for an unknown id", async () => {
    const c = client();
    const pcs = freshPcs();
    assert.equal((await c.submit(pcs)).kind, "accepted");
    assert.equal(await c.lookup(freshPcs().pcs_id), null);
    assert.equal(await client({ tenant: "slow", maxRetries: 0 }).lookup(pcs.pcs_id), null);
  });

  it("throws UnauthorizedError for a bad signature, and does not cache it", async () => {
    const c = client();
    const pcs = freshPcs("not-the-tenant-secret");
    const error = await c.submit(pcs).then(
      () => assert.fail("a bad signature was accepted"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof UnauthorizedError, String(error));
    assert.equal(error.status, 401);
    assert.equal(error.code, "signature_invalid");
    assert.equal(error.attempts, 1);
    pcs.sig = signHmac(pcs, SECRET);
    const resigned = await c.submit(pcs);
    assert.ok(resigned.kind === "accepted" && !resigned.replayed);
  });

  it("honours Retry-After on tenant slow, and reports it with maxRetries 0", async () => {
    const noRetry = client({ tenant: "slow", maxRetries: 0 });
    const waits: number[] = [];
    const retrying = new FlkClient({
      baseUrl: GATEWAY,
      tenant: "slow",
      maxRetries: 5,
      backoffBaseMs: 100,
      sleep: async (ms, signal) => {
        waits.push(ms);
        await delay(ms, undefined, signal === undefined ? {} : { signal });
      },
    });

    // Spend the bucket's one token (waiting out a 429 left by another suite), so the next
    // requests surely find it empty.
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        assert.equal((await noRetry.submit(freshPcs())).kind, "accepted");
        break;
      } catch (error) {
        assert.ok(error instanceof RateLimitedError && Date.now() < deadline, String(error));
        await delay(error.retryAfterMs ?? 1000);
      }
    }

    const limited = await noRetry.submit(freshPcs()).then(
      () => assert.fail("expected a 429"),
      (e: unknown) => e,
    );
    assert.ok(limited instanceof RateLimitedError, String(limited));
    assert.equal(limited.status, 429);
    assert.equal(limited.code, "rate_limited");
    assert.equal(limited.attempts, 1);
    assert.ok(limited.retryAfterMs !== undefined && limited.retryAfterMs >= 1000, `retryAfterMs ${limited.retryAfterMs}`);

    const started = performance.now();
    const result = await retrying.submit(freshPcs());
    const elapsed = performance.now() - started;
    assert.equal(result.kind, "accepted");
    // It waited what Retry-After said (whole seconds), not its jittered backoff (<= 100 ms).
    assert.ok(waits.length > 0, "the retrying client waited");
    assert.equal(waits[0], limited.retryAfterMs);
    for (const w of waits) {
      assert.ok(w >= 1000 && w % 1000 === 0, `wait ${w} ms is not a Retry-After`);
    }
    assert.ok(elapsed >= waits.reduce((a, b) => a + b, 0) - 1, `returned after ${elapsed} ms, waits ${waits}`);
  });
});

describe("FlkProducer against flk serve", { skip: SKIP }, () => {
  it("produces a record that the server decides (found by lookup)", async () => {
    const brokers = env("FLK_KAFKA_BROKERS").split(",");
    const topic = env("FLK_SUBMISSIONS_TOPIC");
    assert.ok(topic.endsWith(SUBMISSIONS_TOPIC), `${topic} is not <prefix>${SUBMISSIONS_TOPIC}`);
    const kafka = new Kafka({ clientId: "flk-sdk-ts-integration", brokers, logLevel: logLevel.NOTHING });
    const producer = FlkProducer.create(kafka, { topicPrefix: topic.slice(0, -SUBMISSIONS_TOPIC.length) });
    assert.equal(producer.topic, topic);
    const pcs = freshPcs();
    const text = stringifyJson(pcs);
    await producer.connect();
    try {
      const metadata = await producer.send(text, { tenant: "default" });
      assert.equal(metadata[0]?.topicName, topic);
    } finally {
      await producer.disconnect();
    }

    const c = client();
    const deadline = Date.now() + 30_000;
    let wait = 50;
    let stored = await c.lookup(pcs.pcs_id);
    while (stored === null) {
      assert.ok(Date.now() < deadline, "no decision for the Kafka record within 30 s");
      await delay(wait);
      wait = Math.min(2 * wait, 500);
      stored = await c.lookup(pcs.pcs_id);
    }
    assert.equal(stored.status, 200);
    assert.equal(stored.outcome.accepted, true);
    assert.equal(stored.outcome.escalated, false);
    assert.equal(stored.outcome.recomputed_D_hat, 0.528320834);

    // The same bytes through the gateway are a duplicate of that decision.
    const replay = await c.submit(text);
    assert.ok(replay.kind === "accepted" && replay.replayed, JSON.stringify(replay));
    assert.deepEqual(decision(replay.outcome), decision(stored.outcome));
  });
});

describe("Audit proof bundle from flk serve (integration)", { skip: SKIP }, () => {
  it("verifies offline the live proof bundle of a fresh record, and refuses it for another record", async () => {
    const verifierKey = env("FLK_AUDIT_VERIFIER_KEY");
    const pcs = freshPcs();
    const submitted = await client().submit(pcs);
    assert.ok(submitted.kind === "accepted" && !submitted.replayed, `submit: ${JSON.stringify(submitted)}`);

    // Poll the proof API until the anchorer has signed a checkpoint covering the entry.
    const url = `${GATEWAY.replace(/\/+$/, "")}/v1/audit/proof?pcs_id=${encodeURIComponent(pcs.pcs_id)}`;
    const deadline = Date.now() + 30_000;
    let text: string | null = null;
    for (;;) {
      const response = await fetch(url, { headers: { "X-Tenant-Id": "default" }, signal: AbortSignal.timeout(10_000) });
      const body = await response.text();
      if (response.status === 200) {
        text = body;
        break;
      }
      assert.equal(response.status, 404, `GET ${url}: unexpected ${response.status} ${body}`);
      assert.ok(Date.now() < deadline, `no audit proof for ${pcs.pcs_id} within 30 s (still 404)`);
      await delay(100);
    }
    const bundle = decodeProofBundle(text);

    const verified = verifyBundle(bundle, verifierKey, pcs);
    assert.equal(verified.leaf.pcs_id, pcs.pcs_id);
    assert.equal(verified.leaf.tenant, "default");

    // A different record: another merkle_root (so another pcs_id)...
    const other: Pcs = { ...pcs, merkle_root: randomBytes(32).toString("hex") };
    other.pcs_id = pcsId(other.merkle_root, other.epoch, other.shard_id);
    assert.throws(
      () => verifyBundle(bundle, verifierKey, other),
      (e: unknown) => e instanceof BundleError && e.kind === "record",
    );
    // ...or the same pcs_id with another signed field (so another signed digest).
    const altered: Pcs = { ...pcs, budget: 0.3178 };
    assert.throws(
      () => verifyBundle(bundle, verifierKey, altered),
      (e: unknown) => e instanceof BundleError && e.kind === "record",
    );
  });
});
