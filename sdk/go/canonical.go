package flk

import (
	"math"
	"strconv"
	"strings"
)

// SignedFields are the eight fields covered by a v0.1 signature (CONTRACT
// section 2.1). Nothing else in a PCS is signed, so servers and agents only
// need to agree on these.
type SignedFields struct {
	// PcsID is the record id, normally PcsID(MerkleRoot, Epoch, ShardID).
	PcsID string
	// MerkleRoot is the agent's Merkle root over its canonical rows.
	MerkleRoot string
	// Epoch is printed as a plain integer.
	Epoch int64
	// ShardID is the agent's shard (not a Kafka partition).
	ShardID string
	// DHat is the claimed fractal dimension estimate; rounded by Round9.
	DHat float64
	// CohStar is the claimed coherence; rounded by Round9.
	CohStar float64
	// R is the compressibility ratio; an absent r is signed as 0.0.
	R float64
	// Budget is the claimed budget; rounded by Round9.
	Budget float64
}

// CanonicalPayload returns the exact bytes that get signed (CONTRACT section
// 2.3): a JSON object with keys sorted by code point, no spaces, floats
// rounded to 9 decimals and printed like Python's repr, ASCII-only strings.
//
// The key order is written out by hand rather than sorted at run time because
// the set of keys is fixed by the contract and a hard-coded order is easier to
// audit against it.
func (f SignedFields) CanonicalPayload() []byte {
	b := make([]byte, 0, 256)
	b = append(b, `{"D_hat":`...)
	b = appendCanonicalFloat(b, f.DHat)
	b = append(b, `,"budget":`...)
	b = appendCanonicalFloat(b, f.Budget)
	b = append(b, `,"coh_star":`...)
	b = appendCanonicalFloat(b, f.CohStar)
	b = append(b, `,"epoch":`...)
	b = strconv.AppendInt(b, f.Epoch, 10)
	b = append(b, `,"merkle_root":`...)
	b = AppendCanonicalString(b, f.MerkleRoot)
	b = append(b, `,"pcs_id":`...)
	b = AppendCanonicalString(b, f.PcsID)
	b = append(b, `,"r":`...)
	b = appendCanonicalFloat(b, f.R)
	b = append(b, `,"shard_id":`...)
	b = AppendCanonicalString(b, f.ShardID)
	b = append(b, '}')
	return b
}

func appendCanonicalFloat(b []byte, x float64) []byte {
	return append(b, FormatFloat(Round9(x))...)
}

// decimalParts splits the shortest round-trip representation of a finite,
// non-zero x into its sign, significant digits (no leading or trailing zeros
// beyond what the shortest form has) and the decimal exponent of the first
// digit, so that |x| = 0.d1d2d3... * 10^(exp+1) = d1.d2d3... * 10^exp.
//
// strconv's 'e' format with precision -1 yields the same shortest digits as
// Python's repr and Rust's Display (all three pick the shortest string that
// round-trips, and the closest one among equals).
func decimalParts(x float64) (neg bool, digits string, exp int) {
	s := strconv.FormatFloat(x, 'e', -1, 64) // e.g. "-1.2345e-05"
	if s[0] == '-' {
		neg = true
		s = s[1:]
	}
	ePos := strings.IndexByte(s, 'e')
	mantissa, expText := s[:ePos], s[ePos+1:]
	digits = strings.Replace(mantissa, ".", "", 1)
	exp, _ = strconv.Atoi(expText) // strconv always writes a valid exponent
	return neg, digits, exp
}

// Round9 rounds x half-up (away from zero) at the 9th decimal, in decimal
// arithmetic on x's shortest round-trip digits (CONTRACT section 2.2).
//
// Float arithmetic (math.Round(x*1e9)/1e9) would be wrong here: 0.1234567895
// is stored as slightly less than itself, so binary rounding goes down while
// the agents, which round the printed digits, go up. A value that rounds to
// zero keeps its sign (-1e-12 becomes -0.0), as Python's Decimal does.
// NaN and infinities are returned unchanged; they cannot occur in JSON.
func Round9(x float64) float64 {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return x
	}
	neg, digits, exp := decimalParts(x)
	// Digit i sits at place 10^(exp-i); the ones kept are at places >= 10^-9.
	keep := exp + 10
	if keep >= len(digits) {
		return x // already has at most 9 decimals
	}
	if keep < 0 {
		// Even the digit at 10^-10 is zero, so the value rounds to zero.
		return math.Copysign(0, x)
	}
	kept := []byte(digits[:keep])
	if digits[keep] >= '5' {
		kept = incrementDecimal(kept)
	}
	if len(kept) == 0 {
		return math.Copysign(0, x) // e.g. 4e-10: the dropped digit was below 5
	}
	text := string(kept) + "e-9"
	if neg {
		text = "-" + text
	}
	// The text is at most 18 digits with a small exponent: always in range.
	y, _ := strconv.ParseFloat(text, 64)
	return y
}

