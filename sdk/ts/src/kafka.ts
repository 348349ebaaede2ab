/**
 * Producing PCS records straight to Kafka, skipping the gateway (CONTRACT section 6), with kafkajs.
 *
 * The record value is the PCS JSON exactly as it would be POSTed (signatures cover the canonical
 * payload, not these bytes, but the server reads the value like a request body). The key
 * `<tenant>/<pcs_id>` sends duplicates to one partition, where the first decision wins. The producer
 * is idempotent with `acks=-1` so a broker retry cannot write a record twice or lose one silently.
 * Outcomes come back by `FlkClient.lookup` or the decisions topic, never from the send itself.
 *
 * @module
 */

import type { Kafka, Message, Producer, ProducerConfig, RecordMetadata } from "kafkajs";

import { decodePcs, pcsFromObject } from "./decode.js";
import { stringifyJson } from "./json.js";
import type { Pcs } from "./pcs.js";

/** Submissions topic name, before the deployment's prefix. */
export const SUBMISSIONS_TOPIC = "flk.submissions";

/** Header naming the tenant; direct producers must set it (absent means `default`). */
export const KAFKA_TENANT_HEADER = "flk-tenant";

/** W3C trace context header. */
export const KAFKA_TRACEPARENT_HEADER = "traceparent";

/** Every send waits for all in-sync replicas: the idempotent producer requires it. */
export const REQUIRED_ACKS = -1;

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** Per-record options. */
export interface RecordOptions {
  /** Tenant the record belongs to; goes into the key and the `flk-tenant` header. */
  tenant: string;
  /** W3C `traceparent` to propagate, if any. */
  traceparent?: string;
}

/** A record ready for kafkajs, with a string key and exact value bytes. */
export interface SubmissionRecord {
  /** `<tenant>/<pcs_id>`. */
  key: string;
  /** The PCS JSON, UTF-8. */
  value: Buffer;
  /** `flk-tenant`, and `traceparent` when given. */
  headers: Record<string, string>;
}

/**
 * Builds the Kafka record for one PCS.
 *
 * @param pcs a PCS object (serialized compactly, bigints exact), or JSON text/bytes used verbatim.
 *   Either way it is decoded first, so a record the gateway would reject with 400 is never produced.
 * @throws PcsDecodeError for a malformed PCS; TypeError for a bad tenant or traceparent.
 */
export function buildSubmissionRecord(pcs: Pcs | string | Uint8Array, options: RecordOptions): SubmissionRecord {
  const { tenant, traceparent } = options;
  if (typeof tenant !== "string" || tenant === "" || tenant.includes("/")) {
    // A '/' would make the key `<tenant>/<pcs_id>` ambiguous.
    throw new TypeError(`tenant must be a non-empty string without '/', got ${JSON.stringify(tenant)}`);
  }
  if (traceparent !== undefined && !TRACEPARENT.test(traceparent)) {
    throw new TypeError(`traceparent is not W3C trace context: ${JSON.stringify(traceparent)}`);
  }
  let value: Buffer;
  let decoded: Pcs;
  if (typeof pcs === "string" || pcs instanceof Uint8Array) {
    value = Buffer.from(pcs);
    decoded = decodePcs(new TextDecoder("utf-8", { fatal: true }).decode(value));
  } else {
    decoded = pcsFromObject(pcs);
    value = Buffer.from(stringifyJson(pcs), "utf8");
  }
  const headers: Record<string, string> = { [KAFKA_TENANT_HEADER]: tenant };
  if (traceparent !== undefined) {
    headers[KAFKA_TRACEPARENT_HEADER] = traceparent;
  }
  return { key: `${tenant}/${decoded.pcs_id}`, value, headers };
}

/** Producer settings the helper relies on: idempotence, one request in flight (ordering under retries). */
export const PRODUCER_CONFIG: Readonly<ProducerConfig> = Object.freeze({
  idempotent: true,
  maxInFlightRequests: 1,
});

/** Options of {@link FlkProducer}. */
export interface FlkProducerOptions {
  /** Deployment prefix prepended to `flk.submissions` (e.g. `eu1.`); default none. */
  topicPrefix?: string;
}

/** Sends PCS records to the submissions topic through one idempotent kafkajs producer. */
export class FlkProducer {
  /** The topic records go to. */
  readonly topic: string;

  /** Wraps an existing producer; it must have been created with {@link PRODUCER_CONFIG}. */
  constructor(
    private readonly producer: Producer,
    options: FlkProducerOptions = {},
  ) {
    this.topic = `${options.topicPrefix ?? ""}${SUBMISSIONS_TOPIC}`;
  }

  /** Creates the producer from a configured `Kafka` client (brokers, TLS, SASL are the caller's). */
  static create(kafka: Kafka, options: FlkProducerOptions = {}): FlkProducer {
    return new FlkProducer(kafka.producer({ ...PRODUCER_CONFIG }), options);
  }

  /** Connects the underlying producer. */
  async connect(): Promise<void> {
    await this.producer.connect();
  }

  /** Flushes and disconnects. */
  async disconnect(): Promise<void> {
    await this.producer.disconnect();
  }

  /** Produces one PCS and waits for all in-sync replicas. */
  async send(pcs: Pcs | string | Uint8Array, options: RecordOptions): Promise<RecordMetadata[]> {
    return this.sendMany([{ pcs, options }]);
  }

  /** Produces several PCS records in one request; each keeps its own tenant and trace context. */
  async sendMany(items: ReadonlyArray<{ pcs: Pcs | string | Uint8Array; options: RecordOptions }>): Promise<RecordMetadata[]> {
    const messages: Message[] = items.map(({ pcs, options }) => buildSubmissionRecord(pcs, options));
    return this.producer.send({ topic: this.topic, acks: REQUIRED_ACKS, messages });
  }
}
