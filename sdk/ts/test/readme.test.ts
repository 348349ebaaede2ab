/**
 * Runs the README's examples as written: the gateway one (only the gateway URL points at a local
 * stand-in) and the offline audit proof one (on the shared audit vectors' bundle).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { it } from "node:test";
import { promisify } from "node:util";

import { decodePcs } from "../src/decode.js";
import { verifyHmac } from "../src/signing.js";
import { AUDIT_VECTOR_FILE, PACKAGE_ROOT } from "./fixtures.js";

it("README example works as written", async () => {
  const readme = readFileSync(join(PACKAGE_ROOT, "README.md"), "utf8");
  const example = /## Example\s+```js\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(example !== undefined, "README has no ```js block under ## Example");
  assert.ok(example.trim().split("\n").length <= 12, "the example should stay about ten lines");

  const bodies: string[] = [];
  const server = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk: Buffer) => (body += chunk.toString("utf8")));
    request.on("end", () => {
      bodies.push(body);
      response.writeHead(200, { "content-type": "application/json" });
      response.end('{"accepted":true,"escalated":false,"recomputed_D_hat":0.528320834,"recomputed_budget":0.317807017}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    assert.ok(example.includes("http://127.0.0.1:8080"));
    // Inside the package, so `import "@flk/sdk"` resolves to dist/ through package self-reference.
    const dir = join(PACKAGE_ROOT, "build");
    mkdirSync(dir, { recursive: true });
    const file = join(dir, "readme-example.mjs");
    writeFileSync(file, example.replace("http://127.0.0.1:8080", url));
    const { stdout } = await promisify(execFile)(process.execPath, [file], { encoding: "utf8" });
    assert.match(stdout, /accepted: true,\s+escalated: false/);
    assert.match(stdout, /^accepted \{/m);
    assert.equal(bodies.length, 1);
    const sent = decodePcs(bodies[0] ?? "");
    assert.equal(sent.sig, "x5KLRpKb75Oy1oxLA+3V+bgY/HL/3ZYOk1rw3pCiSm4=");
    assert.ok(verifyHmac(sent, "testsecret", sent.sig ?? ""));
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

it(
  "README audit proof example works as written",
  { skip: existsSync(AUDIT_VECTOR_FILE) ? false : `${AUDIT_VECTOR_FILE} not written yet` },
  async () => {
    const readme = readFileSync(join(PACKAGE_ROOT, "README.md"), "utf8");
    const example = /## Verifying audit proofs offline[\s\S]*?```js\n([\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(example !== undefined, "README has no ```js block under ## Verifying audit proofs offline");

    type Case = { name: string; bundle: Record<string, unknown>; record: Record<string, unknown> | null; expect: string };
    const vectors = JSON.parse(readFileSync(AUDIT_VECTOR_FILE, "utf8")) as {
      bundles: { verifier_key: string; cases: Case[] };
    };
    const valid = vectors.bundles.cases.find((entry) => entry.expect === "ok" && entry.record !== null);
    assert.ok(valid?.record, "the audit vectors have a valid bundle with a record");
    // Inside the package, so `import "@flk/sdk"` resolves to dist/ through package self-reference.
    const dir = join(PACKAGE_ROOT, "build", "readme-audit");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "example.mjs"), example);
    writeFileSync(join(dir, "log.vkey"), `${vectors.bundles.verifier_key}\n`);
    // The PCS the auditor holds: the record's 8 signed fields plus what decoding a PCS requires.
    const pcs = { ...valid.record, schema: "fractal-lba-kakeya", version: "0.1", scales: [2, 4], N_j: { 2: 3, 4: 5 }, regime: "mixed" };
    writeFileSync(join(dir, "pcs.json"), JSON.stringify(pcs));
    const run = async (bundle: Record<string, unknown>): Promise<string> => {
      writeFileSync(join(dir, "bundle.json"), JSON.stringify(bundle));
      const { stdout } = await promisify(execFile)(process.execPath, [join(dir, "example.mjs")], { cwd: dir, encoding: "utf8" });
      return stdout;
    };
    assert.equal(await run(valid.bundle), "leaf 5 of 12: accepted\n");
    assert.match(await run({ ...valid.bundle, leaf_index: 4 }), /^refused at the inclusion check: inclusion: /);
  },
);
