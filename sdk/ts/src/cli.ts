#!/usr/bin/env node
/**
 * `flk-sdk`: signing from the shell, and the TypeScript side of the cross-language test.
 *
 *   flk-sdk sign --key K                      HMAC-SHA256; prints base64 + "\n"
 *   flk-sdk sign --alg ed25519 --seed B64     Ed25519 over SHA-256(payload); prints base64 + "\n"
 *   flk-sdk canonical                         prints the canonical payload, no trailing newline
 *   flk-sdk batch                             JSON lines in, JSON lines out (see README)
 *
 * `sign` and `canonical` read one JSON object holding at least the 8 signed fields on stdin.
 * Bad input prints a message on stderr and exits 1; nothing partial is printed for that input.
 *
 * @module
 */

import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { canonicalPayload, type SignedFields } from "./canonical.js";
import { isJsonObject, type JsonValue } from "./json.js";
import { parseJsonForDecode, signedFieldsFromJson } from "./decode.js";
import { signEd25519, signHmac } from "./signing.js";

/** An input or usage problem; the message goes to stderr and the exit code is 1. */
export class CliError extends Error {}

const USAGE = `usage:
  flk-sdk sign --key KEY                   HMAC-SHA256 signature of the fields on stdin
  flk-sdk sign --alg ed25519 --seed B64    Ed25519 signature (32-byte seed, standard base64)
  flk-sdk canonical                        canonical payload of the fields on stdin (no newline)
  flk-sdk batch                            JSON lines {"fields", "hmac_key", "ed25519_seed"} on stdin`;

/** Parses `--name value` / `--name=value` flags; a value is taken verbatim, even if empty or dash-led. */
function parseFlags(args: readonly string[], allowed: readonly string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const match = /^--([a-z0-9-]+)(?:=(.*))?$/s.exec(arg);
    if (match === null || !allowed.includes(match[1] as string)) {
      throw new CliError(`unexpected argument ${JSON.stringify(arg)}\n${USAGE}`);
    }
    const name = match[1] as string;
    let value = match[2];
    if (value === undefined) {
      value = args[++i];
      if (value === undefined) {
        throw new CliError(`--${name} needs a value`);
      }
    }
    flags.set(name, value);
  }
  return flags;
}

function decodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new CliError(`${what} is not valid UTF-8`);
  }
}

function fieldsFromText(text: string): SignedFields {
  return signedFieldsFromJson(parseJsonForDecode(text));
}

/** One `batch` line: `{"fields": {...}, "hmac_key": "...", "ed25519_seed": "b64"}` -> output line. */
export function batchLine(line: string): string {
  const input: JsonValue = parseJsonForDecode(line);
  if (!isJsonObject(input)) {
    throw new CliError("batch line is not a JSON object");
  }
  const fields = signedFieldsFromJson(input["fields"] ?? null);
  const output: Record<string, string> = { payload: canonicalPayload(fields) };
  const hmacKey = input["hmac_key"];
  if (hmacKey !== undefined && hmacKey !== null) {
    if (typeof hmacKey !== "string") {
      throw new CliError("`hmac_key` must be a string");
    }
    output["hmac"] = signHmac(fields, hmacKey);
  }
  const seed = input["ed25519_seed"];
  if (seed !== undefined && seed !== null) {
    if (typeof seed !== "string") {
      throw new CliError("`ed25519_seed` must be a base64 string");
    }
    output["ed25519"] = signEd25519(fields, seed);
  }
  return JSON.stringify(output);
}

/**
 * Runs the CLI on given arguments and stdin bytes; returns what to print and the exit code.
 * Kept free of process I/O so it can be tested directly.
 */
export function run(args: readonly string[], stdin: Uint8Array): { stdout: string; stderr: string; code: number } {
  const [command, ...rest] = args;
  try {
    switch (command) {
      case "sign": {
        const flags = parseFlags(rest, ["key", "alg", "seed"]);
        const alg = flags.get("alg") ?? "hmac";
        const key = flags.get("key");
        const seed = flags.get("seed");
        // Arguments are checked before stdin, so a usage mistake is reported as one.
        let sign: (fields: SignedFields) => string;
        if (alg === "hmac") {
          if (key === undefined || seed !== undefined) {
            throw new CliError(`sign --alg hmac takes --key (and no --seed)\n${USAGE}`);
          }
          sign = (fields) => signHmac(fields, key);
        } else if (alg === "ed25519") {
          if (seed === undefined || key !== undefined) {
            throw new CliError(`sign --alg ed25519 takes --seed (and no --key)\n${USAGE}`);
          }
          sign = (fields) => signEd25519(fields, seed);
        } else {
          throw new CliError(`unknown --alg ${JSON.stringify(alg)} (hmac or ed25519)`);
        }
        return { stdout: `${sign(fieldsFromText(decodeUtf8(stdin, "stdin")))}\n`, stderr: "", code: 0 };
      }
      case "canonical": {
        parseFlags(rest, []);
        return { stdout: canonicalPayload(fieldsFromText(decodeUtf8(stdin, "stdin"))), stderr: "", code: 0 };
      }
      case "batch": {
        parseFlags(rest, []);
        const lines = decodeUtf8(stdin, "stdin").split("\n");
        let stdout = "";
        for (const [index, line] of lines.entries()) {
          if (line.trim() === "") {
            continue;
          }
          try {
            stdout += `${batchLine(line)}\n`;
          } catch (error) {
            return { stdout, stderr: `flk-sdk: line ${index + 1}: ${messageOf(error)}\n`, code: 1 };
          }
        }
        return { stdout, stderr: "", code: 0 };
      }
      case "--help":
      case "-h":
      case "help":
        return { stdout: `${USAGE}\n`, stderr: "", code: 0 };
      default:
        throw new CliError(command === undefined ? USAGE : `unknown command ${JSON.stringify(command)}\n${USAGE}`);
    }
  } catch (error) {
    return { stdout: "", stderr: `flk-sdk: ${messageOf(error)}\n`, code: 1 };
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const needsStdin = args[0] === "sign" || args[0] === "canonical" || args[0] === "batch";
  const result = run(args, needsStdin ? await readStdin() : new Uint8Array());
  process.stdout.write(result.stdout);
  process.stderr.write(result.stderr);
  process.exitCode = result.code;
}

// Run only as a program (also through the npm bin symlink), not when imported by tests.
function invokedAsProgram(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (invokedAsProgram()) {
  await main();
}
