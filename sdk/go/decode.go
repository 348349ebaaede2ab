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

// DecodePCS parses a PCS body as the gateway does. It is deliberately
// stricter than json.Unmarshal into PCS, for agreement with the server:
//
//   - integer fields (epoch, attempt, seed, scales, N_j values, ft counters)
//     reject any JSON number with a fraction or exponent, even 1.0;
//   - float fields accept integers, and reject numbers beyond float64 range;
//   - the body must be valid UTF-8 and strings must not hold lone UTF-16
//     surrogate escapes, which encoding/json would silently turn into U+FFFD
//     and so change the signed bytes;
//   - a repeated top-level key is rejected, because two parsers picking
//     different copies of a signed field is a signature-confusion hazard;
//   - null is accepted only for optional keys, where it means absent.
//
// Absent required keys decode to zero values: the contract reports them
// through verification (CONTRACT section 3, step 1), not as malformed bodies.
// Unknown keys are ignored. Errors are *DecodeError and name the key.
func DecodePCS(data []byte) (*PCS, error) {
	fields, err := splitObject(data)
	if err != nil {
		return nil, err
	}
	p := &PCS{}
	for _, m := range fields {
		if err := decodeField(p, m.key, m.raw); err != nil {
			return nil, &DecodeError{Key: m.key, Msg: err.Error()}
		}
	}
	return p, nil
}

// member is one top-level key and its raw value.
type member struct {
	key string
	raw json.RawMessage
}

// splitObject checks that data is exactly one JSON object and returns its
// top-level members in document order (so the first bad key is reported,
// deterministically), rejecting duplicates.
func splitObject(data []byte) ([]member, error) {
	if !utf8.Valid(data) {
		return nil, &DecodeError{Msg: "body is not valid UTF-8"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, &DecodeError{Msg: "body is not a JSON object"}
	}
	var fields []member
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, &DecodeError{Msg: "invalid JSON: " + err.Error()}
		}
		key, ok := tok.(string)
		if !ok {
			return nil, &DecodeError{Msg: "invalid JSON: object key is not a string"}
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, &DecodeError{Key: key, Msg: "invalid JSON value: " + err.Error()}
		}
		if seen[key] {
			return nil, &DecodeError{Key: key, Msg: "duplicate key"}
		}
		seen[key] = true
		if err := checkSurrogates(raw); err != nil {
			return nil, &DecodeError{Key: key, Msg: err.Error()}
		}
		fields = append(fields, member{key, raw})
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, &DecodeError{Msg: "invalid JSON: unterminated object"}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &DecodeError{Msg: "invalid JSON: trailing data after the object"}
	}
	return fields, nil
}

