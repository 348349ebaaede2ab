package flk

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestAgainstPythonReference checks FormatFloat and Round9 against values
// printed by Python itself (testdata/gen_python_reference.py), the arithmetic
// the original agents sign with.
func TestAgainstPythonReference(t *testing.T) {
	f, err := os.Open("testdata/python_reference.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		parts := strings.Fields(sc.Text())
		if len(parts) != 3 {
			t.Fatalf("bad line %q", sc.Text())
		}
		x, err := strconv.ParseFloat(parts[0], 64)
		if err != nil {
			t.Fatalf("parse %s: %v", parts[0], err)
		}
		if got := FormatFloat(x); got != parts[1] {
			t.Errorf("FormatFloat(%s) = %s, want %s", parts[0], got, parts[1])
		}
		if got := FormatFloat(Round9(x)); got != parts[2] {
			t.Errorf("Round9(%s) = %s, want %s", parts[1], got, parts[2])
		}
		n++
	}
	if n < 1000 {
		t.Fatalf("only %d reference lines", n)
	}
}
