package flk

import (
	"os"
	"strings"
	"testing"
)

// contractSeed is the Ed25519 seed of CONTRACT section 2.6: bytes 0x00..0x1f.
func contractSeed() []byte {
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i)
	}
	return seed
}

func loadGolden(t *testing.T, name string) *PCS {
	t.Helper()
	data, err := os.ReadFile(goldenDir + name)
	if err != nil {
		t.Fatal(err)
	}
	p, err := DecodePCS(data)
	if err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	return p
}

func TestGoldenSignatures(t *testing.T) {
	cases := []struct {
		file, payloadPrefix, hmac, prehash, ed25519 string
	}{
		{
			file:          "pcs_tiny_case_1.json",
			payloadPrefix: `{"D_hat":0.528320834,"budget":0.317807017,"coh_star":0.066666667,"epoch":1,"merkle_root":"e966b52c992aefad3c3d0196db02554f30d10d55e8a6e5e3038f88e79e414112","pcs_id":"c50bb25a7aff94164147b73c846f0e5e10890d75df204875ca70c448f52c6edf","r":0.318421053,"shard_id":"test-shard-001"}`,
			hmac:          "x5KLRpKb75Oy1oxLA+3V+bgY/HL/3ZYOk1rw3pCiSm4=",
			prehash:       "ie8rdnp+3qXnlMVyHmSdjFT3Unk6sZmoVxun71x2/X4=",
			ed25519:       "YDbe81WZAVDIv6klWR8QtDAu4tYwBAix8fFppjAzOfASRss2q4DdWVC6UT54Q4eXs37HOiJJRHzYk3FyXVZlAg==",
		},
		{
			file:          "pcs_tiny_case_2.json",
			payloadPrefix: `{"D_hat":1.0,"budget":0.349073359,"coh_star":0.2,`,
			hmac:          "wahFdOY1XKgg9WTr5UTpryZTviM5zay5VMHcrzHH5hE=",
			ed25519:       "ULhPXPI2/nuh4s0VCG8R1tzqFxqitgzGvqRuIJQykGvruev/QIzYzFoNXO3Vb51b53hfIS9uBApb/SPrl5EODQ==",
		},
	}
	key := []byte("testsecret")
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			p := loadGolden(t, c.file)
			payload := p.CanonicalPayload()
			if !strings.HasPrefix(string(payload), c.payloadPrefix) {
				t.Fatalf("payload %s\nwant prefix %s", payload, c.payloadPrefix)
			}
			if got := SignHMAC(payload, key); got != c.hmac {
				t.Errorf("hmac = %s, want %s", got, c.hmac)
			}
			if !VerifyHMAC(payload, key, p.Sig) {
				t.Errorf("golden sig does not verify")
			}
			if c.prehash != "" {
				if got := SignHMACPrehash(payload, key); got != c.prehash {
					t.Errorf("prehash = %s, want %s", got, c.prehash)
				}
				if !VerifyHMACPrehash(payload, key, c.prehash) || VerifyHMAC(payload, key, c.prehash) {
					t.Errorf("prehash verification mixes up the schemes")
				}
			}
			sig, err := SignEd25519(payload, contractSeed())
			if err != nil || sig != c.ed25519 {
				t.Errorf("ed25519 = %s, %v; want %s", sig, err, c.ed25519)
			}
		})
	}
}

func TestEd25519PublicKeyAndVerify(t *testing.T) {
	pub, err := Ed25519PublicKey(contractSeed())
	if err != nil || pub != "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=" {
		t.Fatalf("public key = %s, %v", pub, err)
	}
	p := loadGolden(t, "pcs_tiny_case_1.json")
	if err := p.SignEd25519(contractSeed()); err != nil {
		t.Fatal(err)
	}
	rawPub := mustB64(t, pub)
	payload := p.CanonicalPayload()
	if !VerifyEd25519(payload, rawPub, p.Sig) {
		t.Fatal("own signature does not verify")
	}
	tampered := append([]byte(nil), payload...)
	tampered[10] ^= 1
	if VerifyEd25519(tampered, rawPub, p.Sig) {
		t.Fatal("signature verifies over a different payload")
	}
	if VerifyEd25519(payload, rawPub, strings.TrimRight(p.Sig, "=")) {
		t.Fatal("unpadded signature accepted")
	}
	if VerifyEd25519(payload, rawPub[:31], p.Sig) {
		t.Fatal("short public key accepted")
	}
	if _, err := SignEd25519(payload, []byte("short")); err == nil {
		t.Fatal("short seed accepted")
	}
}

func TestHMACRejectsNearMisses(t *testing.T) {
	payload := []byte(`{"x":1}`)
	key := []byte("k")
	sig := SignHMAC(payload, key)
	for _, bad := range []string{"", sig[:len(sig)-1], strings.TrimRight(sig, "="), sig + "\n", strings.ToLower(sig)} {
		if bad != sig && VerifyHMAC(payload, key, bad) {
			t.Errorf("accepted %q", bad)
		}
	}
	if !VerifyHMAC(payload, key, sig) {
		t.Fatal("rejected own signature")
	}
	// An empty key is a valid key.
	if !VerifyHMAC(payload, nil, SignHMAC(payload, []byte{})) {
		t.Fatal("empty key")
	}
}

func TestPCSSignHMACSetsSig(t *testing.T) {
	p := loadGolden(t, "pcs_tiny_case_2.json")
	want := p.Sig
	p.Sig = ""
	p.SignHMAC([]byte("testsecret"))
	if p.Sig != want {
		t.Fatalf("sig = %s, want %s", p.Sig, want)
	}
}
