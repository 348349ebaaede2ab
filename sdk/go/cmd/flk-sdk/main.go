// Command flk-sdk signs and canonicalizes PCS records from the command line.
// Its batch mode lets a cross-language test feed the same random cases to
// every SDK and compare their bytes.
//
//	flk-sdk sign --key K < fields.json             # HMAC-SHA256, base64 + "\n"
//	flk-sdk sign --alg ed25519 --seed B64 < f.json # Ed25519 over SHA-256(payload)
//	flk-sdk canonical < fields.json                # payload bytes, no newline
//	flk-sdk batch < cases.jsonl                    # one JSON line out per line in
//	flk-sdk pcs-id MERKLE_ROOT EPOCH SHARD_ID      # pcs_id + "\n"
//
// Input objects need at least the eight signed fields; other keys (a whole
// PCS) are ignored. Bad input prints a message on stderr and exits 1.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `usage:
  flk-sdk sign [--alg hmac] --key KEY      < fields.json
  flk-sdk sign --alg ed25519 --seed BASE64 < fields.json
  flk-sdk canonical                        < fields.json
  flk-sdk batch                            < cases.jsonl
  flk-sdk pcs-id MERKLE_ROOT EPOCH SHARD_ID
`

// run is main without the process: it returns the exit code, so tests can
// drive every command in-process.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 1
	}
	var err error
	switch args[0] {
	case "sign":
		err = cmdSign(args[1:], stdin, stdout, stderr)
	case "canonical":
		err = cmdCanonical(args[1:], stdin, stdout)
	case "batch":
		err = cmdBatch(args[1:], stdin, stdout)
	case "pcs-id":
		err = cmdPcsID(args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		err = fmt.Errorf("unknown command %q\n%s", args[0], usage)
	}
	if err != nil {
		fmt.Fprintf(stderr, "flk-sdk: %v\n", err)
		return 1
	}
	return 0
}
