/**
 * HTTP client for the FLK gateway (CONTRACT section 4), on the global `fetch`.
 *
 * Retries are safe because the gateway deduplicates by (tenant, `pcs_id`): a resent PCS gets the
 * first decision back, marked `Idempotent-Replayed: true`. So 429, 503, other 5xx and network
 * failures are retried with exponential backoff and full jitter (or the server's `Retry-After`),
 * while 400/401/403/409/413 are answers about the request itself and are never retried.
 *
 * @module
 */

import { setTimeout as delay } from "node:timers/promises";

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
  type FlkErrorDetails,
} from "./errors.js";
import { stringifyJson } from "./json.js";
import type { Pcs } from "./pcs.js";
import type { Outcome } from "./verify.js";

/** Tenant header name. Absent means tenant `default` on the server. */
export const TENANT_HEADER = "X-Tenant-Id";

/** Header the gateway sets on a duplicate submit answered from the stored decision. */
export const REPLAYED_HEADER = "Idempotent-Replayed";

/** An outcome as the gateway returns it; extra fields (`pcs_id`, `region`, ...) are kept. */
export type GatewayOutcome = Outcome & Record<string, unknown>;

/** Verified: accepted and not escalated (HTTP 200). */
export interface AcceptedResult {
  kind: "accepted";
  status: 200;
  outcome: GatewayOutcome;
  /** True when this was a duplicate answered with the stored first decision. */
  replayed: boolean;
}

/** Any other verification outcome: escalated, or `accepted=false` (HTTP 202). */
export interface EscalatedResult {
  kind: "escalated";
  status: 202;
  outcome: GatewayOutcome;
  /** True when this was a duplicate answered with the stored first decision. */
  replayed: boolean;
}

/**
 * 409: the same `pcs_id` was already decided with different signed fields. Not an error of
 * transport: the first decision stands, and the body carries it.
 */
export interface ConflictResult {
  kind: "conflict";
  status: 409;
  /** The first decision, when the body carries one. */
  outcome: GatewayOutcome | null;
  /** Machine code from the body (`error`), when present. */
  code: string | undefined;
  /** Human text from the body (`message`), when present. */
  message: string | undefined;
}

/** What `submit` resolves to; failures reject with an {@link FlkError} subclass. */
export type SubmitResult = AcceptedResult | EscalatedResult | ConflictResult;

/** Client configuration. */
export interface ClientOptions {
  /** Gateway base URL, e.g. `http://127.0.0.1:8080`. */
  baseUrl: string | URL;
  /** Tenant sent as `X-Tenant-Id`; omitted means the server's `default` tenant. */
  tenant?: string;
  /** Per-attempt timeout in ms (covers headers and body). Default 10 000. */
  timeoutMs?: number;
  /** Retries after the first attempt. Default 5. */
  maxRetries?: number;
  /** Backoff base in ms: attempt n waits random() * min(cap, base * 2^(n-1)). Default 100. */
  backoffBaseMs?: number;
  /** Backoff cap in ms. Default 10 000. */
  backoffMaxMs?: number;
  /** Upper bound on an honoured `Retry-After`, in ms, so a bad header cannot stall forever. Default 60 000. */
  maxRetryAfterMs?: number;
  /** Extra headers on every request (e.g. authorization for a proxy). */
  headers?: Record<string, string>;
  /** Injectable fetch (defaults to the global one). */
  fetch?: typeof fetch;
  /** Injectable sleep, so tests do not really wait. Must reject when `signal` aborts. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Injectable randomness in [0, 1) for jitter. */
  random?: () => number;
}

/** Per-call options. */
export interface RequestOptions {
  /** Cancels the call, including pending retries; the rejection is the abort reason. */
  signal?: AbortSignal;
  /** W3C trace context to propagate. */
  traceparent?: string;
}

/** A decision found by `lookup`. */
export interface LookupResult {
  /**
   * The status the first submit of this `pcs_id` got (200 accepted, 202 otherwise): the `status`
   * field of the gateway's answer, or the lookup's own HTTP status when the body has none.
   */
  status: number;
  /** The stored outcome with whatever extra fields the gateway adds. */
  outcome: GatewayOutcome;
  /**
   * The whole answer: the gateway wraps the outcome as
   * `{"pcs_id", "tenant", "status", "outcome": {...}, ...}` (a bare outcome body is read too).
   */
  body: Record<string, unknown>;
}

/** One HTTP exchange's result, before classification into a result or an error. */
interface Exchange {
  response: Response;
  body: string;
}

