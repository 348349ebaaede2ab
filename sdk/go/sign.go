package flk

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// SignHMAC returns base64std(HMAC-SHA256(key, payload)) (CONTRACT section
// 2.4). Any byte string is a valid key, including the empty one.
func SignHMAC(payload, key []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write(payload)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// SignHMACPrehash returns the legacy signature base64std(HMAC-SHA256(key,
// SHA-256(payload))) that old agents sent (CONTRACT section 2.7). New code
// should not produce it; it exists for tests and migration tooling.
func SignHMACPrehash(payload, key []byte) string {
	digest := sha256.Sum256(payload)
	return SignHMAC(digest[:], key)
}

// VerifyHMAC reports whether sig is the HMAC signature of payload under key.
//
// The comparison runs over the base64 text in constant time: comparing text
// rather than decoded bytes also rejects non-canonical encodings (missing
// padding, embedded newlines) that a lenient decoder would let through.
func VerifyHMAC(payload, key []byte, sig string) bool {
	return hmac.Equal([]byte(SignHMAC(payload, key)), []byte(sig))
}

// VerifyHMACPrehash is VerifyHMAC for the legacy pre-hash scheme, which a
// tenant must opt in to.
func VerifyHMACPrehash(payload, key []byte, sig string) bool {
	return hmac.Equal([]byte(SignHMACPrehash(payload, key)), []byte(sig))
}

// Ed25519PublicKey returns the standard base64 of the raw 32-byte public key
// for a 32-byte seed, the form tenants register with the server.
func Ed25519PublicKey(seed []byte) (string, error) {
	if len(seed) != ed25519.SeedSize {
		return "", fmt.Errorf("ed25519 seed must be %d bytes, got %d", ed25519.SeedSize, len(seed))
	}
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	return base64.StdEncoding.EncodeToString(pub), nil
}

// SignEd25519 returns base64std(Ed25519_sign(seed, SHA-256(payload)))
// (CONTRACT section 2.5). The message is the 32-byte digest, not the payload:
// that is what the original agents sign, so it is kept for compatibility.
func SignEd25519(payload, seed []byte) (string, error) {
	if len(seed) != ed25519.SeedSize {
		return "", fmt.Errorf("ed25519 seed must be %d bytes, got %d", ed25519.SeedSize, len(seed))
	}
	digest := sha256.Sum256(payload)
	sig := ed25519.Sign(ed25519.NewKeyFromSeed(seed), digest[:])
	return base64.StdEncoding.EncodeToString(sig), nil
}

// VerifyEd25519 reports whether sig (standard base64) is a valid Ed25519
// signature of SHA-256(payload) under the raw 32-byte public key.
func VerifyEd25519(payload, publicKey []byte, sig string) bool {
	if len(publicKey) != ed25519.PublicKeySize {
		return false
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return false
	}
	// Re-encoding must give back sig exactly, so that the accepted text form
	// is unique, as it is for HMAC.
	if base64.StdEncoding.EncodeToString(raw) != sig {
		return false
	}
	digest := sha256.Sum256(payload)
	return ed25519.Verify(ed25519.PublicKey(publicKey), digest[:], raw)
}

// SignHMAC sets p.Sig to the HMAC signature of p's canonical payload.
func (p *PCS) SignHMAC(key []byte) {
	p.Sig = SignHMAC(p.CanonicalPayload(), key)
}

// SignEd25519 sets p.Sig to the Ed25519 signature of p's canonical payload.
func (p *PCS) SignEd25519(seed []byte) error {
	sig, err := SignEd25519(p.CanonicalPayload(), seed)
	if err != nil {
		return err
	}
	p.Sig = sig
	return nil
}
