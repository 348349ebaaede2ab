// Package kafka writes PCS records straight to FLK's submissions topic, for
// agents that skip the HTTP gateway (CONTRACT section 6).
//
// It is a separate package so that programs using only the HTTP client do not
// link a Kafka client. A direct producer gets no answer from the write itself:
// it learns its outcome with flk.Client.Lookup or from the decisions topic.
package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/twmb/franz-go/pkg/kgo"

	flk "github.com/flk-project/flk/sdk/go"
)

// SubmissionsTopic is the topic's base name; a deployment may put a prefix
// before it.
const SubmissionsTopic = "flk.submissions"

// DefaultTenant is the tenant the server assumes when none is named.
const DefaultTenant = "default"

// Header names the server reads from a direct producer's record.
const (
	HeaderTenant      = "flk-tenant"
	HeaderTraceparent = "traceparent"
)

// RecordOption adds optional parts to a record.
type RecordOption func(*kgo.Record) error

// traceparentPattern is the W3C Trace Context header (version 00 layout; later
// versions may append fields, which the spec asks readers to accept).
var traceparentPattern = regexp.MustCompile(`^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$`)

// WithTraceparent attaches a W3C traceparent header, so the server's trace of
// the record joins the agent's. A malformed value is an error rather than
// silently dropped, because a broken trace is hard to notice later.
func WithTraceparent(traceparent string) RecordOption {
	return func(r *kgo.Record) error {
		if !traceparentPattern.MatchString(traceparent) {
			return fmt.Errorf("flk kafka: malformed traceparent %q", traceparent)
		}
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderTraceparent, Value: []byte(traceparent)})
		return nil
	}
}

// BuildRecord makes the record for one PCS body: the value is body byte for
// byte (the server verifies exactly what the agent would have POSTed), the
// key is "<tenant>/<pcs_id>" so that duplicates land in one partition and
// dedup stays local to it, and the flk-tenant header names the tenant. An
// empty tenant means DefaultTenant. The body must decode as a PCS with a
// pcs_id; catching a malformed record here is cheaper than finding its
// rejection in the audit log.
func BuildRecord(topic, tenant string, body []byte, opts ...RecordOption) (*kgo.Record, error) {
	if topic == "" {
		return nil, errors.New("flk kafka: topic is required")
	}
	pcs, err := flk.DecodePCS(body)
	if err != nil {
		return nil, err
	}
	if pcs.PcsID == "" {
		return nil, errors.New(`flk kafka: the record has no "pcs_id" to key it by`)
	}
	if tenant == "" {
		tenant = DefaultTenant
	}
	r := &kgo.Record{
		Topic:   topic,
		Key:     []byte(tenant + "/" + pcs.PcsID),
		Value:   append([]byte(nil), body...),
		Headers: []kgo.RecordHeader{{Key: HeaderTenant, Value: []byte(tenant)}},
	}
	for _, opt := range opts {
		if err := opt(r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Config configures a Producer.
type Config struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// Tenant is sent with every record; "" means DefaultTenant.
	Tenant string
	// Topic defaults to SubmissionsTopic; include the deployment's prefix.
	Topic string
	// ExtraOptions are passed to kgo.NewClient after the SDK's own (TLS,
	// SASL, client id). They may override acks, which the SDK advises against.
	ExtraOptions []kgo.Opt
}

// Producer writes PCS records and waits until the brokers acknowledged them.
// It is safe for concurrent use; Close it when done.
type Producer struct {
	// client is the underlying franz-go client.
	client *kgo.Client
	// topic is the submissions topic, prefix included.
	topic string
	// tenant is the tenant of every record.
	tenant string
}

// NewProducer connects a producer with acks=all and idempotent writes (the
// franz-go default): a record counts as written only once every in-sync
// replica has it, which is what the server's WAL guarantee assumes.
func NewProducer(cfg Config) (*Producer, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("flk kafka: at least one broker is required")
	}
	topic := cfg.Topic
	if topic == "" {
		topic = SubmissionsTopic
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.DefaultProduceTopic(topic),
	}, cfg.ExtraOptions...)
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("flk kafka: %w", err)
	}
	tenant := cfg.Tenant
	if tenant == "" {
		tenant = DefaultTenant
	}
	return &Producer{client: client, topic: topic, tenant: tenant}, nil
}

// ProduceRaw writes an encoded PCS body and waits for its acknowledgement
// (or ctx's end). The body is sent unchanged.
func (p *Producer) ProduceRaw(ctx context.Context, body []byte, opts ...RecordOption) error {
	record, err := BuildRecord(p.topic, p.tenant, body, opts...)
	if err != nil {
		return err
	}
	if err := p.client.ProduceSync(ctx, record).FirstErr(); err != nil {
		return fmt.Errorf("flk kafka: produce %s: %w", record.Key, err)
	}
	return nil
}

// Produce encodes a PCS as JSON and writes it like ProduceRaw.
func (p *Producer) Produce(ctx context.Context, pcs *flk.PCS, opts ...RecordOption) error {
	body, err := json.Marshal(pcs)
	if err != nil {
		return fmt.Errorf("flk kafka: encode PCS: %w", err)
	}
	return p.ProduceRaw(ctx, body, opts...)
}

// Close flushes nothing (every Produce already waited) and releases the
// client's connections.
func (p *Producer) Close() {
	p.client.Close()
}
