// Codec edges beyond the shared vectors.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  LocalProtocolError,
  WireError,
  decodeClientMessage,
  decodeRecords,
  decodeServerMessage,
  encodeMessage,
  encodeRecords,
} from "../src/diaproto.js";

const code = (fn) => {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof WireError, String(error));
    return [error.code, error.stream];
  }
  assert.fail("expected a WireError");
};

test("numbers no double holds are refused, as the Python receiver does", () => {
  assert.deepEqual(code(() => decodeClientMessage('{"type":"open","stream":1,"text":"x","options":{"a":1e999}}')), ["bad_message", null]);
  assert.deepEqual(code(() => decodeServerMessage(`{"type":"end","stream":1,"seq":${"9".repeat(400)}}`)), ["bad_message", null]);
});

test("-0 is the count 0", () => {
  const message = decodeServerMessage('{"type":"end","stream":-0,"seq":0}');
  assert.ok(Object.is(message.stream, 0));
});

test("decodeRecords accepts ArrayBuffer, Uint8Array and offset views; payloads are views", () => {
  const bytes = encodeRecords([{ stream: 2, seq: 9, data: new Uint8Array([1, 2, 3]) }]);
  const padded = new Uint8Array(bytes.length + 5);
  padded.set(bytes, 5);
  for (const body of [bytes.buffer, bytes, padded.subarray(5), new DataView(padded.buffer, 5)]) {
    const [record] = decodeRecords(body);
    assert.deepEqual([record.stream, record.seq, [...record.data]], [2, 9, [1, 2, 3]]);
  }
  assert.throws(() => decodeRecords(new ArrayBuffer(0)), WireError);
});

test("encoders refuse what a peer would have to reject", () => {
  assert.throws(() => encodeMessage({ type: "cancel", stream: -1 }), LocalProtocolError);
  assert.throws(() => encodeMessage({ type: "credit", stream: 1, bytes: 2 ** 32 }), LocalProtocolError);
  assert.throws(() => encodeMessage({ type: "credit", stream: 1, bytes: 1.5 }), LocalProtocolError);
  assert.throws(() => encodeMessage({ type: "open", stream: 1, text: "x", options: { a: NaN } }), LocalProtocolError);
  assert.throws(() => encodeMessage({ type: "open", stream: 1, text: "\ud800" }), LocalProtocolError);
  assert.throws(() => encodeMessage({ type: "pause", stream: 1 }), LocalProtocolError);
  assert.throws(() => encodeRecords([{ stream: 2 ** 32, seq: 1, data: new Uint8Array() }]), LocalProtocolError);
  // a surrogate pair is fine
  assert.equal(encodeMessage({ type: "open", stream: 1, text: "🎙" }), '{"type":"open","stream":1,"text":"🎙"}');
});

test("the client open the socket writes matches the brief", () => {
  assert.equal(
    encodeMessage({ type: "open", stream: 3, text: "Hi.", voice: "S2", options: { speed: 1.25 }, credit: 131072 }),
    '{"type":"open","stream":3,"text":"Hi.","voice":"S2","options":{"speed":1.25},"credit":131072}',
  );
});