const RETRYABLE_STATUS = (status: number): boolean => status === 429 || status >= 500;

/** Parses `Retry-After` (delta-seconds, or an HTTP date) into ms; undefined when absent or invalid. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null) {
    return undefined;
  }
  const text = value.trim();
  if (/^\d+$/.test(text)) {
    return Number(text) * 1000;
  }
  // HTTP dates start with the day name; this keeps Date.parse from reading "-1" as a year.
  const date = /^[A-Za-z]/.test(text) ? Date.parse(text) : Number.NaN;
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function parseJsonBody(body: string): unknown {
  try {
    return JSON.parse(body) as unknown;
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isOutcome(value: unknown): value is GatewayOutcome {
  return isRecord(value) && typeof value["accepted"] === "boolean" && typeof value["escalated"] === "boolean";
}

function stringField(value: unknown, key: string): string | undefined {
  return isRecord(value) && typeof value[key] === "string" ? value[key] : undefined;
}

/** Client for one gateway and one tenant. */
export class FlkClient {
  private readonly baseUrl: URL;
  private readonly tenant: string | undefined;
  private readonly timeoutMs: number;
  private readonly maxRetries: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly maxRetryAfterMs: number;
  private readonly headers: Record<string, string>;
  private readonly fetchImpl: typeof fetch;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  private readonly random: () => number;

  constructor(options: ClientOptions) {
    const base = new URL(options.baseUrl);
    if (!base.pathname.endsWith("/")) {
      base.pathname += "/"; // so relative paths resolve under a prefix, not beside it
    }
    this.baseUrl = base;
    this.tenant = options.tenant;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.maxRetries = options.maxRetries ?? 5;
    this.backoffBaseMs = options.backoffBaseMs ?? 100;
    this.backoffMaxMs = options.backoffMaxMs ?? 10_000;
    this.maxRetryAfterMs = options.maxRetryAfterMs ?? 60_000;
    this.headers = { ...options.headers };
    this.fetchImpl = options.fetch ?? globalThis.fetch;
    this.sleep = options.sleep ?? ((ms, signal) => delay(ms, undefined, signal === undefined ? {} : { signal }));
    this.random = options.random ?? Math.random;
  }

  /**
   * Submits one PCS to `POST /v1/pcs/submit`.
   *
   * @param pcs a PCS object (serialized as JSON, bigints exact), or JSON text/bytes sent verbatim.
   * @returns the decision (200 accepted, 202 escalated, each flagged when replayed) or a 409 conflict.
   * @throws {@link FlkError} subclasses: BadRequestError, UnauthorizedError, ForbiddenError,
   *   PayloadTooLargeError, RateLimitedError, UnavailableError, NetworkError, UnexpectedResponseError.
   */
  async submit(pcs: Pcs | string | Uint8Array, options: RequestOptions = {}): Promise<SubmitResult> {
    const body = typeof pcs === "string" || pcs instanceof Uint8Array ? pcs : stringifyJson(pcs);
    const { exchange, attempts } = await this.send("POST", "v1/pcs/submit", body, options);
    const { response, body: text } = exchange;
    const json = parseJsonBody(text);
    const replayed = response.headers.get(REPLAYED_HEADER)?.trim().toLowerCase() === "true";
    const details: FlkErrorDetails = { status: response.status, body: text, attempts };
    switch (response.status) {
      case 200:
      case 202:
        if (!isOutcome(json)) {
          throw new UnexpectedResponseError(`gateway answered ${response.status} without an outcome body`, details, false);
        }
        return response.status === 200
          ? { kind: "accepted", status: 200, outcome: json, replayed }
          : { kind: "escalated", status: 202, outcome: json, replayed };
      case 409: {
        const nested = isRecord(json) ? json["outcome"] : undefined;
        const outcome = isOutcome(nested) ? nested : isOutcome(json) ? json : null;
        return {
          kind: "conflict",
          status: 409,
          outcome,
          code: stringField(json, "error"),
          message: stringField(json, "message"),
        };
      }
      default:
        throw this.errorFor(exchange, attempts);
    }
  }

