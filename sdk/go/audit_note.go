package flk

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The log publishes its tree heads as C2SP signed checkpoints: a
// tlog-checkpoint body inside a signed-note, so generic transparency-log
// tooling (golang.org/x/mod/sumdb/note, witnesses) reads them too.
//
// A body is three lines, each ending in a newline: the log's origin, the tree
// size in decimal and the root in standard base64. A signed note is the body,
// one empty line, and one line per signature:
// "\u2014 " + key name + " " + base64(key hash (4 bytes) || Ed25519 signature).
// The key hash is the first four bytes of SHA-256(name || "\n" || 0x01 ||
// public key); a verifier key is written name+<8 hex digits of the key
// hash>+base64(0x01 || public key).

// noteEd25519 is the algorithm byte of Ed25519 keys in signed notes.
const noteEd25519 = 0x01

// noteSignaturePrefix starts every signature line: an em dash and a space.
const noteSignaturePrefix = "\u2014 "

// CheckpointErrorKind classifies a refused checkpoint, note or key.
type CheckpointErrorKind string

const (
	// CheckpointMalformed: the text is not a well-formed checkpoint or note.
	CheckpointMalformed CheckpointErrorKind = "malformed"
	// CheckpointSignature: no valid signature by the expected key, or the
	// checkpoint is for another log than the key's.
	CheckpointSignature CheckpointErrorKind = "signature"
	// CheckpointKey: a verifier key string could not be read.
	CheckpointKey CheckpointErrorKind = "key"
)

// CheckpointError says why a checkpoint, a signed note or a verifier key was
// refused.
type CheckpointError struct {
	Kind CheckpointErrorKind
	Msg  string
}

func (e *CheckpointError) Error() string { return string(e.Kind) + ": " + e.Msg }

func malformedNote(msg string) error {
	return &CheckpointError{Kind: CheckpointMalformed, Msg: msg}
}

// Checkpoint is what a signed checkpoint commits to.
type Checkpoint struct {
	// Origin is the log's name.
	Origin string
	// Size is the number of leaves in the tree.
	Size uint64
	// Root is the RFC 6962 root of those leaves.
	Root Hash
}

// Body returns the checkpoint's body text, the bytes that are signed.
func (c Checkpoint) Body() string {
	return c.Origin + "\n" + strconv.FormatUint(c.Size, 10) + "\n" + c.Root.String() + "\n"
}

// ParseCheckpoint reads a checkpoint body: exactly three lines (origin,
// decimal size without leading zeros, base64 of a 32-byte root), each ending
// in a newline. Extension lines are refused: this log writes none.
func ParseCheckpoint(body string) (Checkpoint, error) {
	text, ok := strings.CutSuffix(body, "\n")
	if !ok {
		return Checkpoint{}, malformedNote("checkpoint body must end with a newline")
	}
	lines := strings.Split(text, "\n")
	if len(lines) != 3 {
		return Checkpoint{}, malformedNote("checkpoint body must have exactly three lines")
	}
	origin, sizeText, rootText := lines[0], lines[1], lines[2]
	if origin == "" {
		return Checkpoint{}, malformedNote("checkpoint origin is empty")
	}
	if sizeText == "" || strings.Trim(sizeText, "0123456789") != "" ||
		(len(sizeText) > 1 && sizeText[0] == '0') {
		return Checkpoint{}, malformedNote("checkpoint tree size is not a decimal number")
	}
	size, err := strconv.ParseUint(sizeText, 10, 64)
	if err != nil {
		return Checkpoint{}, malformedNote("checkpoint tree size is too large")
	}
	root, err := decodeHash(rootText)
	if err != nil {
		return Checkpoint{}, malformedNote("checkpoint root is not 32 bytes of base64")
	}
	return Checkpoint{Origin: origin, Size: size, Root: root}, nil
}

// NoteVerifier checks notes signed by one Ed25519 key.
type NoteVerifier struct {
	name string
	hash [4]byte
	key  ed25519.PublicKey
}

