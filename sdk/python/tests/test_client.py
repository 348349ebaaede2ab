"""Gateway client against a real local HTTP server that plays scripted responses.

Sleeping and jitter are injected, so the retry tests assert the exact backoff schedule without
waiting for it.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Deque, Dict, Iterator, List, Optional, Tuple

import pytest

from flk_sdk.client import (
    Accepted,
    BadRequest,
    Client,
    Conflict,
    DuplicateReplay,
    Escalated,
    Forbidden,
    PayloadTooLarge,
    RetriesExhausted,
    Unauthorized,
    UnexpectedResponse,
    parse_retry_after,
)
from flk_sdk.pcs import PCS

DROP = "drop"  # close the connection without answering: a network error for the client
CLOSE_AFTER = "X-Test-Close-After"  # pseudo-header: answer, then close without "Connection: close"
OK_BODY = {"accepted": True, "escalated": False, "recomputed_D_hat": 1.0, "recomputed_budget": 0.285}
ESC_BODY = {"accepted": True, "escalated": True, "recomputed_D_hat": 1.0, "recomputed_budget": 0.285,
            "reason": "regime mismatch: claimed=sticky, expected=mixed"}


class Script:
    """Responses to play in order, and the requests received."""

    def __init__(self) -> None:
        self.responses: Deque[Any] = deque()
        self.requests: List[Dict[str, Any]] = []
        self.lock = threading.Lock()

    def add(self, status: Any, body: Any = None, headers: Optional[Dict[str, str]] = None) -> None:
        self.responses.append(status if status == DROP else (status, body, headers or {}))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real gateway
    script: Script

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.script.lock:
            self.script.requests.append({"method": self.command, "path": self.path,
                                         "headers": dict(self.headers), "body": body})
            item = self.script.responses.popleft() if self.script.responses else (500, None, {})
        if item == DROP:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status, payload, headers = item
        data = b"" if payload is None else (payload if isinstance(payload, bytes)
                                             else json.dumps(payload).encode())
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        close_after = headers.get(CLOSE_AFTER) is not None
        for name, value in headers.items():
            if name != CLOSE_AFTER:
                self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        if close_after:
            # Like flk serve after answering 429 before reading the body: the connection is closed
            # although the response did not announce it.
            self.wfile.flush()
            self.close_connection = True

    do_GET = _serve
    do_POST = _serve


@pytest.fixture()
def server() -> Iterator[Tuple[str, Script]]:
    script = Script()
    handler = type("ScriptedHandler", (Handler,), {"script": script})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(url: str, **kwargs: Any) -> Tuple[Client, Sleeps]:
    sleeps = Sleeps()
    kwargs.setdefault("random", lambda: 0.5)
    kwargs.setdefault("timeout", 5.0)
    return Client(url, sleep=sleeps, **kwargs), sleeps


def sample_pcs() -> PCS:
    return PCS(pcs_id="p1", shard_id="s", epoch=1, scales=[2, 4], N_j={"2": 1, "4": 2},
               coh_star=0.5, D_hat=1.0, regime="mixed", budget=0.3, merkle_root="m", sig="c2ln")


def test_accepted_sends_tenant_and_exact_body(server) -> None:
    url, script = server
    script.add(200, OK_BODY)
    client, sleeps = make_client(url, tenant="acme")
    pcs = sample_pcs()
    result = client.submit(pcs)
    assert isinstance(result, Accepted) and result.outcome.accepted and result.status == 200
    req = script.requests[0]
    assert (req["method"], req["path"]) == ("POST", "/v1/pcs/submit")
    assert req["headers"]["X-Tenant-Id"] == "acme"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["body"] == pcs.to_json().encode()
    assert sleeps == []


def test_raw_bytes_are_sent_untouched_and_no_tenant_header_by_default(server) -> None:
    url, script = server
    script.add(200, OK_BODY)
    client, _ = make_client(url)
    body = b'{"pcs_id": "x",  "D_hat": 1.50}'
    client.submit(body, traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    req = script.requests[0]
    assert req["body"] == body and "X-Tenant-Id" not in req["headers"]
    assert req["headers"]["traceparent"].startswith("00-0af7")


def test_escalated(server) -> None:
    url, script = server
    script.add(202, ESC_BODY)
    client, _ = make_client(url)
    result = client.submit({"pcs_id": "x"})
    assert isinstance(result, Escalated)
    assert result.outcome.reason == ESC_BODY["reason"] and result.outcome.http_status == 202


@pytest.mark.parametrize("status,body", [(200, OK_BODY), (202, ESC_BODY)])
def test_duplicate_replay_keeps_original_status(server, status, body) -> None:
    url, script = server
    script.add(status, dict(body, first_seen_at="2025-01-01T00:00:00Z"),
               {"Idempotent-Replayed": "true"})
    client, _ = make_client(url)
    result = client.submit(sample_pcs())
    assert isinstance(result, DuplicateReplay) and result.status == status
    assert result.accepted == (status == 200)
    assert result.outcome.extra["first_seen_at"] == "2025-01-01T00:00:00Z"


def test_conflict_carries_first_outcome_and_is_not_retried(server) -> None:
    url, script = server
    script.add(409, dict(OK_BODY, error="conflict", message="different signed fields"))
    client, sleeps = make_client(url)
    result = client.submit(sample_pcs())
    assert isinstance(result, Conflict) and result.outcome is not None and result.outcome.accepted
    assert result.body["error"] == "conflict"
    assert len(script.requests) == 1 and sleeps == []


def test_conflict_with_nested_outcome(server) -> None:
    url, script = server
    script.add(409, {"error": "conflict", "message": "m", "first_outcome": ESC_BODY})
    client, _ = make_client(url)
    result = client.submit(sample_pcs())
    assert isinstance(result, Conflict) and result.outcome.reason == ESC_BODY["reason"]


@pytest.mark.parametrize("status,exc", [(400, BadRequest), (401, Unauthorized), (403, Forbidden),
                                        (413, PayloadTooLarge), (404, UnexpectedResponse)])
def test_client_errors_raise_without_retry(server, status, exc) -> None:
    url, script = server
    script.add(status, {"error": "some_code", "message": "human text"})
    script.add(200, OK_BODY)  # would be returned if the client wrongly retried
    client, sleeps = make_client(url)
    with pytest.raises(exc) as info:
        client.submit(sample_pcs())
    assert info.value.status == status and info.value.code == "some_code"
    assert "human text" in str(info.value)
    assert len(script.requests) == 1 and sleeps == []


def test_retry_after_is_honoured(server) -> None:
    url, script = server
    script.add(429, {"error": "rate_limited", "message": "slow down"}, {"Retry-After": "3"})
    script.add(503, {"error": "unavailable", "message": "log down"}, {"Retry-After": "0.25"})
    script.add(200, OK_BODY)
    client, sleeps = make_client(url)
    assert isinstance(client.submit(sample_pcs()), Accepted)
    assert sleeps == [3.0, 0.25]
    assert len(script.requests) == 3
    assert script.requests[0]["body"] == script.requests[2]["body"]


def test_exponential_backoff_with_full_jitter(server) -> None:
    url, script = server
    for status in (500, 502, 503, 504):
        script.add(status, None)
    script.add(202, ESC_BODY)
    client, sleeps = make_client(url, backoff_base=0.1, backoff_max=0.3, random=lambda: 0.5)
    assert isinstance(client.submit(sample_pcs()), Escalated)
    # jitter 0.5 x min(cap, base * 2^n): 0.05, 0.1, then capped at 0.3 -> 0.15, 0.15
    assert sleeps == pytest.approx([0.05, 0.1, 0.15, 0.15])


def test_jitter_spans_zero_to_cap() -> None:
    client = Client("http://127.0.0.1:9", random=lambda: 0.0)
    assert client.backoff_delay(5, None) == 0.0
    client = Client("http://127.0.0.1:9", random=lambda: 0.999, backoff_base=1, backoff_max=4)
    assert client.backoff_delay(10, None) == pytest.approx(3.996)
    assert client.backoff_delay(0, 1000.0) == 60.0  # max_retry_after caps a huge Retry-After


def test_retries_exhausted(server) -> None:
    url, script = server
    for _ in range(10):
        script.add(503, {"error": "unavailable", "message": "x"}, {"Retry-After": "1"})
    client, sleeps = make_client(url, max_retries=3)
    with pytest.raises(RetriesExhausted) as info:
        client.submit(sample_pcs())
    assert info.value.attempts == 4 and info.value.status == 503
    assert len(script.requests) == 4 and sleeps == [1.0, 1.0, 1.0]


def test_network_error_is_retried(server) -> None:
    url, script = server
    script.add(DROP)
    script.add(200, OK_BODY)
    client, sleeps = make_client(url)
    assert isinstance(client.submit(sample_pcs()), Accepted)
    assert len(script.requests) == 2 and len(sleeps) == 1


def test_connection_refused_exhausts() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    client, sleeps = make_client(f"http://127.0.0.1:{port}", max_retries=2)
    with pytest.raises(RetriesExhausted) as info:
        client.submit(sample_pcs())
    assert info.value.status is None and isinstance(info.value.last_exception, OSError)
    assert len(sleeps) == 2


def test_connection_closed_after_an_answer_is_not_reused(server) -> None:
    url, script = server
    script.add(429, {"error": "rate_limited"}, {"Retry-After": "1", CLOSE_AFTER: "1"})
    script.add(200, OK_BODY)
    script.add(200, OK_BODY, {CLOSE_AFTER: "1"})
    script.add(200, OK_BODY)
    client, sleeps = make_client(url, max_retries=1)
    assert isinstance(client.submit(sample_pcs()), Accepted)
    assert sleeps == [1.0]  # only the Retry-After; the closed connection cost no failed attempt
    assert isinstance(client.submit(sample_pcs()), Accepted)
    assert isinstance(client.submit(sample_pcs()), Accepted)
    assert sleeps == [1.0] and len(script.requests) == 4


def test_keep_alive_connection_is_reused(server) -> None:
    url, script = server
    for _ in range(3):
        script.add(200, OK_BODY)
    client, _ = make_client(url)
    for _ in range(3):
        client.submit(sample_pcs())
    assert len(script.requests) == 3
    client.close()


def test_lookup(server) -> None:
    url, script = server
    script.add(200, dict(OK_BODY, pcs_id="a/b"))
    script.add(404, {"error": "not_found", "message": "no such pcs"})
    script.add(503, None, {"Retry-After": "2"})
    script.add(200, OK_BODY)
    client, sleeps = make_client(url, tenant="t1")
    outcome = client.lookup("a/b")
    assert outcome is not None and outcome.extra["pcs_id"] == "a/b"
    assert script.requests[0]["path"] == "/v1/pcs/a%2Fb"
    assert script.requests[0]["headers"]["X-Tenant-Id"] == "t1"
    assert client.lookup("missing") is None
    assert client.lookup("x") is not None and sleeps == [2.0]


def test_lookup_unwraps_the_gateways_envelope(server) -> None:
    # What `flk serve` answers: the stored outcome nested under "outcome", bookkeeping beside it.
    url, script = server
    script.add(200, {"pcs_id": "p1", "tenant": "default", "status": 202, "tier": "hot", "source": "cache",
                     "outcome": dict(ESC_BODY, pcs_id="p1")})
    client, _ = make_client(url)
    outcome = client.lookup("p1")
    assert outcome is not None and outcome.accepted and outcome.escalated
    assert outcome.reason == ESC_BODY["reason"] and outcome.http_status == 202
    assert outcome.extra["status"] == 202 and outcome.extra["tenant"] == "default"
    assert outcome.extra["pcs_id"] == "p1" and "outcome" not in outcome.extra


def test_lookup_without_an_outcome_is_unexpected(server) -> None:
    url, script = server
    script.add(200, {"pcs_id": "p1", "status": 200})
    client, _ = make_client(url)
    with pytest.raises(UnexpectedResponse):
        client.lookup("p1")


def test_exhausted_429_carries_retry_after_and_code(server) -> None:
    url, script = server
    script.add(429, {"error": "rate_limited", "message": "retry in 2 s"}, {"Retry-After": "2"})
    client, sleeps = make_client(url, max_retries=0)
    with pytest.raises(RetriesExhausted) as info:
        client.submit(sample_pcs())
    assert info.value.status == 429 and info.value.retry_after == 2.0
    assert info.value.code == "rate_limited" and info.value.attempts == 1 and sleeps == []


def test_base_url_prefix(server) -> None:
    url, script = server
    script.add(200, OK_BODY)
    client, _ = make_client(url + "/gw/")
    client.submit(sample_pcs())
    assert script.requests[0]["path"] == "/gw/v1/pcs/submit"


def test_non_object_success_body_is_unexpected(server) -> None:
    url, script = server
    script.add(200, b"OK")
    client, _ = make_client(url)
    with pytest.raises(UnexpectedResponse):
        client.submit(sample_pcs())


def test_parse_retry_after() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("nonsense") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=lambda: 1445412480.0) == 10.0


def test_bad_base_url() -> None:
    with pytest.raises(ValueError):
        Client("ftp://x")
    with pytest.raises(ValueError):
        Client("http://x", max_retries=-1)
