"""HTTP gateway client (CONTRACT section 4) with safe retries.

Submitting is idempotent on the server (the first decision per tenant and ``pcs_id`` wins and a
replay gets the stored outcome), so it is always safe to resend after a network error, a 429 or a
5xx. It is never useful to resend after 400/401/403/409/413: the same bytes get the same answer, so
those raise (or, for 409, return) immediately.

Backoff is exponential with *full jitter* (sleep a uniform random time in ``[0, min(cap, base*2^n)]``)
so that many agents throttled at once do not retry in lockstep; a ``Retry-After`` from the server
takes precedence because the server knows when capacity returns. ``sleep`` and ``random`` are
injectable so tests run without real waiting.
"""

from __future__ import annotations

import http.client
import json
import random as _random
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Mapping, Optional, Tuple, Type, Union
from urllib.parse import quote, urlsplit

from .pcs import PCS
from .verify import Outcome

__all__ = [
    "Accepted",
    "BadRequest",
    "Client",
    "Conflict",
    "DuplicateReplay",
    "Escalated",
    "FlkError",
    "Forbidden",
    "PayloadTooLarge",
    "RetriesExhausted",
    "SubmitResult",
    "Unauthorized",
    "UnexpectedResponse",
]

_USER_AGENT = "flk-sdk-python/0.1.0"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Accepted:
    """200: verified, accepted and not escalated."""

    outcome: Outcome
    status: int = 200


@dataclass(frozen=True)
class Escalated:
    """202: any other verification outcome (escalated, or not accepted). Check ``outcome.reason``."""

    outcome: Outcome
    status: int = 202


@dataclass(frozen=True)
class DuplicateReplay:
    """The record was already decided; this is the stored first outcome with its original status."""

    outcome: Outcome
    status: int

    @property
    def accepted(self) -> bool:
        return self.outcome.accepted and not self.outcome.escalated


@dataclass(frozen=True)
class Conflict:
    """409: the same tenant and ``pcs_id`` were decided with *different* signed fields.

    ``outcome`` is the first decision (which stands); ``body`` is the raw response for details.
    """

    outcome: Optional[Outcome]
    body: Mapping[str, Any] = field(default_factory=dict)
    status: int = 409


SubmitResult = Union[Accepted, Escalated, DuplicateReplay, Conflict]


# --------------------------------------------------------------------------- errors


class FlkError(Exception):
    """Base class of every error the client raises."""

    def __init__(self, message: str, status: Optional[int] = None, code: Optional[str] = None,
                 body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body


class BadRequest(FlkError):
    """400: not a JSON object, a key of the wrong type, or a bad ``sent_at``. Fix the record."""


class Unauthorized(FlkError):
    """401: signature missing or invalid for this tenant. Check the key and the signed fields."""


class Forbidden(FlkError):
    """403: unknown or disabled tenant."""


class PayloadTooLarge(FlkError):
    """413: body over the gateway's limit (1 MiB by default)."""


class UnexpectedResponse(FlkError):
    """A status the contract does not define for this endpoint."""


class RetriesExhausted(FlkError):
    """Every attempt hit a retryable failure (429, 5xx or a network error)."""

    def __init__(self, message: str, attempts: int, status: Optional[int] = None,
                 last_exception: Optional[BaseException] = None, body: Any = None,
                 retry_after: Optional[float] = None) -> None:
        code = body.get("error") if isinstance(body, dict) else None
        super().__init__(message, status=status, code=code if isinstance(code, str) else None, body=body)
        self.attempts = attempts
        self.last_exception = last_exception
        self.retry_after = retry_after
        """Seconds from the last answer's ``Retry-After`` (a 429 or 503), if it had one."""


_ERRORS = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 413: PayloadTooLarge}

_NETWORK_ERRORS: Tuple[Type[BaseException], ...] = (
    OSError,  # ConnectionError, socket.timeout, ssl errors are all OSErrors
    http.client.HTTPException,  # RemoteDisconnected, IncompleteRead, BadStatusLine
)


@dataclass(frozen=True)
class _Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None


# How a kept-alive connection that the server already closed fails when it is used again.
_STALE_ERRORS: Tuple[Type[BaseException], ...] = (
    BrokenPipeError,
    ConnectionResetError,  # includes http.client.RemoteDisconnected
    ConnectionAbortedError,
)


def _is_retryable(status: int) -> bool:
    return status == 429 or 500 <= status <= 599


def parse_retry_after(value: Optional[str], now: Callable[[], float] = time.time) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds, or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


