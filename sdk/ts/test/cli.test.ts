import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";

import { run } from "../src/cli.js";
import { CLI, CONTRACT_FIELDS, golden } from "./fixtures.js";

const SEED_B64 = Buffer.from(Uint8Array.from({ length: 32 }, (_, i) => i)).toString("base64");
const CONTRACT_TEXT = JSON.stringify(CONTRACT_FIELDS);
const CONTRACT_PAYLOAD =
  '{"D_hat":1.412345679,"budget":0.421234568,"coh_star":0.73456789,"epoch":1,"merkle_root":"abc123","pcs_id":"test-id","r":0.871234568,"shard_id":"shard-001"}';

/** Runs the built CLI as a user would: `node dist/cli.js ...`. */
function cli(args: string[], input: string | Buffer): { stdout: string; stderr: string; status: number | null } {
  const result = spawnSync(process.execPath, [CLI, ...args], { input, encoding: "utf8" });
  return { stdout: result.stdout, stderr: result.stderr, status: result.status };
}

describe("flk-sdk CLI (built dist/cli.js)", () => {
  it("sign --key prints the HMAC and a newline", () => {
    assert.deepEqual(cli(["sign", "--key", "testsecret"], CONTRACT_TEXT), {
      stdout: "Jh7KgV0gdhjyPJ/xWuYYy3WtWqMhn11lP7qi4MsgV4c=\n",
      stderr: "",
      status: 0,
    });
    assert.equal(cli(["sign", "--key", "testsecret"], golden("pcs_tiny_case_1.json")).stdout, "x5KLRpKb75Oy1oxLA+3V+bgY/HL/3ZYOk1rw3pCiSm4=\n");
  });

  it("sign --alg ed25519 --seed prints the Ed25519 signature", () => {
    assert.equal(
      cli(["sign", "--alg", "ed25519", "--seed", SEED_B64], golden("pcs_tiny_case_1.json")).stdout,
      "YDbe81WZAVDIv6klWR8QtDAu4tYwBAix8fFppjAzOfASRss2q4DdWVC6UT54Q4eXs37HOiJJRHzYk3FyXVZlAg==\n",
    );
  });

  it("canonical prints the payload with no trailing newline", () => {
    assert.deepEqual(cli(["canonical"], CONTRACT_TEXT), { stdout: CONTRACT_PAYLOAD, stderr: "", status: 0 });
  });

  it("batch prints one JSON line per input line", () => {
    const lines = [
      JSON.stringify({ fields: CONTRACT_FIELDS, hmac_key: "testsecret", ed25519_seed: SEED_B64 }),
      JSON.stringify({ fields: { ...CONTRACT_FIELDS, shard_id: "é" }, hmac_key: "", ed25519_seed: SEED_B64 }),
    ];
    const result = cli(["batch"], `${lines.join("\n")}\n`);
    assert.equal(result.status, 0, result.stderr);
    const out = result.stdout.split("\n");
    assert.equal(out.length, 3);
    assert.equal(out[2], "");
    const first = JSON.parse(out[0] ?? "") as Record<string, string>;
    assert.deepEqual(Object.keys(first), ["payload", "hmac", "ed25519"]);
    assert.equal(first["payload"], CONTRACT_PAYLOAD);
    assert.equal(first["hmac"], "Jh7KgV0gdhjyPJ/xWuYYy3WtWqMhn11lP7qi4MsgV4c=");
    const second = JSON.parse(out[1] ?? "") as Record<string, string>;
    assert.ok(second["payload"]?.includes('"shard_id":"\\u00e9"'));
  });

  it("accepts any UTF-8 key, including empty and dash-led ones", () => {
    const empty = run(["sign", "--key", ""], Buffer.from(CONTRACT_TEXT));
    assert.equal(empty.code, 0);
    const viaEquals = run(["sign", "--key="], Buffer.from(CONTRACT_TEXT));
    assert.equal(viaEquals.stdout, empty.stdout);
    assert.equal(run(["sign", "--key", "--weird"], Buffer.from(CONTRACT_TEXT)).code, 0);
    assert.equal(cli(["sign", "--key", "ключ🔑"], CONTRACT_TEXT).status, 0);
  });

  it("reports bad input on stderr with exit code 1", () => {
    for (const [args, input, pattern] of [
      [["sign", "--key", "k"], "not json", /JSON/],
      [["sign", "--key", "k"], CONTRACT_TEXT.replace('"epoch":1', '"epoch":1.0'), /epoch/],
      [["sign", "--key", "k"], JSON.stringify({ ...CONTRACT_FIELDS, r: undefined }), /`r`/],
      [["sign", "--alg", "ed25519", "--seed", "AAAA"], CONTRACT_TEXT, /32 bytes/],
      [["sign"], CONTRACT_TEXT, /--key/],
      [["sign", "--alg", "rsa", "--key", "k"], CONTRACT_TEXT, /rsa/],
      [["canonical"], "[1]", /object/],
      [["batch"], `${JSON.stringify({ fields: CONTRACT_FIELDS, hmac_key: "k" })}\n{"fields": {}}\n`, /line 2/],
      [["frobnicate"], "", /unknown command/],
      [[], "", /usage/],
    ] as Array<[string[], string, RegExp]>) {
      const result = cli(args, input);
      assert.equal(result.status, 1, `${args.join(" ")}: ${result.stderr}`);
      assert.match(result.stderr, pattern);
    }
  });

  it("rejects invalid UTF-8 on stdin", () => {
    const result = cli(["canonical"], Buffer.from([0x7b, 0xff, 0x7d]));
    assert.equal(result.status, 1);
    assert.match(result.stderr, /UTF-8/);
  });
});
