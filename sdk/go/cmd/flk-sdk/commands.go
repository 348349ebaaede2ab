package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	flk "github.com/flk-project/flk/sdk/go"
)

// maxInputBytes bounds stdin for single-record commands; a PCS is small.
const maxInputBytes = 16 << 20

func readFields(stdin io.Reader) (flk.SignedFields, error) {
	data, err := io.ReadAll(io.LimitReader(stdin, maxInputBytes))
	if err != nil {
		return flk.SignedFields{}, fmt.Errorf("reading stdin: %w", err)
	}
	return flk.DecodeSignedFields(data)
}

func cmdSign(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sign", flag.ContinueOnError)
	fs.SetOutput(stderr)
	alg := fs.String("alg", "hmac", "signature algorithm: hmac or ed25519")
	key := fs.String("key", "", "HMAC secret (UTF-8; may be empty)")
	seed := fs.String("seed", "", "Ed25519 32-byte seed, standard base64")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("sign: unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	var sign func(payload []byte) (string, error)
	switch *alg {
	case "hmac":
		// An empty key is valid, so "not given" is told apart by Visit.
		if !given["key"] {
			return errors.New("sign: --key is required for hmac")
		}
		secret, err := hmacKey(*key)
		if err != nil {
			return err
		}
		sign = func(p []byte) (string, error) { return flk.SignHMAC(p, secret), nil }
	case "ed25519":
		if !given["seed"] {
			return errors.New("sign: --seed is required for ed25519")
		}
		raw, err := decodeSeed(*seed)
		if err != nil {
			return err
		}
		sign = func(p []byte) (string, error) { return flk.SignEd25519(p, raw) }
	default:
		return fmt.Errorf("sign: unknown --alg %q (want hmac or ed25519)", *alg)
	}
	fields, err := readFields(stdin)
	if err != nil {
		return err
	}
	sig, err := sign(fields.CanonicalPayload())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, sig)
	return err
}

// hmacKey checks the secret is UTF-8: the contract keys HMAC with the UTF-8
// bytes of the secret, so other bytes have no defined meaning.
func hmacKey(key string) ([]byte, error) {
	if !utf8.ValidString(key) {
		return nil, errors.New("the HMAC key must be UTF-8")
	}
	return []byte(key), nil
}

func decodeSeed(seed string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(seed)
	if err != nil {
		return nil, fmt.Errorf("ed25519 seed is not standard base64: %w", err)
	}
	if len(raw) != 32 {
		return nil, fmt.Errorf("ed25519 seed must be 32 bytes, got %d", len(raw))
	}
	return raw, nil
}

func cmdCanonical(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("canonical: unexpected argument %q", args[0])
	}
	fields, err := readFields(stdin)
	if err != nil {
		return err
	}
	// No trailing newline: the output is exactly the signed bytes.
	_, err = stdout.Write(fields.CanonicalPayload())
	return err
}

// batchCase is one input line of the batch command.
type batchCase struct {
	// Fields are the signed fields, as a client would send them.
	Fields json.RawMessage `json:"fields"`
	// HMACKey is the HMAC secret; nil leaves "hmac" out of the output.
	HMACKey *string `json:"hmac_key"`
	// Ed25519Seed is the base64 seed; nil leaves "ed25519" out.
	Ed25519Seed *string `json:"ed25519_seed"`
}

// batchResult is one output line of the batch command.
type batchResult struct {
	Payload string `json:"payload"`
	HMAC    string `json:"hmac,omitempty"`
	Ed25519 string `json:"ed25519,omitempty"`
}

func cmdBatch(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("batch: unexpected argument %q", args[0])
	}
	in := bufio.NewReader(stdin)
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for lineNo := 1; ; lineNo++ {
		line, readErr := in.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			result, err := batchOne(line)
			if err != nil {
				return fmt.Errorf("batch: line %d: %w", lineNo, err)
			}
			if err := enc.Encode(result); err != nil {
				return err
			}
		}
		if readErr == io.EOF {
			return nil
		}
		if readErr != nil {
			return fmt.Errorf("batch: reading stdin: %w", readErr)
		}
	}
}

func batchOne(line []byte) (*batchResult, error) {
	var c batchCase
	if err := json.Unmarshal(line, &c); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if c.Fields == nil {
		return nil, errors.New(`"fields" is required`)
	}
	fields, err := flk.DecodeSignedFields(c.Fields)
	if err != nil {
		return nil, err
	}
	payload := fields.CanonicalPayload()
	result := &batchResult{Payload: string(payload)}
	if c.HMACKey != nil {
		result.HMAC = flk.SignHMAC(payload, []byte(*c.HMACKey))
	}
	if c.Ed25519Seed != nil {
		seed, err := decodeSeed(*c.Ed25519Seed)
		if err != nil {
			return nil, err
		}
		if result.Ed25519, err = flk.SignEd25519(payload, seed); err != nil {
			return nil, err
		}
	}
	return result, nil
}

func cmdPcsID(args []string, stdout io.Writer) error {
	if len(args) != 3 {
		return errors.New("pcs-id: want MERKLE_ROOT EPOCH SHARD_ID")
	}
	epoch, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil {
		return fmt.Errorf("pcs-id: epoch %q is not an integer", args[1])
	}
	_, err = fmt.Fprintln(stdout, flk.PcsID(args[0], epoch, args[2]))
	return err
}