class Client:
    """Client of one FLK gateway.

    Args:
        base_url: ``http(s)://host:port`` (a path prefix is kept).
        tenant: sent as ``X-Tenant-Id``; ``None`` means the server's ``default`` tenant.
        timeout: seconds per attempt (connect and each read).
        max_retries: retries after the first attempt (so ``max_retries + 1`` attempts at most).
        backoff_base: first backoff cap in seconds; doubles each retry.
        backoff_max: cap on the exponential backoff.
        max_retry_after: cap on an honoured ``Retry-After`` (protects against a huge value).
        headers: extra headers on every request.
        ssl_context: for ``https`` URLs.
        sleep, random, clock: injectable for tests (``time.sleep``, ``random.random``, ``time.time``).
    """

    def __init__(self, base_url: str, tenant: Optional[str] = None, *, timeout: float = 10.0,
                 max_retries: int = 5, backoff_base: float = 0.1, backoff_max: float = 10.0,
                 max_retry_after: float = 60.0, headers: Optional[Mapping[str, str]] = None,
                 ssl_context: Optional[ssl.SSLContext] = None,
                 sleep: Callable[[float], None] = time.sleep,
                 random: Callable[[], float] = _random.random,
                 clock: Callable[[], float] = time.time) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port][/prefix], got {base_url!r}")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self.tenant = tenant
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self._headers = dict(headers or {})
        self._ssl_context = ssl_context
        self._sleep = sleep
        self._random = random
        self._clock = clock
        # One keep-alive connection per thread: http.client connections are not thread-safe.
        self._local = threading.local()

    # ----------------------------------------------------------------------- public API

    def submit(self, pcs: Union[PCS, Mapping[str, Any], bytes, str], *,
               traceparent: Optional[str] = None) -> SubmitResult:
        """POST a PCS to ``/v1/pcs/submit`` and classify the answer.

        ``pcs`` may be a :class:`PCS`, a dict, or the exact JSON bytes/text to send (bytes are sent
        untouched, which is what you want when the record was signed elsewhere).
        """
        body = _encode_body(pcs)
        extra = {"Content-Type": "application/json"}
        if traceparent:
            extra["traceparent"] = traceparent
        resp = self._request("POST", "/v1/pcs/submit", body, extra)
        replayed = (resp.header("Idempotent-Replayed") or "").strip().lower() == "true"
        if resp.status in (200, 202):
            payload = resp.json()
            if not isinstance(payload, dict):
                raise UnexpectedResponse(f"{resp.status} with a non-object body", resp.status,
                                         body=resp.body)
            outcome = Outcome.from_dict(payload)
            if replayed:
                return DuplicateReplay(outcome, resp.status)
            return Accepted(outcome) if resp.status == 200 else Escalated(outcome)
        if resp.status == 409:
            payload = resp.json()
            payload = payload if isinstance(payload, dict) else {}
            return Conflict(_first_outcome(payload), payload)
        raise self._error(resp)

    def lookup(self, pcs_id: str) -> Optional[Outcome]:
        """GET ``/v1/pcs/{pcs_id}``: the stored decision, or ``None`` if there is none (404).

        The gateway wraps the outcome: ``{"pcs_id", "tenant", "status", "outcome": {...}, ...}``.
        The returned :class:`Outcome` is the inner one; the wrapper's other fields (``status`` is the
        HTTP status the first submit got, ``tenant``, ``tier``...) go into :attr:`Outcome.extra`
        without overriding the outcome's own. A bare outcome body is read as is.
        """
        resp = self._request("GET", "/v1/pcs/" + quote(pcs_id, safe=""), None, {})
        if resp.status == 200:
            payload = resp.json()
            if not isinstance(payload, dict):
                raise UnexpectedResponse("lookup returned a non-object body", 200, body=resp.body)
            nested = payload.get("outcome")
            if "accepted" not in payload and isinstance(nested, dict) and "accepted" in nested:
                outcome = Outcome.from_dict(nested)
                for key, value in payload.items():
                    if key != "outcome":
                        outcome.extra.setdefault(key, value)
                return outcome
            if "accepted" not in payload:
                raise UnexpectedResponse("lookup returned no outcome", 200, body=payload)
            return Outcome.from_dict(payload)
        if resp.status == 404:
            return None
        raise self._error(resp)

    def close(self) -> None:
        """Close this thread's keep-alive connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ----------------------------------------------------------------------- internals

    def backoff_delay(self, retry_index: int, retry_after: Optional[float]) -> float:
        """Delay before retry number ``retry_index`` (0-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        cap = min(self.backoff_max, self.backoff_base * (2.0 ** retry_index))
        return self._random() * cap

    def _error(self, resp: _Response) -> FlkError:
        payload = resp.json()
        code = payload.get("error") if isinstance(payload, dict) else None
        message = payload.get("message") if isinstance(payload, dict) else None
        text = f"HTTP {resp.status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
        cls = _ERRORS.get(resp.status, UnexpectedResponse)
        return cls(text, resp.status, code, payload if payload is not None else resp.body)

    def _request(self, method: str, path: str, body: Optional[bytes],
                 extra_headers: Mapping[str, str]) -> _Response:
        headers = {"User-Agent": _USER_AGENT, "Accept": "application/json"}
        headers.update(self._headers)
        if self.tenant is not None:
            headers["X-Tenant-Id"] = self.tenant
        headers.update(extra_headers)
        attempts = 0
        last_status: Optional[int] = None
        last_exc: Optional[BaseException] = None
        last_body: Any = None
        while True:
            attempts += 1
            retry_after: Optional[float] = None
            try:
                resp = self._send(method, self._prefix + path, body, headers)
            except _NETWORK_ERRORS as exc:
                self.close()
                last_exc, last_status, last_body = exc, None, None
            else:
                if not _is_retryable(resp.status):
                    return resp
                last_status, last_exc, last_body = resp.status, None, resp.json()
                retry_after = parse_retry_after(resp.header("Retry-After"), self._clock)
            if attempts > self.max_retries:
                what = f"HTTP {last_status}" if last_status is not None else repr(last_exc)
                raise RetriesExhausted(f"{method} {path} failed after {attempts} attempts: {what}",
                                       attempts, last_status, last_exc, last_body, retry_after)
            self._sleep(self.backoff_delay(attempts - 1, retry_after))

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and _dropped(conn.sock):
            # The server closed this idle keep-alive connection (its idle timeout, or an early
            # answer such as a 429 sent before the body was read, after which the gateway closes
            # without saying "Connection: close"). Writing to it would fail with EPIPE/ECONNRESET.
            conn.close()
            conn = None
        if conn is None:
            if self._scheme == "https":
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout,
                                                   context=self._ssl_context)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def _send(self, method: str, path: str, body: Optional[bytes],
              headers: Mapping[str, str]) -> _Response:
        conn = self._connection()
        reused = conn.sock is not None  # http.client connects lazily, so a socket means kept alive
        try:
            return self._exchange(conn, method, path, body, headers)
        except _STALE_ERRORS:
            if not reused:
                raise
            # The server closed the kept-alive connection just as it was reused (the check in
            # _connection can lose that race): no answer came, so resend once on a new connection
            # rather than spend a retry and a backoff on it. Resending is safe (see the module doc).
            self.close()
            return self._exchange(self._connection(), method, path, body, headers)

    def _exchange(self, conn: http.client.HTTPConnection, method: str, path: str,
                  body: Optional[bytes], headers: Mapping[str, str]) -> _Response:
        conn.request(method, path, body=body, headers=dict(headers))
        raw = conn.getresponse()
        data = raw.read()
        resp_headers = {k.lower(): v for k, v in raw.getheaders()}
        if raw.will_close:
            self.close()
        return _Response(raw.status, resp_headers, data)


