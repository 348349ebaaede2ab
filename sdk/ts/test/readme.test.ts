/** Runs the README's example as written (only the gateway URL points at a local stand-in). */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { it } from "node:test";
import { promisify } from "node:util";

import { decodePcs } from "../src/decode.js";
import { verifyHmac } from "../src/signing.js";
import { PACKAGE_ROOT } from "./fixtures.js";

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
