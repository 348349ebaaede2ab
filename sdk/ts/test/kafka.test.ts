import assert from "node:assert/strict";
import { describe, it } from "node:test";

import type { Kafka, Producer, ProducerConfig, ProducerRecord, RecordMetadata } from "kafkajs";

import { PcsDecodeError } from "../src/decode.js";
import { buildSubmissionRecord, FlkProducer, PRODUCER_CONFIG, REQUIRED_ACKS, SUBMISSIONS_TOPIC } from "../src/kafka.js";
import { golden } from "./fixtures.js";

const PCS_TEXT = golden("pcs_tiny_case_1.json");
const PCS_ID = "c50bb25a7aff94164147b73c846f0e5e10890d75df204875ca70c448f52c6edf";
const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

describe("buildSubmissionRecord", () => {
  it("keeps the JSON bytes exactly and keys by tenant/pcs_id", () => {
    const record = buildSubmissionRecord(PCS_TEXT, { tenant: "acme" });
    assert.ok(record.value.equals(Buffer.from(PCS_TEXT, "utf8")));
    assert.equal(record.key, `acme/${PCS_ID}`);
    assert.deepEqual(record.headers, { "flk-tenant": "acme" });
  });

  it("accepts bytes and adds traceparent when given", () => {
    const bytes = new TextEncoder().encode(PCS_TEXT);
    const record = buildSubmissionRecord(bytes, { tenant: "t1", traceparent: TRACEPARENT });
    assert.ok(record.value.equals(Buffer.from(bytes)));
    assert.deepEqual(record.headers, { "flk-tenant": "t1", traceparent: TRACEPARENT });
  });

  it("serializes objects compactly, bigint epochs exact", () => {
    const pcs = { ...(JSON.parse(PCS_TEXT) as Record<string, unknown>), epoch: 2n ** 60n };
    const record = buildSubmissionRecord(pcs as never, { tenant: "acme" });
    const text = record.value.toString("utf8");
    assert.match(text, /"epoch":1152921504606846976,/);
    assert.ok(!text.includes(" "));
  });

  it("refuses what the gateway would reject with 400, and bad tenants or trace context", () => {
    assert.throws(() => buildSubmissionRecord(PCS_TEXT.replace('"epoch": 1', '"epoch": 1.0'), { tenant: "a" }), PcsDecodeError);
    assert.throws(() => buildSubmissionRecord("[]", { tenant: "a" }), PcsDecodeError);
    assert.throws(() => buildSubmissionRecord(Buffer.from([0xff, 0xfe]), { tenant: "a" }), TypeError);
    assert.throws(() => buildSubmissionRecord(PCS_TEXT, { tenant: "" }), /tenant/);
    assert.throws(() => buildSubmissionRecord(PCS_TEXT, { tenant: "a/b" }), /tenant/);
    assert.throws(() => buildSubmissionRecord(PCS_TEXT, { tenant: "a", traceparent: "nope" }), /traceparent/);
  });
});

/** A stand-in for kafkajs that records what the helper asks of it. */
class RecordingKafka {
  configs: ProducerConfig[] = [];
  sent: ProducerRecord[] = [];
  calls: string[] = [];

  producer(config: ProducerConfig): Producer {
    this.configs.push(config);
    const producer = {
      connect: async () => {
        this.calls.push("connect");
      },
      disconnect: async () => {
        this.calls.push("disconnect");
      },
      send: async (record: ProducerRecord): Promise<RecordMetadata[]> => {
        this.sent.push(record);
        return [{ topicName: record.topic, partition: 0, errorCode: 0 }];
      },
    };
    return producer as unknown as Producer;
  }
}

describe("FlkProducer", () => {
  it("creates an idempotent producer and sends with acks=-1 to the prefixed topic", async () => {
    const kafka = new RecordingKafka();
    const producer = FlkProducer.create(kafka as unknown as Kafka, { topicPrefix: "eu1." });
    assert.deepEqual(kafka.configs, [{ idempotent: true, maxInFlightRequests: 1 }]);
    assert.deepEqual(PRODUCER_CONFIG, { idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const metadata = await producer.send(PCS_TEXT, { tenant: "acme", traceparent: TRACEPARENT });
    await producer.disconnect();
    assert.deepEqual(kafka.calls, ["connect", "disconnect"]);
    assert.equal(metadata[0]?.topicName, `eu1.${SUBMISSIONS_TOPIC}`);
    assert.equal(kafka.sent.length, 1);
    const record = kafka.sent[0] as ProducerRecord;
    assert.equal(record.topic, "eu1.flk.submissions");
    assert.equal(record.acks, REQUIRED_ACKS);
    assert.equal(record.acks, -1);
    assert.equal(record.messages.length, 1);
    assert.equal(record.messages[0]?.key, `acme/${PCS_ID}`);
    assert.deepEqual(record.messages[0]?.headers, { "flk-tenant": "acme", traceparent: TRACEPARENT });
  });

  it("sends many records in one request, each with its own tenant", async () => {
    const kafka = new RecordingKafka();
    const producer = FlkProducer.create(kafka as unknown as Kafka);
    assert.equal(producer.topic, "flk.submissions");
    await producer.sendMany([
      { pcs: PCS_TEXT, options: { tenant: "a" } },
      { pcs: PCS_TEXT, options: { tenant: "b" } },
    ]);
    assert.deepEqual(
      kafka.sent[0]?.messages.map((m) => m.key),
      [`a/${PCS_ID}`, `b/${PCS_ID}`],
    );
  });

  it("builds no request when one record is malformed", async () => {
    const kafka = new RecordingKafka();
    const producer = FlkProducer.create(kafka as unknown as Kafka);
    await assert.rejects(
      producer.sendMany([
        { pcs: PCS_TEXT, options: { tenant: "a" } },
        { pcs: "{}", options: { tenant: "a" } },
      ]),
      PcsDecodeError,
    );
    assert.equal(kafka.sent.length, 0);
  });
});