def _dropped(sock: Optional[socket.socket]) -> bool:
    """True when an idle connection's socket is readable: EOF, a reset, or bytes nobody asked for.

    Between requests a healthy keep-alive socket has nothing to read, so any readiness means it
    cannot carry the next request.
    """
    if sock is None:
        return False
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):  # closed or invalid descriptor
        return True


def _encode_body(pcs: Union[PCS, Mapping[str, Any], bytes, str]) -> bytes:
    if isinstance(pcs, PCS):
        return pcs.to_json().encode("utf-8")
    if isinstance(pcs, (bytes, bytearray)):
        return bytes(pcs)
    if isinstance(pcs, str):
        return pcs.encode("utf-8")
    if isinstance(pcs, Mapping):
        return json.dumps(dict(pcs), separators=(",", ":"), allow_nan=False).encode("utf-8")
    raise TypeError("pcs must be a PCS, a mapping, bytes or str")


def _first_outcome(payload: Mapping[str, Any]) -> Optional[Outcome]:
    """Find the first outcome in a 409 body: the body itself, or a nested outcome object."""
    if "accepted" in payload:
        return Outcome.from_dict(payload)
    for key in ("first_outcome", "outcome"):
        nested = payload.get(key)
        if isinstance(nested, dict) and "accepted" in nested:
            return Outcome.from_dict(nested)
    return None