  /**
   * Looks up a decision by `pcs_id` (`GET /v1/pcs/{pcs_id}`), e.g. after producing to Kafka directly.
   * @returns the stored outcome, or null when the gateway knows no decision (404).
   */
  async lookup(pcsId: string, options: RequestOptions = {}): Promise<LookupResult | null> {
    const { exchange, attempts } = await this.send("GET", `v1/pcs/${encodeURIComponent(pcsId)}`, undefined, options);
    const { response, body } = exchange;
    if (response.status === 404) {
      return null;
    }
    if (response.status === 200 || response.status === 202) {
      const json = parseJsonBody(body);
      const nested = isRecord(json) ? json["outcome"] : undefined;
      const outcome = isOutcome(json) ? json : isOutcome(nested) ? nested : undefined;
      if (outcome === undefined || !isRecord(json)) {
        throw new UnexpectedResponseError(`lookup answered ${response.status} without an outcome body`, {
          status: response.status,
          body,
          attempts,
        }, false);
      }
      const stored = outcome === nested ? json["status"] : undefined;
      const status = typeof stored === "number" && Number.isInteger(stored) ? stored : response.status;
      return { status, outcome, body: json };
    }
    throw this.errorFor(exchange, attempts);
  }

  /** Backoff before retry number `retry` (1-based): full jitter, or `Retry-After` when given. */
  private backoffMs(retry: number, retryAfterMs: number | undefined): number {
    if (retryAfterMs !== undefined) {
      return Math.min(retryAfterMs, this.maxRetryAfterMs);
    }
    const ceiling = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** (retry - 1));
    return this.random() * ceiling;
  }

  /**
   * Sends a request, retrying retryable failures; resolves with the first non-retryable response
   * (or the last one when retries run out), or throws NetworkError / the caller's abort reason.
   */
  private async send(
    method: string,
    path: string,
    body: string | Uint8Array | undefined,
    options: RequestOptions,
  ): Promise<{ exchange: Exchange; attempts: number }> {
    const url = new URL(path, this.baseUrl);
    const headers: Record<string, string> = { accept: "application/json", ...this.headers };
    if (body !== undefined) {
      headers["content-type"] = "application/json";
    }
    if (this.tenant !== undefined) {
      headers[TENANT_HEADER] = this.tenant;
    }
    if (options.traceparent !== undefined) {
      headers["traceparent"] = options.traceparent;
    }
    for (let attempt = 1; ; attempt++) {
      options.signal?.throwIfAborted();
      const timeout = AbortSignal.timeout(this.timeoutMs);
      const signal = options.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout]);
      let exchange: Exchange | undefined;
      let failure: unknown;
      try {
        const init: RequestInit = { method, headers, signal };
        if (body !== undefined) {
          init.body = body;
        }
        const response = await this.fetchImpl(url, init);
        exchange = { response, body: await response.text() };
      } catch (error) {
        options.signal?.throwIfAborted(); // the caller's cancellation is not a network failure
        failure = error;
      }
      const retryable = exchange === undefined || RETRYABLE_STATUS(exchange.response.status);
      if (!retryable && exchange !== undefined) {
        return { exchange, attempts: attempt };
      }
      if (attempt > this.maxRetries) {
        if (exchange !== undefined) {
          return { exchange, attempts: attempt };
        }
        const reason = timeout.aborted ? `timed out after ${this.timeoutMs} ms` : describeError(failure);
        throw new NetworkError(`${method} ${url.pathname} failed: ${reason}`, { attempts: attempt, cause: failure }, true);
      }
      const retryAfterMs =
        exchange === undefined ? undefined : parseRetryAfter(exchange.response.headers.get("retry-after"));
      await this.sleep(this.backoffMs(attempt, retryAfterMs), options.signal);
    }
  }

  /** Maps a final non-success response to its typed error. */
  private errorFor(exchange: Exchange, attempts: number): FlkError {
    const { response, body } = exchange;
    const json = parseJsonBody(body);
    const code = stringField(json, "error");
    const serverMessage = stringField(json, "message");
    const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"));
    const details: FlkErrorDetails = { status: response.status, body, attempts };
    if (code !== undefined) details.code = code;
    if (retryAfterMs !== undefined) details.retryAfterMs = retryAfterMs;
    const message = `gateway answered ${response.status}${code === undefined ? "" : ` ${code}`}${
      serverMessage === undefined ? "" : `: ${serverMessage}`
    }`;
    switch (response.status) {
      case 400:
        return new BadRequestError(message, details, false);
      case 401:
        return new UnauthorizedError(message, details, false);
      case 403:
        return new ForbiddenError(message, details, false);
      case 413:
        return new PayloadTooLargeError(message, details, false);
      case 429:
        return new RateLimitedError(message, details, true);
      default:
        return response.status >= 500
          ? new UnavailableError(message, details, true)
          : new UnexpectedResponseError(message, details, false);
    }
  }
}

function describeError(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    return cause instanceof Error ? `${error.message} (${cause.message})` : error.message;
  }
  return String(error);
}
