import assert from "node:assert/strict";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";

import { FlkClient, parseRetryAfter, type ClientOptions } from "../src/client.js";
import {
  BadRequestError,
  FlkError,
  ForbiddenError,
  NetworkError,
  PayloadTooLargeError,
  RateLimitedError,
  UnauthorizedError,
  UnavailableError,
  UnexpectedResponseError,
} from "../src/errors.js";
import { golden } from "./fixtures.js";

/** What the scripted server does with one request. */
type Step =
  | { status: number; body?: string; headers?: Record<string, string> }
  | "drop" // destroy the socket without answering: a network error
  | "hang"; // never answer: a timeout

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

const ACCEPTED = '{"accepted":true,"escalated":false,"recomputed_D_hat":0.528320834,"recomputed_budget":0.317807017,"pcs_id":"x"}';
const ESCALATED = '{"accepted":true,"escalated":true,"reason":"agent reported degraded mode"}';

let server: Server;
let baseUrl: string;
let script: Step[] = [];
let seen: Seen[] = [];

before(async () => {
  server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      seen.push({
        method: request.method ?? "",
        url: request.url ?? "",
        headers: request.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      });
      const step = script.shift() ?? { status: 599, body: "script exhausted" };
      if (step === "drop") {
        request.socket.destroy();
        return;
      }
      if (step === "hang") {
        return;
      }
      response.writeHead(step.status, { "content-type": "application/json", ...step.headers });
      response.end(step.body ?? "");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  script = [];
  seen = [];
});

/** A client whose sleeps are recorded, not waited, with jitter fixed at 0.5. */
function client(options: Partial<ClientOptions> = {}): { client: FlkClient; sleeps: number[] } {
  const sleeps: number[] = [];
  const instance = new FlkClient({
    baseUrl,
    tenant: "acme",
    backoffBaseMs: 100,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
    ...options,
  });
  return { client: instance, sleeps };
}

const PCS_TEXT = golden("pcs_tiny_case_1.json");

async function rejectsWith<T extends FlkError>(promise: Promise<unknown>, type: new (...args: never[]) => T): Promise<T> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof type, `expected ${type.name}, got ${String(error)}`);
    return error;
  }
  assert.fail(`expected ${type.name}, but the call succeeded`);
}

