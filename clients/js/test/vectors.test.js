// Every vector of diaproto/wire_vectors.json, decoded and (for encode vectors) encoded.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import {
  WireError,
  decodeClientMessage,
  decodeRecords,
  decodeServerMessage,
  encodeMessage,
  encodeRecords,
} from "../src/diaproto.js";

const file = JSON.parse(readFileSync(new URL("../../../diaproto/wire_vectors.json", import.meta.url), "utf8"));

const fromHex = (hex) => Uint8Array.from(hex.match(/../g) ?? [], (b) => parseInt(b, 16));
const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

function decode(v) {
  if (v.frame === "binary") {
    assert.equal(v.direction, "server_to_client", "only servers send binary messages");
    return decodeRecords(fromHex(v.hex)).map(({ stream, seq, data }) => ({ type: "data", stream, seq, hex: toHex(data) }));
  }
  return [v.direction === "client_to_server" ? decodeClientMessage(v.text) : decodeServerMessage(v.text)];
}

test("the vector file is the one the spec describes", () => {
  assert.equal(file.version, 1);
  assert.equal(file.protocol, "diaproto.v1");
  assert.ok(file.vectors.length >= 100, "expected the full vector set");
  assert.equal(new Set(file.vectors.map((v) => v.name)).size, file.vectors.length, "names are unique");
});

for (const v of file.vectors) {
  test(`${v.op}: ${v.name}`, () => {
    if (v.op === "decode") {
      if ("error" in v.expect) {
        assert.throws(() => decode(v), (error) => {
          assert.ok(error instanceof WireError, `expected a WireError, got ${error}`);
          assert.equal(error.code, v.expect.error);
          if ("stream" in v.expect) assert.equal(error.stream, v.expect.stream);
          return true;
        });
      } else {
        assert.deepStrictEqual(decode(v), v.expect.messages);
      }
      return;
    }
    assert.equal(v.op, "encode");
    if (v.frame === "text") {
      assert.equal(v.messages.length, 1);
      assert.equal(encodeMessage(v.messages[0]), v.text);
    } else {
      const records = v.messages.map((m) => ({ stream: m.stream, seq: m.seq, data: fromHex(m.hex) }));
      assert.equal(toHex(encodeRecords(records)), v.hex);
    }
    // An encode vector is also a decode vector.
    assert.deepStrictEqual(decode(v), v.messages);
  });
}
