package flk

import (
	"math"
	"testing"
)

func TestRound9ContractVectors(t *testing.T) {
	cases := []struct {
		in   float64
		want string
	}{
		{1.412345678901234, "1.412345679"},
		{0.1234567895, "0.12345679"},
		{1.5e-9, "2e-09"},
		{12345.6789012345, "12345.678901235"},
		// Beyond the contract's list: boundaries of the decimal rounding.
		{-1.5e-9, "-2e-09"},
		{-1e-12, "-0.0"},
		{4e-10, "0.0"},
		{5e-10, "1e-09"},
		{0.9999999995, "1.0"},
		{-0.9999999995, "-1.0"},
		{1e300, "1e+300"},
		{123456789.123456789, "123456789.12345679"},
		{0.0, "0.0"},
		{math.Copysign(0, -1), "-0.0"},
		{2.675, "2.675"},
		{0.3, "0.3"},
	}
	for _, c := range cases {
		if got := FormatFloat(Round9(c.in)); got != c.want {
			t.Errorf("FormatFloat(Round9(%v)) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestRound9UsesDecimalDigitsNotBinaryValue(t *testing.T) {
	// 8.2679621765 is stored just below itself, so float rounding goes down
	// while the agents, which round the printed digits half-up, go up.
	x := 8.2679621765 // a variable: constant arithmetic would be exact
	if float := math.Floor(x*1e9+0.5) / 1e9; float != 8.267962176 {
		t.Fatalf("float rounding gave %v; pick another witness", float)
	}
	if got := Round9(x); got != 8.267962177 {
		t.Fatalf("Round9(%v) = %v, want 8.267962177", x, got)
	}
}

func TestFormatFloatLikePythonRepr(t *testing.T) {
	cases := map[float64]string{
		1:                      "1.0",
		-1:                     "-1.0",
		0.1:                    "0.1",
		0.0001:                 "0.0001",
		0.00001:                "1e-05",
		1e-7:                   "1e-07",
		1.5e-7:                 "1.5e-07",
		1e16:                   "1e+16",
		1.5e16:                 "1.5e+16",
		9999999999999998:       "9999999999999998.0",
		1e15:                   "1000000000000000.0",
		123.456:                "123.456",
		5e-324:                 "5e-324",
		math.MaxFloat64:        "1.7976931348623157e+308",
		0.30000000000000004:    "0.30000000000000004",
		1e22:                   "1e+22",
		-2.5e-5:                "-2.5e-05",
		100:                    "100.0",
		12345678901234567e-100: "1.2345678901234567e-84",
	}
	for in, want := range cases {
		if got := FormatFloat(in); got != want {
			t.Errorf("FormatFloat(%v) = %s, want %s", in, got, want)
		}
	}
}

func TestCanonicalStringEscapes(t *testing.T) {
	cases := map[string]string{
		"plain":         `"plain"`,
		`q"b\s`:         `"q\"b\\s"`,
		"\n\r\t\b\f":    `"\n\r\t\b\f"`,
		"\x00\x1f\x7f":  `"\u0000\u001f\u007f"`,
		"<>&/":          `"<>&/"`,
		"é":             `"\u00e9"`,
		"\u2028":        `"\u2028"`,
		"😀":             `"\ud83d\ude00"`,
		"\uffff":        `"\uffff"`,
		"a\xffb":        `"a\ufffdb"`,
		"":              `""`,
		"~ ":            `"~ "`,
		"\U0010ffff":    `"\udbff\udfff"`,
		"\u00ff\u0100Ω": `"\u00ff\u0100\u03a9"`,
	}
	for in, want := range cases {
		if got := string(AppendCanonicalString(nil, in)); got != want {
			t.Errorf("canonical(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestCanonicalPayloadContractTestID(t *testing.T) {
	f := SignedFields{
		PcsID: "test-id", MerkleRoot: "abc123", Epoch: 1, ShardID: "shard-001",
		DHat: 1.412345679, CohStar: 0.73456789, R: 0.871234568, Budget: 0.421234568,
	}
	want := `{"D_hat":1.412345679,"budget":0.421234568,"coh_star":0.73456789,"epoch":1,"merkle_root":"abc123","pcs_id":"test-id","r":0.871234568,"shard_id":"shard-001"}`
	if got := string(f.CanonicalPayload()); got != want {
		t.Fatalf("payload\n got %s\nwant %s", got, want)
	}
	if got := SignHMAC(f.CanonicalPayload(), []byte("testsecret")); got != "Jh7KgV0gdhjyPJ/xWuYYy3WtWqMhn11lP7qi4MsgV4c=" {
		t.Fatalf("hmac = %s", got)
	}
}

func TestPcsIDReference(t *testing.T) {
	const want = "9c2a1a9fe3d87edab9aaee193852edc091aa03e263580f9556f1f0d0f1679b93"
	if got := PcsID("abc123", 1, "shard-001"); got != want {
		t.Fatalf("PcsID = %s, want %s", got, want)
	}
}