describe("FlkClient.submit", () => {
  it("posts the exact body with the tenant header and returns an accepted result", async () => {
    script = [{ status: 200, body: ACCEPTED }];
    const { client: c, sleeps } = client();
    const result = await c.submit(PCS_TEXT, { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" });
    assert.equal(result.kind, "accepted");
    assert.equal(result.status, 200);
    assert.ok(result.kind === "accepted" && !result.replayed);
    assert.equal(result.outcome.recomputed_budget, 0.317807017);
    assert.equal(result.outcome["pcs_id"], "x");
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.method, "POST");
    assert.equal(seen[0]?.url, "/v1/pcs/submit");
    assert.equal(seen[0]?.headers["x-tenant-id"], "acme");
    assert.equal(seen[0]?.headers["content-type"], "application/json");
    assert.equal(seen[0]?.headers["traceparent"], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert.equal(seen[0]?.body, PCS_TEXT);
    assert.deepEqual(sleeps, []);
  });

  it("omits the tenant header when no tenant is configured, and keeps a base path", async () => {
    script = [{ status: 200, body: ACCEPTED }];
    const c = new FlkClient({ baseUrl: `${baseUrl}/gw` });
    await c.submit(PCS_TEXT);
    assert.equal(seen[0]?.headers["x-tenant-id"], undefined);
    assert.equal(seen[0]?.url, "/gw/v1/pcs/submit");
  });

  it("serializes objects with bigint epochs exactly", async () => {
    script = [{ status: 202, body: ESCALATED }];
    const pcs = { ...(JSON.parse(PCS_TEXT) as Record<string, unknown>), epoch: 2n ** 62n };
    const { client: c } = client();
    await c.submit(pcs as never);
    assert.match(seen[0]?.body ?? "", /"epoch":4611686018427387904[,}]/);
  });

  it("returns escalated results for 202 and flags replayed duplicates", async () => {
    script = [
      { status: 202, body: ESCALATED },
      { status: 202, body: ESCALATED, headers: { "Idempotent-Replayed": "true" } },
      { status: 200, body: ACCEPTED, headers: { "Idempotent-Replayed": "true" } },
    ];
    const { client: c } = client();
    const first = await c.submit(PCS_TEXT);
    assert.ok(first.kind === "escalated" && first.status === 202 && !first.replayed);
    assert.equal(first.outcome.reason, "agent reported degraded mode");
    const second = await c.submit(PCS_TEXT);
    assert.ok(second.kind === "escalated" && second.replayed);
    const third = await c.submit(PCS_TEXT);
    assert.ok(third.kind === "accepted" && third.replayed);
  });

  it("returns a conflict with the first outcome for 409, without retrying", async () => {
    script = [
      { status: 409, body: `{"error":"conflict","message":"already decided","outcome":${ACCEPTED}}` },
      { status: 409, body: ESCALATED },
    ];
    const { client: c, sleeps } = client();
    const nested = await c.submit(PCS_TEXT);
    assert.ok(nested.kind === "conflict");
    assert.equal(nested.code, "conflict");
    assert.equal(nested.message, "already decided");
    assert.equal(nested.outcome?.accepted, true);
    const flat = await c.submit(PCS_TEXT);
    assert.ok(flat.kind === "conflict" && flat.outcome?.escalated === true);
    assert.equal(seen.length, 2);
    assert.deepEqual(sleeps, []);
  });

  it("honours Retry-After on 429, then succeeds", async () => {
    script = [
      { status: 429, body: '{"error":"rate_limited","message":"slow down"}', headers: { "Retry-After": "2" } },
      { status: 200, body: ACCEPTED },
    ];
    const { client: c, sleeps } = client();
    const result = await c.submit(PCS_TEXT);
    assert.equal(result.kind, "accepted");
    assert.deepEqual(sleeps, [2000]);
    assert.equal(seen.length, 2);
    assert.equal(seen[1]?.body, PCS_TEXT);
  });

  it("caps an absurd Retry-After", async () => {
    script = [{ status: 503, headers: { "Retry-After": "86400" } }, { status: 200, body: ACCEPTED }];
    const { client: c, sleeps } = client({ maxRetryAfterMs: 30_000 });
    await c.submit(PCS_TEXT);
    assert.deepEqual(sleeps, [30_000]);
  });

  it("retries 503 and other 5xx with exponential backoff and full jitter", async () => {
    script = [{ status: 503 }, { status: 500 }, { status: 502 }, { status: 504 }, { status: 200, body: ACCEPTED }];
    const { client: c, sleeps } = client({ backoffMaxMs: 350 });
    const result = await c.submit(PCS_TEXT);
    assert.equal(result.kind, "accepted");
    // random() = 0.5 of min(cap, 100 * 2^(n-1)): 100, 200, 400->350 (capped), 800->350.
    assert.deepEqual(sleeps, [50, 100, 175, 175]);
  });

  it("spreads delays over [0, ceiling) with the injected randomness", async () => {
    script = [{ status: 503 }, { status: 503 }, { status: 200, body: ACCEPTED }];
    const draws = [0, 0.999];
    const { client: c, sleeps } = client({ random: () => draws.shift() ?? 0 });
    await c.submit(PCS_TEXT);
    assert.equal(sleeps[0], 0);
    assert.ok((sleeps[1] ?? 0) > 199 && (sleeps[1] ?? 0) < 200);
  });

  it("gives up after maxRetries with a typed, retryable error", async () => {
    script = [
      { status: 503, body: '{"error":"unavailable","message":"log down"}', headers: { "Retry-After": "1" } },
      { status: 503, body: '{"error":"unavailable","message":"log down"}', headers: { "Retry-After": "1" } },
      { status: 503, body: '{"error":"unavailable","message":"log down"}', headers: { "Retry-After": "1" } },
    ];
    const { client: c, sleeps } = client({ maxRetries: 2 });
    const error = await rejectsWith(c.submit(PCS_TEXT), UnavailableError);
    assert.equal(error.status, 503);
    assert.equal(error.code, "unavailable");
    assert.equal(error.attempts, 3);
    assert.equal(error.retryAfterMs, 1000);
    assert.equal(error.retryable, true);
    assert.match(error.message, /503 unavailable: log down/);
    assert.deepEqual(sleeps, [1000, 1000]);
  });

  it("reports exhausted 429 as RateLimitedError", async () => {
    script = [{ status: 429 }, { status: 429 }];
    const { client: c } = client({ maxRetries: 1 });
    const error = await rejectsWith(c.submit(PCS_TEXT), RateLimitedError);
    assert.equal(error.attempts, 2);
  });

  for (const [status, type, code] of [
    [400, BadRequestError, "malformed"],
    [401, UnauthorizedError, "bad_signature"],
    [403, ForbiddenError, "unknown_tenant"],
    [413, PayloadTooLargeError, "too_large"],
    [404, UnexpectedResponseError, "not_found"],
  ] as const) {
    it(`never retries ${status}`, async () => {
      script = [{ status, body: JSON.stringify({ error: code, message: "no" }) }, { status: 200, body: ACCEPTED }];
      const { client: c, sleeps } = client();
      const error = await rejectsWith(c.submit(PCS_TEXT), type as new (...args: never[]) => FlkError);
      assert.equal(error.status, status);
      assert.equal(error.code, code);
      assert.equal(error.attempts, 1);
      assert.equal(error.retryable, false);
      assert.equal(seen.length, 1);
      assert.deepEqual(sleeps, []);
    });
  }

  it("rejects a success status without an outcome body", async () => {
    script = [{ status: 200, body: "OK" }];
    const { client: c } = client();
    await rejectsWith(c.submit(PCS_TEXT), UnexpectedResponseError);
  });

  it("retries network errors, then succeeds", async () => {
    script = ["drop", "drop", { status: 200, body: ACCEPTED }];
    const { client: c, sleeps } = client();
    const result = await c.submit(PCS_TEXT);
    assert.equal(result.kind, "accepted");
    assert.deepEqual(sleeps, [50, 100]);
    assert.equal(seen.length, 3);
  });

  it("turns repeated network errors into NetworkError", async () => {
    script = ["drop", "drop"];
    const { client: c } = client({ maxRetries: 1 });
    const error = await rejectsWith(c.submit(PCS_TEXT), NetworkError);
    assert.equal(error.attempts, 2);
    assert.equal(error.status, undefined);
    assert.ok(error.cause !== undefined);
  });

  it("times out each attempt and retries", async () => {
    script = ["hang", { status: 200, body: ACCEPTED }];
    const { client: c, sleeps } = client({ timeoutMs: 100 });
    const result = await c.submit(PCS_TEXT);
    assert.equal(result.kind, "accepted");
    assert.equal(sleeps.length, 1);
    script = ["hang"];
    const error = await rejectsWith(client({ timeoutMs: 100, maxRetries: 0 }).client.submit(PCS_TEXT), NetworkError);
    assert.match(error.message, /timed out after 100 ms/);
  });

  it("stops retrying when the caller aborts", async () => {
    script = [{ status: 503 }, { status: 200, body: ACCEPTED }];
    const controller = new AbortController();
    const c = new FlkClient({
      baseUrl,
      sleep: async () => {
        controller.abort(new Error("caller gave up"));
        throw new Error("caller gave up");
      },
    });
    await assert.rejects(c.submit(PCS_TEXT, { signal: controller.signal }), /caller gave up/);
    assert.equal(seen.length, 1);
  });

  it("does not send at all with an already aborted signal", async () => {
    const c = new FlkClient({ baseUrl });
    await assert.rejects(c.submit(PCS_TEXT, { signal: AbortSignal.abort(new Error("nope")) }), /nope/);
    assert.equal(seen.length, 0);
  });

  it("uses a real, abortable sleep by default", async () => {
    script = [{ status: 503, headers: { "Retry-After": "60" } }];
    const c = new FlkClient({ baseUrl });
    const controller = new AbortController();
    const pending = c.submit(PCS_TEXT, { signal: controller.signal });
    const deadline = Date.now() + 5000;
    while (seen.length === 0) {
      assert.ok(Date.now() < deadline, "the request never reached the server");
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    controller.abort(new Error("shutting down"));
    await assert.rejects(pending, /abort|shutting down/i);
  });
});

describe("FlkClient.lookup", () => {
  it("GETs /v1/pcs/{pcs_id} with the tenant header", async () => {
    script = [{ status: 200, body: ACCEPTED }];
    const { client: c } = client();
    const found = await c.lookup("c50bb25a");
    assert.equal(found?.outcome.accepted, true);
    assert.equal(seen[0]?.method, "GET");
    assert.equal(seen[0]?.url, "/v1/pcs/c50bb25a");
    assert.equal(seen[0]?.headers["x-tenant-id"], "acme");
  });

  it("unwraps the gateway's envelope and reports the stored status", async () => {
    script = [
      {
        status: 200,
        body: `{"outcome":${ESCALATED},"pcs_id":"p1","source":"cache","status":202,"tenant":"acme","tier":"hot"}`,
      },
      { status: 200, body: '{"pcs_id":"p1","status":200}' },
    ];
    const { client: c } = client();
    const found = await c.lookup("p1");
    assert.equal(found?.status, 202);
    assert.deepEqual(found?.outcome, JSON.parse(ESCALATED));
    assert.equal(found?.body["tenant"], "acme");
    await rejectsWith(c.lookup("p1"), UnexpectedResponseError);
  });

  it("escapes the id into one path segment", async () => {
    script = [{ status: 404, body: '{"error":"not_found","message":"no"}' }];
    const { client: c } = client();
    assert.equal(await c.lookup("../a b?"), null);
    assert.equal(seen[0]?.url, "/v1/pcs/..%2Fa%20b%3F");
  });

  it("retries 503 like submit", async () => {
    script = [{ status: 503 }, { status: 200, body: ESCALATED }];
    const { client: c, sleeps } = client();
    assert.equal((await c.lookup("x"))?.outcome.escalated, true);
    assert.deepEqual(sleeps, [50]);
  });

  it("raises typed errors for other statuses", async () => {
    script = [{ status: 403, body: '{"error":"unknown_tenant","message":"who?"}' }];
    const { client: c } = client();
    await rejectsWith(c.lookup("x"), ForbiddenError);
  });
});

describe("parseRetryAfter", () => {
  it("reads delta-seconds and HTTP dates", () => {
    assert.equal(parseRetryAfter("3"), 3000);
    assert.equal(parseRetryAfter(" 0 "), 0);
    assert.equal(parseRetryAfter(null), undefined);
    assert.equal(parseRetryAfter("soon"), undefined);
    assert.equal(parseRetryAfter("-1"), undefined);
    const now = Date.parse("2025-01-19T12:00:00Z");
    assert.equal(parseRetryAfter("Sun, 19 Jan 2025 12:00:05 GMT", now), 5000);
    assert.equal(parseRetryAfter("Sun, 19 Jan 2025 11:00:00 GMT", now), 0);
  });
});
