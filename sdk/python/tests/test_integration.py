"""The client and the Kafka helper against a running ``flk serve`` (marker ``integration``).

``infra/scripts/sdk-integration.sh`` starts an isolated server and sets:

- ``FLK_GATEWAY_URL``: the gateway (tenant ``default`` signs with ``FLK_TEST_SECRET``; tenant
  ``slow`` is rate limited to 0.5 records/s with a burst of 1 and does not check signatures);
- ``FLK_KAFKA_BROKERS`` and ``FLK_SUBMISSIONS_TOPIC``: where direct producers write;
- ``FLK_AUDIT_VERIFIER_KEY``: the verifier key of the audit log its anchorer signs (every 200 ms).

Without ``FLK_GATEWAY_URL`` every test here is skipped, so the unit suite runs alone. With it,
nothing is skipped: a missing Kafka client or variable is a failure.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Callable, Dict, List, Optional, TypeVar

import pytest

from conftest import golden_dir
from flk_sdk import (
    Accepted,
    Client,
    Conflict,
    DuplicateReplay,
    Outcome,
    RetriesExhausted,
    Unauthorized,
    compute_pcs_id,
    sign_hmac,
)
from flk_sdk.audit import BundleError, verify_bundle
from flk_sdk.kafka import produce_pcs

GATEWAY = os.environ.get("FLK_GATEWAY_URL", "")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not GATEWAY, reason="FLK_GATEWAY_URL is not set; infra/scripts/sdk-integration.sh "
                                           "starts flk serve and sets it"),
]

T = TypeVar("T")


def env(name: str) -> str:
    value = os.environ.get(name, "")
    assert value, f"{name} must be set when FLK_GATEWAY_URL is (see infra/scripts/sdk-integration.sh)"
    return value


def secret() -> str:
    return os.environ.get("FLK_TEST_SECRET", "testsecret")


def fresh_record(key: Optional[str] = None, **changes: Any) -> Dict[str, Any]:
    """Golden case 1 with a new merkle_root (so a new pcs_id), re-signed with ``key``."""
    record: Dict[str, Any] = json.loads((golden_dir() / "pcs_tiny_case_1.json").read_text())
    record["merkle_root"] = uuid.uuid4().hex + uuid.uuid4().hex
    record["pcs_id"] = compute_pcs_id(record["merkle_root"], record["epoch"], record["shard_id"])
    record.update(changes)
    record["sig"] = sign_hmac(record, secret() if key is None else key)
    return record


def body(record: Dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def poll(what: str, fetch: Callable[[], Optional[T]], timeout: float = 30.0) -> T:
    """Call ``fetch`` until it returns something, with a deadline (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        value = fetch()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: nothing after {timeout}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def same_decision(a: Optional[Outcome], b: Outcome) -> bool:
    return a is not None and (a.accepted, a.escalated, a.recomputed_D_hat, a.recomputed_budget, a.reason) == (
        b.accepted, b.escalated, b.recomputed_D_hat, b.recomputed_budget, b.reason)


@pytest.fixture()
def client() -> Client:
    with Client(GATEWAY, timeout=10.0, max_retries=2) as c:
        yield c


def test_accept_replay_conflict_and_lookup(client: Client) -> None:
    record = fresh_record()
    first = client.submit(body(record))
    assert isinstance(first, Accepted), first
    assert first.status == 200 and first.outcome.accepted and not first.outcome.escalated
    assert first.outcome.recomputed_D_hat == 0.528320834
    assert first.outcome.recomputed_budget == 0.317807017

    again = client.submit(body(record))
    assert isinstance(again, DuplicateReplay), again
    assert again.status == 200 and again.accepted and same_decision(again.outcome, first.outcome)

    changed = dict(record, budget=0.3178)
    changed["sig"] = sign_hmac(changed, secret())  # validly signed, but other signed fields
    conflict = client.submit(body(changed))
    assert isinstance(conflict, Conflict), conflict
    assert conflict.status == 409 and conflict.body.get("error") == "conflict"
    assert conflict.body.get("pcs_id") == record["pcs_id"]
    assert same_decision(conflict.outcome, first.outcome)

    stored = client.lookup(record["pcs_id"])
    assert stored is not None and same_decision(stored, first.outcome)
    assert stored.http_status == 200 and stored.extra.get("status") == 200
    assert stored.extra.get("pcs_id") == record["pcs_id"] and stored.extra.get("tenant") == "default"


def test_lookup_is_scoped_by_tenant_and_404_is_none(client: Client) -> None:
    record = fresh_record()
    assert isinstance(client.submit(body(record)), Accepted)
    assert client.lookup(fresh_record()["pcs_id"]) is None  # never submitted
    with Client(GATEWAY, tenant="slow", max_retries=0) as other:
        assert other.lookup(record["pcs_id"]) is None  # decided for tenant default only


def test_bad_signature_is_unauthorized_and_not_cached(client: Client) -> None:
    record = fresh_record(key="not-the-tenant-secret")
    with pytest.raises(Unauthorized) as info:
        client.submit(body(record))
    assert info.value.status == 401 and info.value.code == "signature_invalid"
    # 401 is never cached: the same pcs_id, correctly signed, is then decided normally.
    record["sig"] = sign_hmac(record, secret())
    assert isinstance(client.submit(body(record)), Accepted)


def test_rate_limit_retry_after_is_honoured() -> None:
    no_retry = Client(GATEWAY, tenant="slow", max_retries=0)
    waits: List[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    retrying = Client(GATEWAY, tenant="slow", max_retries=5, backoff_base=0.1, sleep=sleep)
    with no_retry, retrying:
        # Spend the bucket's one token (waiting out a 429 left by an earlier run or suite), so the
        # next requests surely find it empty.
        deadline = time.monotonic() + 30
        while True:
            try:
                assert isinstance(no_retry.submit(body(fresh_record())), Accepted)
                break
            except RetriesExhausted as exc:
                assert exc.status == 429 and time.monotonic() < deadline
                time.sleep(exc.retry_after or 1.0)

        with pytest.raises(RetriesExhausted) as info:
            no_retry.submit(body(fresh_record()))
        limited = info.value
        assert limited.status == 429 and limited.attempts == 1 and limited.code == "rate_limited"
        assert limited.retry_after is not None and limited.retry_after >= 1.0

        started = time.monotonic()
        result = retrying.submit(body(fresh_record()))
        elapsed = time.monotonic() - started
    assert isinstance(result, Accepted), result
    # It waited what Retry-After said (whole seconds), not its own jittered backoff (<= 0.1 s).
    assert waits and all(w >= 1.0 and w == int(w) for w in waits), waits
    assert waits[0] == limited.retry_after
    assert elapsed >= sum(waits)


def test_kafka_record_is_decided_by_the_server(client: Client) -> None:
    import confluent_kafka  # noqa: F401  (the [kafka] extra; missing it fails rather than skips)

    brokers, topic = env("FLK_KAFKA_BROKERS"), env("FLK_SUBMISSIONS_TOPIC")
    record = fresh_record()
    delivered = produce_pcs({"bootstrap.servers": brokers}, topic, body(record), "default", timeout=30.0)
    assert delivered.topic == topic and delivered.offset >= 0

    stored = poll("lookup of the Kafka record", lambda: client.lookup(record["pcs_id"]))
    assert stored.accepted and not stored.escalated and stored.extra.get("status") == 200
    assert stored.recomputed_D_hat == 0.528320834

    # The same bytes through the gateway are a duplicate of the Kafka record's decision.
    replay = client.submit(body(record))
    assert isinstance(replay, DuplicateReplay) and replay.status == 200
    assert same_decision(replay.outcome, stored)


def fetch_proof(pcs_id: str) -> Dict[str, Any]:
    """``GET /v1/audit/proof?pcs_id=`` for tenant ``default`` every 100 ms for up to 30 s, until 200
    (404 means the record is not anchored yet, or no checkpoint is signed yet)."""
    url = f"{GATEWAY.rstrip('/')}/v1/audit/proof?pcs_id={pcs_id}"
    deadline = time.monotonic() + 30.0
    last = ""
    while True:
        request = urllib.request.Request(url, headers={"X-Tenant-Id": "default"})
        try:
            with urllib.request.urlopen(request, timeout=10.0) as resp:
                bundle: Dict[str, Any] = json.loads(resp.read())
                return bundle
        except urllib.error.HTTPError as exc:
            last = f"{exc.code} {exc.read()[:300]!r}"
            if exc.code != 404:
                pytest.fail(f"GET {url}: expected 200 or 404, got {last}")
        if time.monotonic() > deadline:
            pytest.fail(f"GET {url}: not anchored after 30s (last answer {last})")
        time.sleep(0.1)


def test_integration_live_audit_proof_verifies_offline(client: Client) -> None:
    verifier_key = os.environ.get("FLK_AUDIT_VERIFIER_KEY", "")
    if not verifier_key:
        pytest.fail("FLK_AUDIT_VERIFIER_KEY must be set when FLK_GATEWAY_URL is: it is the audit log's "
                    "verifier key (infra/scripts/sdk-integration.sh exports it)")
    record = fresh_record()
    accepted = client.submit(body(record))
    assert isinstance(accepted, Accepted), accepted

    bundle = fetch_proof(record["pcs_id"])
    checkpoint, leaf = verify_bundle(bundle, verifier_key, record)
    assert leaf.pcs_id == record["pcs_id"]
    assert leaf.tenant == "default"
    assert checkpoint.size == bundle["tree_size"] and bundle["leaf_index"] < checkpoint.size

    # The same bundle against another record: another pcs_id (new epoch), ...
    other = dict(record, epoch=record["epoch"] + 1)
    other["pcs_id"] = compute_pcs_id(other["merkle_root"], other["epoch"], other["shard_id"])
    with pytest.raises(BundleError) as info:
        verify_bundle(bundle, verifier_key, other)
    assert info.value.kind == "record", info.value
    # ... or the same pcs_id with another signed field (the logged signed digest differs).
    changed = dict(record, budget=0.3178)
    with pytest.raises(BundleError) as info:
        verify_bundle(bundle, verifier_key, changed)
    assert info.value.kind == "record", info.value
