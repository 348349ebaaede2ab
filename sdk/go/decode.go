package flk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// DecodeError reports a malformed PCS body (HTTP 400 on the gateway).
type DecodeError struct {
	// Key is the top-level JSON key at fault, or "" when the body as a whole
	// is bad (not JSON, not an object).
	Key string
	// Msg says what is wrong with it.
	Msg string
}

func (e *DecodeError) Error() string {
	if e.Key == "" {
		return "malformed PCS: " + e.Msg
	}
	return fmt.Sprintf("malformed PCS: key %q: %s", e.Key, e.Msg)
}

// DecodePCS parses a PCS body as the gateway does. It is stricter than
// json.Unmarshal into PCS, for agreement with the server:
//
//   - integer fields (epoch, attempt, seed, scales, N_j values, ft counters)
//     reject any JSON number with a fraction or exponent, even 1.0;
//   - float fields accept integers, and reject numbers beyond float64 range;
//   - the body must be valid UTF-8 and strings must not hold lone UTF-16
//     surrogate escapes, which encoding/json would silently turn into U+FFFD
//     and so change the signed bytes;
//   - null on an optional key means absent; on a required key it is a type
//     error.
//
// A missing key that verification step 1 names (pcs_id, schema, version,
// shard_id, merkle_root, scales) decodes as empty, because the contract
// answers it with an outcome (202), not a 400; any other missing required
// key (epoch, N_j, coh_star, D_hat, regime, budget) is an error. This is the
// server's rule, and keys are checked in the server's order so that a body
// with several faults names the same key on both sides. A repeated key takes
// its last value, as every JSON parser the project uses does. Unknown keys
// are ignored. Errors are *DecodeError; nested keys are dotted (N_j.2,
// ft.degraded).
func DecodePCS(data []byte) (*PCS, error) {
	obj, err := splitObject(data)
	if err != nil {
		return nil, err
	}
	p := &PCS{}
	steps := []func() error{
		func() (err error) { p.Scales, err = optionalOr(obj, "scales", parseScales); return },
		func() (err error) { p.NJ, err = required(obj, "N_j", parseNJ); return },
		func() (err error) { p.FT, err = optionalPtr(obj, "ft", parseFT); return },
		func() (err error) { p.SentAt, err = optionalOr(obj, "sent_at", parseSentAt); return },
		func() (err error) { p.PcsID, err = optionalOr(obj, "pcs_id", parseString); return },
		func() (err error) { p.Schema, err = optionalOr(obj, "schema", parseString); return },
		func() (err error) { p.Version, err = optionalOr(obj, "version", parseString); return },
		func() (err error) { p.ShardID, err = optionalOr(obj, "shard_id", parseString); return },
		func() (err error) { p.Epoch, err = required(obj, "epoch", parseInt); return },
		func() (err error) { p.Attempt, err = optionalPtr(obj, "attempt", parseInt); return },
		func() (err error) { p.Seed, err = optionalPtr(obj, "seed", parseInt); return },
		func() (err error) { p.CohStar, err = required(obj, "coh_star", parseFloat); return },
		func() (err error) { p.VStar, err = optionalOr(obj, "v_star", parseFloats); return },
		func() (err error) { p.DHat, err = required(obj, "D_hat", parseFloat); return },
		func() (err error) { p.R, err = optionalPtr(obj, "r", parseFloat); return },
		func() (err error) { p.Regime, err = required(obj, "regime", parseString); return },
		func() (err error) { p.Budget, err = required(obj, "budget", parseFloat); return },
		func() (err error) { p.MerkleRoot, err = optionalOr(obj, "merkle_root", parseString); return },
		func() (err error) { p.Sig, err = optionalOr(obj, "sig", parseString); return },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// object is a JSON object's members by key, with the prefix that nested
// objects put before key names in errors ("ft.").
type object struct {
	members map[string]json.RawMessage
	prefix  string
}

// keyError wraps a parse failure of key into a *DecodeError, keeping the
// deeper key of a nested failure (N_j.2 rather than N_j).
func (o object) keyError(key string, err error) error {
	var de *DecodeError
	if errors.As(err, &de) {
		return de
	}
	return &DecodeError{Key: o.prefix + key, Msg: err.Error()}
}

// required parses a key that must be present and not null.
func required[T any](o object, key string, parse func(object, string, json.RawMessage) (T, error)) (T, error) {
	raw, ok := o.members[key]
	if !ok {
		var zero T
		return zero, &DecodeError{Key: o.prefix + key, Msg: "is required"}
	}
	v, err := parse(o, key, raw)
	if err != nil {
		return v, o.keyError(key, err)
	}
	return v, nil
}

// optionalOr parses a key that may be absent or null, giving the zero value.
func optionalOr[T any](o object, key string, parse func(object, string, json.RawMessage) (T, error)) (T, error) {
	raw, ok := o.members[key]
	if !ok || isNull(raw) {
		var zero T
		return zero, nil
	}
	v, err := parse(o, key, raw)
	if err != nil {
		return v, o.keyError(key, err)
	}
	return v, nil
}

// optionalPtr is optionalOr for values whose absence must stay visible.
func optionalPtr[T any](o object, key string, parse func(object, string, json.RawMessage) (T, error)) (*T, error) {
	raw, ok := o.members[key]
	if !ok || isNull(raw) {
		return nil, nil
	}
	v, err := parse(o, key, raw)
	if err != nil {
		return nil, o.keyError(key, err)
	}
	return &v, nil
}

// splitObject checks that data is exactly one JSON object and returns its
// top-level members.
//
// Faults of the document as a whole come first and name no key, as on the
// server, which parses the whole body before looking at any key: invalid
// UTF-8 or JSON, a lone surrogate escape or a number beyond float64 range
// anywhere (even under a key nobody reads), or a body that is not an object.
func splitObject(data []byte) (object, error) {
	if !utf8.Valid(data) {
		return object{}, &DecodeError{Msg: "body is not valid UTF-8"}
	}
	if !json.Valid(data) {
		return object{}, &DecodeError{Msg: "body is not valid JSON"}
	}
	if err := checkSurrogates(data); err != nil {
		return object{}, &DecodeError{Msg: "body is not valid JSON: " + err.Error()}
	}
	if err := checkNumberRange(data); err != nil {
		return object{}, &DecodeError{Msg: "body is not valid JSON: " + err.Error()}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return object{}, &DecodeError{Msg: "body is not a JSON object"}
	}
	members := make(map[string]json.RawMessage)
	for dec.More() {
		// The document is valid JSON, so neither call can fail.
		tok, err := dec.Token()
		if err != nil {
			return object{}, &DecodeError{Msg: "body is not valid JSON: " + err.Error()}
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return object{}, &DecodeError{Msg: "body is not valid JSON: " + err.Error()}
		}
		members[key] = raw // a repeated key keeps its last value
	}
	return object{members: members}, nil
}

// checkNumberRange rejects any number in a valid JSON document that
// overflows float64: JSON has no infinities.
func checkNumberRange(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if n, ok := tok.(json.Number); ok {
			if _, err := n.Float64(); err != nil {
				return fmt.Errorf("number out of range: %s", n)
			}
		}
	}
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// jsonType names the JSON type of raw for error messages.
func jsonType(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

func parseString(_ object, _ string, raw json.RawMessage) (string, error) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", fmt.Errorf("must be a string, got %s", jsonType(raw))
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", err
	}
	return s, nil
}

func parseBool(_ object, _ string, raw json.RawMessage) (bool, error) {
	switch string(raw) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("must be a boolean, got %s", jsonType(raw))
}

// parseInt accepts only JSON integer literals: the contract makes 1.0 a
// malformed epoch, so a float that happens to be integral is not enough.
func parseInt(_ object, _ string, raw json.RawMessage) (int64, error) {
	// "-0" is what JSON parsers that keep the sign of zero (the server's
	// among them) read as the float -0.0, so it is not an integer either.
	if jsonType(raw) != "a number" || bytes.ContainsAny(raw, ".eE") || string(raw) == "-0" {
		return 0, fmt.Errorf("must be an integer, got %s", raw)
	}
	v, err := json.Number(raw).Int64()
	if err != nil {
		return 0, fmt.Errorf("is out of range for a 64-bit signed integer: %s", raw)
	}
	return v, nil
}

// parseFloat accepts any JSON number; integers become floats. Numbers that
// overflow float64 are malformed (JSON has no infinities).
func parseFloat(_ object, _ string, raw json.RawMessage) (float64, error) {
	if jsonType(raw) != "a number" {
		return 0, fmt.Errorf("must be a number, got %s", jsonType(raw))
	}
	v, err := json.Number(raw).Float64()
	if err != nil {
		return 0, fmt.Errorf("is out of range for a 64-bit float: %s", raw)
	}
	return v, nil
}

func parseItems(raw json.RawMessage) ([]json.RawMessage, error) {
	if len(raw) == 0 || raw[0] != '[' {
		return nil, fmt.Errorf("must be an array, got %s", jsonType(raw))
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	return items, nil
}

func parseFloats(o object, key string, raw json.RawMessage) ([]float64, error) {
	items, err := parseItems(raw)
	if err != nil {
		return nil, err
	}
	out := make([]float64, 0, len(items))
	for i, item := range items {
		v, err := parseFloat(o, key, item)
		if err != nil {
			return nil, fmt.Errorf("element %d %w", i, err)
		}
		out = append(out, v)
	}
	return out, nil
}

func parseStrings(o object, key string, raw json.RawMessage) ([]string, error) {
	items, err := parseItems(raw)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(items))
	for i, item := range items {
		v, err := parseString(o, key, item)
		if err != nil {
			return nil, fmt.Errorf("element %d %w", i, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// parseScales requires positive integers: a scale is a grid resolution, and
// log2 of zero or a negative number has no meaning in the regression.
func parseScales(o object, key string, raw json.RawMessage) ([]int64, error) {
	items, err := parseItems(raw)
	if err != nil {
		return nil, err
	}
	out := make([]int64, 0, len(items))
	for i, item := range items {
		v, err := parseInt(o, key, item)
		if err == nil && v <= 0 {
			err = fmt.Errorf("must be positive, got %d", v)
		}
		if err != nil {
			return nil, fmt.Errorf("element %d %w", i, err)
		}
		out = append(out, v)
	}
	return out, nil
}

func parseObject(raw json.RawMessage, prefix string) (object, error) {
	if len(raw) == 0 || raw[0] != '{' {
		return object{}, fmt.Errorf("must be an object, got %s", jsonType(raw))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return object{}, err
	}
	return object{members: m, prefix: prefix}, nil
}

func parseNJ(_ object, key string, raw json.RawMessage) (map[string]int64, error) {
	nj, err := parseObject(raw, key+".")
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(nj.members))
	for scale := range nj.members {
		if out[scale], err = required(nj, scale, parseInt); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// parseSentAt requires RFC 3339 with an explicit zone; a zone-less time would
// be read differently by every consumer. RFC 3339 allows lowercase t and z,
// which Go's parser does not, so they are normalised first.
func parseSentAt(o object, key string, raw json.RawMessage) (string, error) {
	s, err := parseString(o, key, raw)
	if err != nil {
		return "", err
	}
	normal := []byte(s)
	if len(normal) > 10 && normal[10] == 't' {
		normal[10] = 'T'
	}
	if n := len(normal); n > 0 && normal[n-1] == 'z' {
		normal[n-1] = 'Z'
	}
	if len(normal) <= 10 || normal[10] != 'T' {
		return "", fmt.Errorf("must be an RFC 3339 timestamp with a zone, got %q", s)
	}
	if _, err := time.Parse(time.RFC3339Nano, string(normal)); err != nil {
		return "", fmt.Errorf("must be an RFC 3339 timestamp with a zone, got %q", s)
	}
	return s, nil
}

func parseFT(_ object, key string, raw json.RawMessage) (FT, error) {
	o, err := parseObject(raw, key+".")
	if err != nil {
		return FT{}, err
	}
	var ft FT
	if ft.Fallbacks, err = optionalOr(o, "fallbacks", parseStrings); err != nil {
		return FT{}, err
	}
	if ft.OutboxSeq, err = optionalPtr(o, "outbox_seq", parseInt); err != nil {
		return FT{}, err
	}
	if ft.Degraded, err = optionalOr(o, "degraded", parseBool); err != nil {
		return FT{}, err
	}
	if ft.ClockSkewMs, err = optionalPtr(o, "clock_skew_ms", parseInt); err != nil {
		return FT{}, err
	}
	return ft, nil
}

// checkSurrogates rejects \uD800-\uDFFF escapes that do not form a valid
// high+low pair anywhere inside raw. encoding/json would replace them with
// U+FFFD, so the server (which rejects them) and the SDK would disagree.
func checkSurrogates(raw []byte) error {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		i++ // the escaped character
		if i >= len(raw) || raw[i] != 'u' {
			continue
		}
		r, ok := hex4(raw, i+1)
		if !ok {
			continue
		}
		i += 4
		switch {
		case r >= 0xdc00 && r <= 0xdfff:
			return errors.New("lone UTF-16 low surrogate in string")
		case r >= 0xd800 && r <= 0xdbff:
			if i+2 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
				return errors.New("lone UTF-16 high surrogate in string")
			}
			lo, ok := hex4(raw, i+3)
			if !ok || lo < 0xdc00 || lo > 0xdfff {
				return errors.New("lone UTF-16 high surrogate in string")
			}
			i += 6
		}
	}
	return nil
}

// hex4 reads four hex digits at raw[at:].
func hex4(raw []byte, at int) (rune, bool) {
	if at+4 > len(raw) {
		return 0, false
	}
	var r rune
	for _, c := range raw[at : at+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