// ParseVerifierKey reads a verifier key string name+hash+base64(0x01 ||
// public key), as the log operator publishes it (the format of
// golang.org/x/mod/sumdb/note). Surrounding whitespace is ignored and the
// hash may be upper or lower case. Errors are *CheckpointError of kind
// CheckpointKey.
func ParseVerifierKey(vkey string) (*NoteVerifier, error) {
	bad := func(msg string) error { return &CheckpointError{Kind: CheckpointKey, Msg: msg} }
	parts := strings.SplitN(strings.TrimSpace(vkey), "+", 3)
	if len(parts) != 3 {
		return nil, bad("verifier key must be name+hash+key")
	}
	name, hashHex, keyB64 := parts[0], parts[1], parts[2]
	if err := checkKeyName(name); err != nil {
		return nil, err
	}
	keyBytes, err := decodeBase64(keyB64)
	if err != nil {
		return nil, bad("verifier key is not base64")
	}
	if len(keyBytes) == 0 {
		return nil, bad("verifier key is empty")
	}
	if keyBytes[0] != noteEd25519 {
		return nil, bad("verifier key is not an Ed25519 key")
	}
	public := keyBytes[1:]
	if len(public) != ed25519.PublicKeySize {
		return nil, bad("Ed25519 public key must be 32 bytes")
	}
	if !ed25519Decodes(public) {
		return nil, bad("invalid Ed25519 key")
	}
	hash := noteKeyHash(name, public)
	if hex.EncodeToString(hash[:]) != asciiLower(hashHex) {
		return nil, bad("verifier key hash does not match the key")
	}
	return &NoteVerifier{name: name, hash: hash, key: ed25519.PublicKey(public)}, nil
}

// Name returns the key's name, which is also the origin of the log it signs
// for.
func (v *NoteVerifier) Name() string { return v.name }

// Open checks that note carries a valid signature by this key and returns
// its text (the signed body, ending in a newline). Signature lines by other
// keys are ignored (witness cosignatures, for instance); a line with this
// key's name and key hash must verify. Errors are *CheckpointError.
func (v *NoteVerifier) Open(note string) (string, error) {
	if !utf8.ValidString(note) {
		return "", malformedNote("note is not valid UTF-8")
	}
	split := strings.LastIndex(note, "\n\n")
	if split < 0 {
		return "", malformedNote("note has no signature block")
	}
	body, signatures := note[:split+1], note[split+2:]
	if err := checkNoteBody(body); err != nil {
		return "", err
	}
	lines, ok := strings.CutSuffix(signatures, "\n")
	if !ok {
		return "", malformedNote("signature block must end with a newline")
	}
	foundName := false
	for _, line := range strings.Split(lines, "\n") {
		rest, ok := strings.CutPrefix(line, noteSignaturePrefix)
		if !ok {
			return "", malformedNote("signature line must start with an em dash and a space")
		}
		name, blobText, ok := strings.Cut(rest, " ")
		if !ok {
			return "", malformedNote("signature line must be name and signature")
		}
		blob, err := decodeBase64(blobText)
		if err != nil {
			return "", malformedNote("signature is not base64")
		}
		if name != v.name || len(blob) < 4 || [4]byte(blob[:4]) != v.hash {
			foundName = foundName || name == v.name
			continue
		}
		sig := blob[4:]
		if len(sig) != ed25519.SignatureSize {
			return "", &CheckpointError{Kind: CheckpointSignature, Msg: "signature is not 64 bytes"}
		}
		if !verifyEd25519Strict(v.key, []byte(body), sig) {
			return "", &CheckpointError{Kind: CheckpointSignature,
				Msg: fmt.Sprintf("the signature by %s does not verify", v.name)}
		}
		return body, nil
	}
	msg := "no signature by " + v.name
	if foundName {
		msg = "signed by a different key named " + v.name
	}
	return "", &CheckpointError{Kind: CheckpointSignature, Msg: msg}
}

// OpenCheckpoint opens a signed checkpoint (Open, then ParseCheckpoint) and
// checks that its origin is this key's name, so that a checkpoint of another
// log signed with the same key is refused.
func (v *NoteVerifier) OpenCheckpoint(note string) (Checkpoint, error) {
	body, err := v.Open(note)
	if err != nil {
		return Checkpoint{}, err
	}
	c, err := ParseCheckpoint(body)
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != v.name {
		return Checkpoint{}, &CheckpointError{Kind: CheckpointSignature,
			Msg: fmt.Sprintf("checkpoint origin %q is not the key's log %q", c.Origin, v.name)}
	}
	return c, nil
}

