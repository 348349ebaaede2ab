import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { decodePcs } from "../src/decode.js";
import {
  decodeBase64Strict,
  ed25519PrivateKey,
  ed25519PublicKey,
  signEd25519,
  signHmac,
  signHmacPrehash,
  verifyEd25519,
  verifyHmac,
} from "../src/signing.js";
import { CONTRACT_FIELDS, golden } from "./fixtures.js";

const SEED = Uint8Array.from({ length: 32 }, (_, i) => i);
const SEED_B64 = Buffer.from(SEED).toString("base64");
const PUBLIC = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";

describe("HMAC-SHA256 (CONTRACT 2.4, 2.6, 2.7)", () => {
  it("signs the contract vectors", () => {
    assert.equal(signHmac(CONTRACT_FIELDS, "testsecret"), "Jh7KgV0gdhjyPJ/xWuYYy3WtWqMhn11lP7qi4MsgV4c=");
    const case1 = decodePcs(golden("pcs_tiny_case_1.json"));
    assert.equal(signHmac(case1, "testsecret"), "x5KLRpKb75Oy1oxLA+3V+bgY/HL/3ZYOk1rw3pCiSm4=");
    assert.equal(signHmacPrehash(case1, "testsecret"), "ie8rdnp+3qXnlMVyHmSdjFT3Unk6sZmoVxun71x2/X4=");
    const case2 = decodePcs(golden("pcs_tiny_case_2.json"));
    assert.equal(signHmac(case2, "testsecret"), "wahFdOY1XKgg9WTr5UTpryZTviM5zay5VMHcrzHH5hE=");
  });

  it("verifies the golden sig fields, and only with the right key", () => {
    for (const name of ["pcs_tiny_case_1.json", "pcs_tiny_case_2.json"]) {
      const pcs = decodePcs(golden(name));
      assert.ok(pcs.sig !== undefined);
      assert.equal(verifyHmac(pcs, "testsecret", pcs.sig), true);
      assert.equal(verifyHmac(pcs, "testsecreT", pcs.sig), false);
      assert.equal(verifyHmac({ ...pcs, budget: pcs.budget + 1e-6 }, "testsecret", pcs.sig), false);
    }
  });

  it("accepts the pre-hash form only when the tenant opts in", () => {
    const case1 = decodePcs(golden("pcs_tiny_case_1.json"));
    const legacy = "ie8rdnp+3qXnlMVyHmSdjFT3Unk6sZmoVxun71x2/X4=";
    assert.equal(verifyHmac(case1, "testsecret", legacy), false);
    assert.equal(verifyHmac(case1, "testsecret", legacy, { allowPrehash: true }), true);
  });

  it("takes any UTF-8 key, including empty, as text or bytes", () => {
    const empty = signHmac(CONTRACT_FIELDS, "");
    assert.equal(verifyHmac(CONTRACT_FIELDS, new Uint8Array(), empty), true);
    assert.equal(signHmac(CONTRACT_FIELDS, "ключ🔑"), signHmac(CONTRACT_FIELDS, Buffer.from("ключ🔑", "utf8")));
  });

  it("treats malformed signatures as invalid without throwing", () => {
    for (const sig of ["", "not base64!", "Jh7KgV0gdhjyPJ/xWuYYy3WtWqMhn11lP7qi4MsgV4c", "Jh7KgV0gdhjyPJ/xWuYYy3WtWqMhn11lP7qi4MsgV4d=", "AAAA"]) {
      assert.equal(verifyHmac(CONTRACT_FIELDS, "testsecret", sig), false, sig);
    }
  });
});

describe("Ed25519 (CONTRACT 2.5, 2.6)", () => {
  it("derives the contract public key from seed bytes 0x00..0x1f", () => {
    assert.equal(ed25519PublicKey(SEED), PUBLIC);
    assert.equal(ed25519PublicKey(SEED_B64), PUBLIC);
  });

  it("signs SHA-256(payload) for both golden records", () => {
    assert.equal(
      signEd25519(decodePcs(golden("pcs_tiny_case_1.json")), SEED),
      "YDbe81WZAVDIv6klWR8QtDAu4tYwBAix8fFppjAzOfASRss2q4DdWVC6UT54Q4eXs37HOiJJRHzYk3FyXVZlAg==",
    );
    assert.equal(
      signEd25519(decodePcs(golden("pcs_tiny_case_2.json")), ed25519PrivateKey(SEED_B64)),
      "ULhPXPI2/nuh4s0VCG8R1tzqFxqitgzGvqRuIJQykGvruev/QIzYzFoNXO3Vb51b53hfIS9uBApb/SPrl5EODQ==",
    );
  });

  it("verifies against the raw public key and rejects tampering", () => {
    const sig = signEd25519(CONTRACT_FIELDS, SEED);
    assert.equal(verifyEd25519(CONTRACT_FIELDS, PUBLIC, sig), true);
    assert.equal(verifyEd25519(CONTRACT_FIELDS, Buffer.from(PUBLIC, "base64"), sig), true);
    assert.equal(verifyEd25519({ ...CONTRACT_FIELDS, epoch: 2 }, PUBLIC, sig), false);
    assert.equal(verifyEd25519(CONTRACT_FIELDS, PUBLIC, "AAAA"), false);
    assert.equal(verifyEd25519(CONTRACT_FIELDS, PUBLIC, "%%%"), false);
  });

  it("rejects seeds and keys of the wrong size", () => {
    assert.throws(() => signEd25519(CONTRACT_FIELDS, new Uint8Array(31)), /32 bytes/);
    assert.throws(() => signEd25519(CONTRACT_FIELDS, "AAAA"), /32 bytes/);
    assert.throws(() => verifyEd25519(CONTRACT_FIELDS, "AAAA", "AAAA"), /32 bytes/);
  });
});

describe("decodeBase64Strict", () => {
  it("accepts only canonical standard base64 with padding", () => {
    assert.deepEqual(decodeBase64Strict("AAE="), Buffer.from([0, 1]));
    assert.equal(decodeBase64Strict("AAF="), null); // non-zero padding bits
    assert.equal(decodeBase64Strict("AAE"), null);
    assert.equal(decodeBase64Strict("AA-_"), null);
    assert.equal(decodeBase64Strict("AA E="), null);
    assert.deepEqual(decodeBase64Strict(""), Buffer.alloc(0));
  });
});
