package kafka

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	flk "github.com/flk-project/flk/sdk/go"
)

func golden(t *testing.T) []byte {
	t.Helper()
	body, err := os.ReadFile("../../../tests/vectors/golden/pcs_tiny_case_1.json")
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func header(r *kgo.Record, key string) (string, int) {
	var value string
	n := 0
	for _, h := range r.Headers {
		if h.Key == key {
			value = string(h.Value)
			n++
		}
	}
	return value, n
}

func TestBuildRecordKeepsBodyAndKeysByTenantAndID(t *testing.T) {
	body := golden(t)
	r, err := BuildRecord("prod.flk.submissions", "acme", body)
	if err != nil {
		t.Fatal(err)
	}
	if r.Topic != "prod.flk.submissions" {
		t.Fatalf("topic %q", r.Topic)
	}
	if !bytes.Equal(r.Value, body) {
		t.Fatal("value differs from the body: the server verifies the exact bytes")
	}
	if string(r.Key) != "acme/c50bb25a7aff94164147b73c846f0e5e10890d75df204875ca70c448f52c6edf" {
		t.Fatalf("key %q", r.Key)
	}
	if v, n := header(r, HeaderTenant); v != "acme" || n != 1 {
		t.Fatalf("flk-tenant %q x%d", v, n)
	}
	if _, n := header(r, HeaderTraceparent); n != 0 {
		t.Fatal("traceparent set without being asked")
	}
	body[0] = ' '
	if r.Value[0] == ' ' {
		t.Fatal("record aliases the caller's buffer")
	}
}

func TestBuildRecordDefaultsTenantAndAddsTraceparent(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	r, err := BuildRecord(SubmissionsTopic, "", golden(t), WithTraceparent(tp))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(r.Key), "default/") {
		t.Fatalf("key %q", r.Key)
	}
	if v, _ := header(r, HeaderTenant); v != DefaultTenant {
		t.Fatalf("tenant header %q", v)
	}
	if v, n := header(r, HeaderTraceparent); v != tp || n != 1 {
		t.Fatalf("traceparent %q x%d", v, n)
	}
}

func TestBuildRecordRejects(t *testing.T) {
	if _, err := BuildRecord(SubmissionsTopic, "t", golden(t), WithTraceparent("00-xyz")); err == nil {
		t.Error("malformed traceparent accepted")
	}
	if _, err := BuildRecord("", "t", golden(t)); err == nil {
		t.Error("empty topic accepted")
	}
	var de *flk.DecodeError
	if _, err := BuildRecord(SubmissionsTopic, "t", bytes.Replace(golden(t), []byte(`"epoch": 1`), []byte(`"epoch": 1.0`), 1)); !errors.As(err, &de) || de.Key != "epoch" {
		t.Errorf("malformed body: %v", err)
	}
	noID := bytes.Replace(golden(t), []byte(`"pcs_id"`), []byte(`"other_id"`), 1)
	if _, err := BuildRecord(SubmissionsTopic, "t", noID); err == nil || !strings.Contains(err.Error(), "pcs_id") {
		t.Errorf("body without pcs_id: %v", err)
	}
}

func TestNewProducerNeedsBrokers(t *testing.T) {
	if _, err := NewProducer(Config{}); err == nil {
		t.Fatal("no brokers accepted")
	}
}

// TestProduceFailsWithoutBroker checks the producer waits for delivery rather
// than fire-and-forget: with nothing listening, Produce must return an error
// once the context ends instead of reporting success.
func TestProduceFailsWithoutBroker(t *testing.T) {
	p, err := NewProducer(Config{Brokers: []string{"127.0.0.1:1"}, Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := p.ProduceRaw(ctx, golden(t)); err == nil {
		t.Fatal("produce without a broker reported success")
	}
}
