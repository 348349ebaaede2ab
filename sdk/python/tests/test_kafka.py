"""Kafka producer helper: record building (pure) and delivery handling (fake and real client)."""

from __future__ import annotations

from typing import Any, List, Optional

import pytest

from flk_sdk.kafka import Delivered, DeliveryError, build_record, produce_pcs

PCS_JSON = b'{"pcs_id":"abc","D_hat":1.50,"note":"\xc3\xa9"}'


def test_build_record_key_value_headers() -> None:
    record = build_record(PCS_JSON, "acme", "00-abc-def-01")
    assert record.value == PCS_JSON  # exact bytes, not re-serialized
    assert record.key == b"acme/abc"
    assert record.headers == [("flk-tenant", b"acme"), ("traceparent", b"00-abc-def-01")]


def test_build_record_default_tenant_and_str_input() -> None:
    record = build_record(PCS_JSON.decode(), None)
    assert record.key == b"default/abc" and record.headers == [("flk-tenant", b"default")]
    assert record.value == PCS_JSON


@pytest.mark.parametrize("bad", [b"[]", b"{}", b'{"pcs_id": 5}', b'{"pcs_id": ""}', b"\xff", b"{"])
def test_build_record_needs_a_pcs_id(bad: bytes) -> None:
    with pytest.raises(ValueError):
        build_record(bad, "t")


class FakeMessage:
    def topic(self) -> str:
        return "flk.submissions"

    def partition(self) -> int:
        return 3

    def offset(self) -> int:
        return 42


class FakeProducer:
    def __init__(self, err: Any = None, deliver: bool = True) -> None:
        self.err, self.deliver = err, deliver
        self.produced: List[dict] = []
        self.callback: Optional[Any] = None

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.produced.append(dict(kwargs, topic=topic))
        self.callback = kwargs["on_delivery"]

    def flush(self, timeout: float) -> int:
        if self.deliver and self.callback:
            self.callback(self.err, FakeMessage())
        return 0

    def poll(self, timeout: float) -> int:
        return 0


def test_produce_waits_for_confirmation() -> None:
    producer = FakeProducer()
    delivered = produce_pcs(producer, "flk.submissions", PCS_JSON, "acme", traceparent="tp")
    assert delivered == Delivered("flk.submissions", 3, 42)
    sent = producer.produced[0]
    assert sent["value"] == PCS_JSON and sent["key"] == b"acme/abc"
    assert ("traceparent", b"tp") in sent["headers"]


def test_produce_reports_delivery_errors() -> None:
    with pytest.raises(DeliveryError, match="broker says no"):
        produce_pcs(FakeProducer(err="broker says no"), "t", PCS_JSON, "acme")
    with pytest.raises(DeliveryError, match="no delivery confirmation"):
        produce_pcs(FakeProducer(deliver=False), "t", PCS_JSON, "acme", timeout=0.01)


def test_confluent_kafka_is_installed_and_times_out_without_broker() -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    assert confluent_kafka.version()[0]
    # A real librdkafka producer against a closed loopback port: the record must fail, not hang.
    config = {"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 300,
              "socket.connection.setup.timeout.ms": 1000, "log_level": 0}
    with pytest.raises(DeliveryError):
        produce_pcs(config, "flk.submissions", PCS_JSON, "acme", timeout=5.0)


def test_owned_producer_uses_the_java_compatible_partitioner(monkeypatch: pytest.MonkeyPatch) -> None:
    # The gateway produces with murmur2; librdkafka's default (CRC32) would put the same key into
    # another partition, where the gateway's copy of a duplicate would not be seen in order.
    confluent_kafka = pytest.importorskip("confluent_kafka")
    configs: List[dict] = []

    def fake_producer(config: dict) -> FakeProducer:
        configs.append(config)
        return FakeProducer()

    monkeypatch.setattr(confluent_kafka, "Producer", fake_producer)
    produce_pcs({"bootstrap.servers": "x:1"}, "t", PCS_JSON, "acme")
    assert configs[0]["partitioner"] == "murmur2_random"
    assert configs[0]["acks"] == "all" and configs[0]["enable.idempotence"] is True
    produce_pcs({"bootstrap.servers": "x:1", "partitioner": "consistent"}, "t", PCS_JSON, "acme")
    assert configs[1]["partitioner"] == "consistent"  # the caller's choice wins