func noteKeyHash(name string, public []byte) [4]byte {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', noteEd25519})
	h.Write(public)
	return [4]byte(h.Sum(nil))
}

func checkKeyName(name string) error {
	if name == "" || strings.ContainsAny(name, "+ \n") || strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return &CheckpointError{Kind: CheckpointKey,
			Msg: "key name must be non-empty, without '+', spaces or control characters"}
	}
	return nil
}

// checkNoteBody applies the signed-note rules to a note's text: it ends with
// a newline, has no empty line and no control character but newlines.
func checkNoteBody(body string) error {
	if !strings.HasSuffix(body, "\n") {
		return malformedNote("note text must end with a newline")
	}
	if strings.Contains(body, "\n\n") || strings.HasPrefix(body, "\n") {
		return malformedNote("note text must not contain an empty line")
	}
	if strings.IndexFunc(body, func(r rune) bool { return r != '\n' && unicode.IsControl(r) }) >= 0 {
		return malformedNote("note text must not contain control characters")
	}
	return nil
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// verifyEd25519Strict is crypto/ed25519's verification plus the two checks
// that the log's Rust verifier (ed25519-dalek's verify_strict) adds: neither
// the public key nor the signature's R may be a point of small order. With
// a small-order key, crafted signatures verify for many messages under the
// plain equation, so such keys must never count as trusted.
func verifyEd25519Strict(public ed25519.PublicKey, msg, sig []byte) bool {
	if ed25519SmallOrder(public) || ed25519SmallOrder(sig[:32]) {
		return false
	}
	return ed25519.Verify(public, msg, sig)
}

// Edwards25519 arithmetic, just enough to classify point encodings: the
// field prime p = 2^255 - 19, the curve constant d = -121665/121666, and the
// y coordinates of the eight points of small order (0, 1, -1, and ±y8 for
// the four points of order 8).
var (
	edP, edD, edHalfPMinus1 *big.Int
	edSmallOrderY           []*big.Int
)

func init() {
	edP = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	edD = new(big.Int).ModInverse(big.NewInt(121666), edP)
	edD.Mul(edD, big.NewInt(-121665)).Mod(edD, edP)
	edHalfPMinus1 = new(big.Int).Rsh(new(big.Int).Sub(edP, big.NewInt(1)), 1)
	y8, _ := hex.DecodeString("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
	order8 := edwardsY(y8)
	edSmallOrderY = []*big.Int{
		big.NewInt(0),
		big.NewInt(1),
		new(big.Int).Sub(edP, big.NewInt(1)),
		order8,
		new(big.Int).Sub(edP, order8),
	}
}

// edwardsY returns the y coordinate a 32-byte point encoding names: little
// endian, the top bit (x's sign) cleared, reduced mod p as both crypto/ed25519
// and ed25519-dalek read it.
func edwardsY(enc []byte) *big.Int {
	var be [32]byte
	for i := range be {
		be[31-i] = enc[i]
	}
	be[0] &= 0x7f
	y := new(big.Int).SetBytes(be[:])
	return y.Mod(y, edP)
}

// ed25519Decodes reports whether enc is the encoding of a curve point, that
// is whether x^2 = (y^2 - 1) / (d y^2 + 1) has a solution (d y^2 + 1 is never
// zero because d is not a square).
func ed25519Decodes(enc []byte) bool {
	y := edwardsY(enc)
	y2 := new(big.Int).Mul(y, y)
	y2.Mod(y2, edP)
	u := new(big.Int).Sub(y2, big.NewInt(1))
	v := new(big.Int).Mul(edD, y2)
	v.Add(v, big.NewInt(1)).Mod(v, edP)
	w := u.Mul(u, v.ModInverse(v, edP)).Mod(u, edP)
	if w.Sign() == 0 {
		return true
	}
	return new(big.Int).Exp(w, edHalfPMinus1, edP).Cmp(big.NewInt(1)) == 0
}

// ed25519SmallOrder reports whether enc encodes a point of small order
// (one whose multiple by the cofactor 8 is the identity).
func ed25519SmallOrder(enc []byte) bool {
	y := edwardsY(enc)
	for _, s := range edSmallOrderY {
		if y.Cmp(s) == 0 {
			return true
		}
	}
	return false
}
