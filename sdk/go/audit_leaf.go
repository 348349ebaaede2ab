package flk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"unicode/utf8"
)

// AuditLeafVersion is the leaf format this SDK reads (the leaf's "v").
const AuditLeafVersion = 1

// AuditLeaf is one entry of the audit Merkle log: a small JSON object per
// audit decision. A verifier hashes the bytes as served and only parses
// them; nothing here re-serializes a leaf.
type AuditLeaf struct {
	// DecidedAtMs is when the decision was made, in ms since the epoch.
	DecidedAtMs int64 `json:"decided_at_ms"`
	// Dedup relates the decision to the first write of its (tenant,
	// pcs_id): first, duplicate, conflict or none.
	Dedup string `json:"dedup"`
	// EntryHash is the hex hash of the audit chain entry, which commits to
	// every stored field.
	EntryHash string `json:"entry_hash"`
	// Outcome is the verdict code of the decision.
	Outcome string `json:"outcome"`
	// Partition is the decisions partition (the audit chain).
	Partition int32 `json:"partition"`
	// PcsID is the record's pcs_id, nil when the body did not decode.
	PcsID *string `json:"pcs_id"`
	// Region is the region that decided.
	Region string `json:"region"`
	// Seq is the position in the partition's audit chain.
	Seq int64 `json:"seq"`
	// SignedDigest is the hex SHA-256 of the record's canonical signing
	// payload, nil when no signature was checked.
	SignedDigest *string `json:"signed_digest"`
	// Source is where the submission was in the log.
	Source LeafSource `json:"source"`
	// Tenant is the submitting tenant.
	Tenant string `json:"tenant"`
	// V is the format version, AuditLeafVersion.
	V uint32 `json:"v"`
}

// LeafSource is a submission's coordinates in the submissions topic.
type LeafSource struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// DecodeAuditLeaf parses leaf bytes as strictly as the log's own reader:
// one JSON object with exactly the leaf's keys (unknown or repeated keys are
// refused, pcs_id and signed_digest may be null or absent), integers
// without fraction or exponent and in range, no lone surrogate escapes, and
// version AuditLeafVersion.
func DecodeAuditLeaf(data []byte) (*AuditLeaf, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("leaf is not valid UTF-8")
	}
	if !json.Valid(data) {
		return nil, errors.New("leaf is not valid JSON")
	}
	if err := checkSurrogates(data); err != nil {
		return nil, fmt.Errorf("leaf is not valid JSON: %w", err)
	}
	var leaf AuditLeaf
	err := decodeStrictObject(data, "leaf", []strictField{
		{name: "decided_at_ms", required: true, parse: intInto(&leaf.DecidedAtMs, math.MinInt64, math.MaxInt64)},
		{name: "dedup", required: true, parse: stringInto(&leaf.Dedup)},
		{name: "entry_hash", required: true, parse: stringInto(&leaf.EntryHash)},
		{name: "outcome", required: true, parse: stringInto(&leaf.Outcome)},
		{name: "partition", required: true, parse: int32Into(&leaf.Partition)},
		{name: "pcs_id", parse: optionalStringInto(&leaf.PcsID)},
		{name: "region", required: true, parse: stringInto(&leaf.Region)},
		{name: "seq", required: true, parse: intInto(&leaf.Seq, math.MinInt64, math.MaxInt64)},
		{name: "signed_digest", parse: optionalStringInto(&leaf.SignedDigest)},
		{name: "source", required: true, object: []strictField{
			{name: "topic", required: true, parse: stringInto(&leaf.Source.Topic)},
			{name: "partition", required: true, parse: int32Into(&leaf.Source.Partition)},
			{name: "offset", required: true, parse: intInto(&leaf.Source.Offset, math.MinInt64, math.MaxInt64)},
		}},
		{name: "tenant", required: true, parse: stringInto(&leaf.Tenant)},
		{name: "v", required: true, parse: func(raw json.RawMessage) error {
			var v int64
			if err := intInto(&v, 0, math.MaxUint32)(raw); err != nil {
				return err
			}
			leaf.V = uint32(v)
			return nil
		}},
	})
	if err != nil {
		return nil, err
	}
	if leaf.V != AuditLeafVersion {
		return nil, fmt.Errorf("leaf version %d is not %d", leaf.V, AuditLeafVersion)
	}
	return &leaf, nil
}

// strictField is one key of an object read by decodeStrictObject: a value
// read by parse, or a nested object with its own keys.
type strictField struct {
	name     string
	required bool
	parse    func(json.RawMessage) error
	object   []strictField
}

// decodeStrictObject reads raw (valid JSON without lone surrogates) as an
// object with only the given keys, each at most once, the required ones
// present. Errors name the path of the key at fault (leaf.source.offset).
func decodeStrictObject(raw json.RawMessage, path string, fields []strictField) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("%s: must be a JSON object, got %s", path, jsonType(bytes.TrimSpace(raw)))
	}
	seen := make(map[string]bool, len(fields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%s: not valid JSON: %w", path, err)
		}
		key, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return fmt.Errorf("%s: not valid JSON: %w", path, err)
		}
		i := slices.IndexFunc(fields, func(f strictField) bool { return f.name == key })
		switch {
		case i < 0:
			return fmt.Errorf("%s: unknown key %q", path, key)
		case seen[key]:
			return fmt.Errorf("%s: repeated key %q", path, key)
		}
		seen[key] = true
		if fields[i].object != nil {
			if err := decodeStrictObject(value, path+"."+key, fields[i].object); err != nil {
				return err
			}
		} else if err := fields[i].parse(value); err != nil {
			return fmt.Errorf("%s.%s: %w", path, key, err)
		}
	}
	for _, f := range fields {
		if f.required && !seen[f.name] {
			return fmt.Errorf("%s: missing key %q", path, f.name)
		}
	}
	return nil
}

func stringInto(dst *string) func(json.RawMessage) error {
	return func(raw json.RawMessage) (err error) {
		*dst, err = parseString(object{}, "", raw)
		return err
	}
}

func optionalStringInto(dst **string) func(json.RawMessage) error {
	return func(raw json.RawMessage) error {
		if isNull(raw) {
			*dst = nil
			return nil
		}
		s, err := parseString(object{}, "", raw)
		if err != nil {
			return err
		}
		*dst = &s
		return nil
	}
}

func intInto(dst *int64, lo, hi int64) func(json.RawMessage) error {
	return func(raw json.RawMessage) error {
		v, err := parseInt(object{}, "", raw)
		if err != nil {
			return err
		}
		if v < lo || v > hi {
			return fmt.Errorf("is out of range [%d, %d]: %d", lo, hi, v)
		}
		*dst = v
		return nil
	}
}

func int32Into(dst *int32) func(json.RawMessage) error {
	return func(raw json.RawMessage) error {
		var v int64
		if err := intInto(&v, math.MinInt32, math.MaxInt32)(raw); err != nil {
			return err
		}
		*dst = int32(v)
		return nil
	}
}
