/**
 * Typed errors of the gateway client, classified by what the caller must do about them:
 * fix the request (400, 413), fix credentials or configuration (401, 403), or try again later
 * (429, 503, other 5xx, network) once the client's own retries are used up.
 *
 * @module
 */

/** What the client knows about a failed HTTP exchange. */
export interface FlkErrorDetails {
  /** HTTP status, when a response arrived. */
  status?: number;
  /** Machine code from the `{"error": ..., "message": ...}` body, when present. */
  code?: string;
  /** Raw response body text (may be empty). */
  body?: string;
  /** How many requests were sent, retries included. */
  attempts: number;
  /** Server's `Retry-After`, in milliseconds, when it sent one. */
  retryAfterMs?: number;
  /** The underlying error (network failures). */
  cause?: unknown;
}

/** Base class of every error the client throws for a failed request. */
export class FlkError extends Error {
  /** HTTP status, when a response arrived. */
  readonly status: number | undefined;
  /** Machine code from the error body, when present. */
  readonly code: string | undefined;
  /** Raw response body text. */
  readonly body: string | undefined;
  /** Requests sent, retries included. */
  readonly attempts: number;
  /** Server's `Retry-After` in milliseconds, when sent. */
  readonly retryAfterMs: number | undefined;
  /** True when trying again later may succeed (the client already retried up to its limit). */
  readonly retryable: boolean;

  constructor(message: string, details: FlkErrorDetails, retryable: boolean) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.status = details.status;
    this.code = details.code;
    this.body = details.body;
    this.attempts = details.attempts;
    this.retryAfterMs = details.retryAfterMs;
    this.retryable = retryable;
  }
}

/** 400: the body is not a PCS (not an object, a wrongly typed key, bad `sent_at`). Never retried. */
export class BadRequestError extends FlkError {}

/** 401: signature missing or invalid for the tenant. Never retried. */
export class UnauthorizedError extends FlkError {}

/** 403: unknown or disabled tenant. Never retried. */
export class ForbiddenError extends FlkError {}

/** 413: body over the gateway's limit. Never retried. */
export class PayloadTooLargeError extends FlkError {}

/** 429: tenant rate limit or quota, still hit after the last retry. */
export class RateLimitedError extends FlkError {}

/** 503 or another 5xx, still failing after the last retry. Retrying later is safe. */
export class UnavailableError extends FlkError {}

/** No response: connection failure or per-attempt timeout, after the last retry. */
export class NetworkError extends FlkError {}

/** A status or body the contract does not define (e.g. 404 on submit, a non-JSON 200). */
export class UnexpectedResponseError extends FlkError {}
