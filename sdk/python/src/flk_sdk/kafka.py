"""Produce PCS records straight to Kafka (CONTRACT section 6), skipping the gateway.

The value must be the exact JSON bytes the agent would POST: the server verifies the signature over
fields parsed from those bytes, and the WAL keeps them verbatim, so re-serializing here could only
hurt. The key ``<tenant>/<pcs_id>`` puts duplicates of one record into one partition, where the
first-write-wins dedup sees them in order.

``confluent-kafka`` is imported lazily so the rest of the SDK works without the ``[kafka]`` extra.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

__all__ = ["DeliveryError", "KafkaRecord", "Delivered", "build_record", "produce_pcs"]

DEFAULT_TENANT = "default"


class DeliveryError(RuntimeError):
    """The broker did not confirm the record (error, or no answer within the timeout)."""


@dataclass(frozen=True)
class KafkaRecord:
    """What gets produced: key, value and headers, built without touching Kafka (testable)."""

    key: bytes
    value: bytes
    headers: List[Tuple[str, bytes]]


@dataclass(frozen=True)
class Delivered:
    """Broker confirmation of one record."""

    topic: str
    partition: int
    offset: int


def build_record(pcs_json: Union[bytes, str], tenant: Optional[str] = None,
                 traceparent: Optional[str] = None) -> KafkaRecord:
    """Key ``<tenant>/<pcs_id>``, header ``flk-tenant`` and optional ``traceparent``.

    The ``pcs_id`` is read from the JSON; a body without a string ``pcs_id`` is refused here
    because the server could not key or dedup it either.
    """
    value = pcs_json.encode("utf-8") if isinstance(pcs_json, str) else bytes(pcs_json)
    try:
        parsed = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"PCS is not UTF-8 JSON: {exc}") from exc
    pcs_id = parsed.get("pcs_id") if isinstance(parsed, dict) else None
    if not isinstance(pcs_id, str) or not pcs_id:
        raise ValueError("PCS JSON must be an object with a non-empty string pcs_id")
    tenant = tenant or DEFAULT_TENANT
    headers = [("flk-tenant", tenant.encode("utf-8"))]
    if traceparent:
        headers.append(("traceparent", traceparent.encode("ascii")))
    return KafkaRecord(f"{tenant}/{pcs_id}".encode("utf-8"), value, headers)


def _make_producer(config: Mapping[str, Any]) -> Any:
    from confluent_kafka import Producer  # lazy: optional dependency

    # Durable by default: a record the broker acknowledged must survive a leader loss, and retries
    # inside librdkafka must not duplicate or reorder records. librdkafka hashes keys with CRC32 by
    # default; the gateway (and the Java, Go and kafkajs clients) use murmur2, so without this a
    # duplicate sent here and one sent through the gateway would land in different partitions.
    merged = {"acks": "all", "enable.idempotence": True, "partitioner": "murmur2_random"}
    merged.update(config)
    return Producer(merged)


def produce_pcs(producer_or_config: Any, topic: str, pcs_json: Union[bytes, str],
                tenant: Optional[str] = None, *, traceparent: Optional[str] = None,
                timeout: float = 30.0) -> Delivered:
    """Produce one PCS and wait for the broker's delivery confirmation.

    ``producer_or_config`` is a ``confluent_kafka.Producer`` (reused; preferable for many records) or
    a config dict from which a producer is created for this call.
    """
    record = build_record(pcs_json, tenant, traceparent)
    owned = isinstance(producer_or_config, Mapping)
    producer = _make_producer(producer_or_config) if owned else producer_or_config
    done = threading.Event()
    result: Dict[str, Any] = {}

    def on_delivery(err: Any, msg: Any) -> None:
        result["err"], result["msg"] = err, msg
        done.set()

    producer.produce(topic, value=record.value, key=record.key, headers=record.headers,
                     on_delivery=on_delivery)
    producer.flush(timeout)
    if not done.is_set():
        # Serve callbacks once more in case flush returned right at the deadline.
        producer.poll(0)
    if not done.is_set():
        raise DeliveryError(f"no delivery confirmation within {timeout}s")
    if result["err"] is not None:
        raise DeliveryError(str(result["err"]))
    msg = result["msg"]
    return Delivered(msg.topic(), msg.partition(), msg.offset())