// incrementDecimal adds one to a decimal digit string, growing it on carry.
// An empty string counts as zero.
func incrementDecimal(d []byte) []byte {
	for i := len(d) - 1; i >= 0; i-- {
		if d[i] != '9' {
			d[i]++
			return d
		}
		d[i] = '0'
	}
	return append([]byte{'1'}, d...)
}

// FormatFloat prints x as Python's repr does, which is what the canonical
// payload requires: positional notation with at least one fractional digit
// when 1e-4 <= |x| < 1e16 (1.0, -0.0, 0.0001), otherwise scientific notation
// with a sign and at least two exponent digits and no '.' for a single digit
// (1e-05, 1.5e+16). NaN and infinities print as Python does (nan, inf, -inf)
// though no canonical payload can contain them.
func FormatFloat(x float64) string {
	switch {
	case math.IsNaN(x):
		return "nan"
	case math.IsInf(x, 1):
		return "inf"
	case math.IsInf(x, -1):
		return "-inf"
	case x == 0:
		if math.Signbit(x) {
			return "-0.0"
		}
		return "0.0"
	}
	neg, digits, exp := decimalParts(x)
	var sb strings.Builder
	if neg {
		sb.WriteByte('-')
	}
	if exp >= -4 && exp < 16 {
		writePositional(&sb, digits, exp)
	} else {
		writeScientific(&sb, digits, exp)
	}
	return sb.String()
}

func writePositional(sb *strings.Builder, digits string, exp int) {
	if exp < 0 {
		sb.WriteString("0.")
		sb.WriteString(strings.Repeat("0", -exp-1))
		sb.WriteString(digits)
		return
	}
	intLen := exp + 1
	if len(digits) <= intLen {
		sb.WriteString(digits)
		sb.WriteString(strings.Repeat("0", intLen-len(digits)))
		sb.WriteString(".0")
		return
	}
	sb.WriteString(digits[:intLen])
	sb.WriteByte('.')
	sb.WriteString(digits[intLen:])
}

func writeScientific(sb *strings.Builder, digits string, exp int) {
	sb.WriteByte(digits[0])
	if len(digits) > 1 {
		sb.WriteByte('.')
		sb.WriteString(digits[1:])
	}
	sb.WriteByte('e')
	if exp < 0 {
		sb.WriteByte('-')
		exp = -exp
	} else {
		sb.WriteByte('+')
	}
	if exp < 10 {
		sb.WriteByte('0')
	}
	sb.WriteString(strconv.Itoa(exp))
}

const hexDigits = "0123456789abcdef"

// AppendCanonicalString appends s as a canonical JSON string (CONTRACT
// section 2.3): ASCII only, the short escapes \" \\ \n \r \t \b \f, every
// other byte outside 0x20..0x7E as lowercase \uXXXX (astral code points as a
// UTF-16 surrogate pair), and <, >, &, / left literal.
//
// encoding/json is not used because it escapes <, > and & as \u003c and
// friends and writes non-ASCII as raw UTF-8, so its bytes would differ from
// what Python's json.dumps (and therefore every deployed agent) signs.
// Invalid UTF-8 bytes in s are encoded as U+FFFD, as encoding/json would
// send them.
func AppendCanonicalString(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"':
			b = append(b, '\\', '"')
		case r == '\\':
			b = append(b, '\\', '\\')
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\r':
			b = append(b, '\\', 'r')
		case r == '\t':
			b = append(b, '\\', 't')
		case r == '\b':
			b = append(b, '\\', 'b')
		case r == '\f':
			b = append(b, '\\', 'f')
		case r >= 0x20 && r <= 0x7e:
			b = append(b, byte(r))
		case r > 0xffff:
			r -= 0x10000
			b = appendUnicodeEscape(b, 0xd800+(r>>10))
			b = appendUnicodeEscape(b, 0xdc00+(r&0x3ff))
		default:
			b = appendUnicodeEscape(b, r)
		}
	}
	return append(b, '"')
}

func appendUnicodeEscape(b []byte, r rune) []byte {
	return append(b, '\\', 'u',
		hexDigits[(r>>12)&0xf], hexDigits[(r>>8)&0xf], hexDigits[(r>>4)&0xf], hexDigits[r&0xf])
}