// decodeField stores one top-level member into p.
func decodeField(p *PCS, key string, raw json.RawMessage) error {
	var err error
	switch key {
	case "pcs_id":
		p.PcsID, err = parseString(raw)
	case "schema":
		p.Schema, err = parseString(raw)
	case "version":
		p.Version, err = parseString(raw)
	case "shard_id":
		p.ShardID, err = parseString(raw)
	case "regime":
		p.Regime, err = parseString(raw)
	case "merkle_root":
		p.MerkleRoot, err = parseString(raw)
	case "epoch":
		p.Epoch, err = parseInt(raw)
	case "coh_star":
		p.CohStar, err = parseFloat(raw)
	case "D_hat":
		p.DHat, err = parseFloat(raw)
	case "budget":
		p.Budget, err = parseFloat(raw)
	case "scales":
		p.Scales, err = parseScales(raw)
	case "N_j":
		p.NJ, err = parseNJ(raw)
	case "attempt":
		p.Attempt, err = optional(raw, parseInt)
	case "seed":
		p.Seed, err = optional(raw, parseInt)
	case "r":
		p.R, err = optional(raw, parseFloat)
	case "v_star":
		if !isNull(raw) {
			p.VStar, err = parseArray(raw, parseFloat)
		}
	case "sent_at":
		if !isNull(raw) {
			p.SentAt, err = parseSentAt(raw)
		}
	case "sig":
		if !isNull(raw) {
			p.Sig, err = parseString(raw)
		}
	case "ft":
		if !isNull(raw) {
			p.FT, err = parseFT(raw)
		}
	}
	return err
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// optional parses a nullable value: null means absent.
func optional[T any](raw json.RawMessage, parse func(json.RawMessage) (T, error)) (*T, error) {
	if isNull(raw) {
		return nil, nil
	}
	v, err := parse(raw)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

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

func parseString(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", fmt.Errorf("expected a string, got %s", jsonType(raw))
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", err
	}
	return s, nil
}

func parseBool(raw json.RawMessage) (bool, error) {
	switch string(raw) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("expected a boolean, got %s", jsonType(raw))
}

// parseInt accepts only JSON integer literals: the contract makes 1.0 a
// malformed epoch, so a float that happens to be integral is not enough.
func parseInt(raw json.RawMessage) (int64, error) {
	if jsonType(raw) != "a number" {
		return 0, fmt.Errorf("expected an integer, got %s", jsonType(raw))
	}
	if bytes.ContainsAny(raw, ".eE") {
		return 0, fmt.Errorf("expected an integer, got %s", raw)
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, err
	}
	v, err := n.Int64()
	if err != nil {
		return 0, fmt.Errorf("integer out of range: %s", raw)
	}
	return v, nil
}

// parseFloat accepts any JSON number; integers become floats. Numbers that
// overflow float64 are malformed (JSON has no infinities).
func parseFloat(raw json.RawMessage) (float64, error) {
	if jsonType(raw) != "a number" {
		return 0, fmt.Errorf("expected a number, got %s", jsonType(raw))
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, err
	}
	v, err := n.Float64()
	if err != nil {
		return 0, fmt.Errorf("number out of range: %s", raw)
	}
	return v, nil
}

func parseArray[T any](raw json.RawMessage, parse func(json.RawMessage) (T, error)) ([]T, error) {
	if len(raw) == 0 || raw[0] != '[' {
		return nil, fmt.Errorf("expected an array, got %s", jsonType(raw))
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	out := make([]T, 0, len(items))
	for i, item := range items {
		v, err := parse(item)
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// parseScales requires positive integers: a scale is a grid resolution, and
// log2 of zero or a negative number has no meaning in the regression.
func parseScales(raw json.RawMessage) ([]int64, error) {
	return parseArray(raw, func(item json.RawMessage) (int64, error) {
		v, err := parseInt(item)
		if err == nil && v <= 0 {
			err = fmt.Errorf("scale must be positive, got %d", v)
		}
		return v, err
	})
}

func parseObject(raw json.RawMessage) (map[string]json.RawMessage, error) {
	if len(raw) == 0 || raw[0] != '{' {
		return nil, fmt.Errorf("expected an object, got %s", jsonType(raw))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func parseNJ(raw json.RawMessage) (map[string]int64, error) {
	m, err := parseObject(raw)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(m))
	for k, v := range m {
		n, err := parseInt(v)
		if err != nil {
			return nil, fmt.Errorf("entry %q: %w", k, err)
		}
		out[k] = n
	}
	return out, nil
}

// parseSentAt requires RFC 3339 with an explicit zone; a zone-less time would
// be read differently by every consumer.
func parseSentAt(raw json.RawMessage) (string, error) {
	s, err := parseString(raw)
	if err != nil {
		return "", err
	}
	if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
		return "", fmt.Errorf("not an RFC 3339 time with zone: %q", s)
	}
	return s, nil
}

func parseFT(raw json.RawMessage) (*FT, error) {
	m, err := parseObject(raw)
	if err != nil {
		return nil, err
	}
	ft := &FT{}
	for k, v := range m {
		if isNull(v) {
			continue
		}
		switch k {
		case "outbox_seq":
			ft.OutboxSeq, err = optional(v, parseInt)
		case "degraded":
			ft.Degraded, err = parseBool(v)
		case "fallbacks":
			ft.Fallbacks, err = parseArray(v, parseString)
		case "clock_skew_ms":
			ft.ClockSkewMs, err = optional(v, parseInt)
		}
		if err != nil {
			return nil, fmt.Errorf("ft.%s: %w", k, err)
		}
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
