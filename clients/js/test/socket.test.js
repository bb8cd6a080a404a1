// DiaprotoSocket and SpeechStream against a fake WebSocket.
import { test } from "node:test";
import assert from "node:assert/strict";

import { DiaprotoSocket, StreamFailure, encodeRecords } from "../src/diaproto.js";

class FakeWebSocket {
  constructor({ open = true, protocol = "diaproto.v1" } = {}) {
    this.readyState = open ? 1 : 0;
    this.protocol = protocol;
    this.binaryType = "blob";
    this.sent = [];
    this.listeners = new Map();
  }
  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type).push(fn);
  }
  emit(type, event = {}) {
    for (const fn of this.listeners.get(type) ?? []) fn(event);
  }
  send(text) {
    assert.equal(this.readyState, 1, "send on an open socket only");
    assert.equal(typeof text, "string", "a client sends text messages only");
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = 3;
    this.emit("close", { code: 1000 });
  }
  connect() {
    this.readyState = 1;
    this.emit("open");
  }
  fromServer(message) {
    this.emit("message", { data: JSON.stringify(message) });
  }
  records(...records) {
    const bytes = encodeRecords(records.map(([stream, seq, data]) => ({ stream, seq, data: Uint8Array.from(data) })));
    this.emit("message", { data: bytes.buffer });
  }
  take() {
    const sent = this.sent;
    this.sent = [];
    return sent;
  }
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

test("opens queued in one turn go out together in one flush, with auto stream ids", async () => {
  const ws = new FakeWebSocket();
  const socket = new DiaprotoSocket(ws);
  assert.equal(ws.binaryType, "arraybuffer");
  const streams = ["one", "two", "three"].map((text) => socket.open(text, { voice: "S2", speed: 1.5, credit: 8192 }));
  assert.deepEqual(ws.sent, [], "nothing is sent synchronously");
  await Promise.resolve();
  assert.equal(socket.flushes, 1);
  assert.deepEqual(ws.take(), [
    { type: "open", stream: 1, text: "one", voice: "S2", options: { speed: 1.5 }, credit: 8192 },
    { type: "open", stream: 2, text: "two", voice: "S2", options: { speed: 1.5 }, credit: 8192 },
    { type: "open", stream: 3, text: "three", voice: "S2", options: { speed: 1.5 }, credit: 8192 },
  ]);
  assert.deepEqual(streams.map((s) => s.id), [1, 2, 3]);
  socket.open("four", { credit: null });
  await tick();
  assert.equal(socket.flushes, 2);
  assert.deepEqual(ws.take(), [{ type: "open", stream: 4, text: "four" }], "no credit: not credit-based");
});

test("control messages (cancel, credit) overtake queued opens", async () => {
  const ws = new FakeWebSocket();
  const socket = new DiaprotoSocket(ws);
  const a = socket.open("a", { credit: 4000 });
  const b = socket.open("b", { credit: 4000 });
  await tick();
  ws.take();
  socket.open("c", { credit: 4000 }); // queued first
  a.consumed(1000); // a quarter of the window: a credit grant
  socket.cancel(b);
  await tick();
  assert.deepEqual(ws.take(), [
    { type: "credit", stream: 1, bytes: 1000 },
    { type: "cancel", stream: 2 },
    { type: "open", stream: 3, text: "c", credit: 4000 },
  ]);
  assert.equal(b.state, "cancelled");
});

test("cancelling a stream whose open is still queued sends nothing", async () => {
  const ws = new FakeWebSocket();
  const socket = new DiaprotoSocket(ws);
  const s = socket.open("never mind");
  s.cancel();
  await tick();
  assert.deepEqual(ws.sent, []);
  assert.equal(s.state, "cancelled");
});

test("messages wait for the connection to open", async () => {
  const ws = new FakeWebSocket({ open: false });
  const socket = new DiaprotoSocket(ws);
  socket.open("hello", { credit: null });
  await tick();
  assert.deepEqual(ws.sent, []);
  ws.connect();
  await socket.ready;
  await tick();
  assert.deepEqual(ws.take(), [{ type: "open", stream: 1, text: "hello" }]);
});

test("a server that did not select diaproto.v1 is refused", async () => {
  const ws = new FakeWebSocket({ open: false, protocol: "chat" });
  const socket = new DiaprotoSocket(ws);
  const s = socket.open("x");
  ws.connect();
  await assert.rejects(socket.ready, StreamFailure);
  assert.equal(s.state, "error");
  assert.deepEqual(ws.sent, [], "no diaproto message on that connection");
});

test("records of one batch are dispatched to their streams; end completes the iterator", async () => {
  const ws = new FakeWebSocket();
  const socket = new DiaprotoSocket(ws);
  const s1 = socket.open("one");
  const s2 = socket.open("two");
  ws.fromServer({ type: "open", stream: 1, token: "t-1" });
  ws.fromServer({ type: "open", stream: 2 });
  assert.equal(s1.token, "t-1");
  ws.records([1, 1, [1, 1]], [2, 1, [2]], [1, 2, [1, 2]], [99, 1, [9]]);
  ws.records([2, 2, [2, 2]]);
  ws.fromServer({ type: "end", stream: 1, seq: 2 });
  const got = [];
  for await (const chunk of s1) got.push([...chunk]);
  assert.deepEqual(got, [[1, 1], [1, 2]]);
  assert.equal(s1.state, "ended");
  assert.equal(s1.lastSeq, 2);
  assert.equal(s2.state, "open");
  assert.equal(s2.stats.chunks, 2);
  ws.fromServer({ type: "error", stream: 2, code: "internal", message: "model crashed" });
  await assert.rejects(
    (async () => {
      for await (const _ of s2); // eslint-disable-line no-unused-vars
    })(),
    (error) => error instanceof StreamFailure && error.code === "internal" && error.message === "model crashed",
  );
  assert.equal(s2.state, "error");
});

test("callbacks fire per chunk, on end and on error; onchunk alone queues nothing", async () => {
  const ws = new FakeWebSocket();
  const socket = new DiaprotoSocket(ws);
  const s = socket.open("x");
  const seen = [];
  s.onchunk = (chunk, seq) => seen.push(["chunk", seq, chunk.length]);
  s.onend = (seq) => seen.push(["end", seq]);
  ws.records([1, 1, [0, 0]], [1, 2, [0, 0, 0, 0]]);
  ws.fromServer({ type: "end", stream: 1, seq: 2 });
  assert.deepEqual(seen, [["chunk", 1, 2], ["chunk", 2, 4], ["end", 2]]);
  assert.equal(s._queue.length, 0);
  await s.finished;

  const t = socket.open("y");
  let failure = null;
  t.onerror = (error) => (failure = error);
  ws.fromServer({ type: "error", stream: 2, code: "teapot" });
  assert.equal(failure?.code, "teapot", "an unknown code ends the stream");
  await assert.rejects(t.finished);
});

test("errors that refuse one message leave an acknowledged stream running", () => {
  const ws = new FakeWebSocket();
  const socket = new DiaprotoSocket(ws);
  const errors = [];
  socket.onerror = (e) => errors.push(e.code);
  const s = socket.open("x");
  ws.fromServer({ type: "open", stream: 1 });
  ws.fromServer({ type: "error", stream: 1, code: "bad_message" });
  assert.equal(s.state, "open");
  const t = socket.open("y");
  ws.fromServer({ type: "error", stream: 2, code: "stream_exists" });
  assert.equal(t.state, "error", "a refused open never starts");
  ws.fromServer({ type: "error", stream: null, code: "internal" });
  assert.deepEqual(errors, ["bad_message", "stream_exists", "internal"]);
});

test("undecodable server messages are ignored and counted; cancelled streams get no data", () => {
  const ws = new FakeWebSocket();
  const socket = new DiaprotoSocket(ws);
  const s = socket.open("x");
  const seen = [];
  s.onchunk = (chunk) => seen.push(chunk.length);
  ws.emit("message", { data: "{not json" });
  ws.emit("message", { data: JSON.stringify({ type: "progress", stream: 1 }) });
  ws.emit("message", { data: new Uint8Array([0, 0, 0, 1, 0]).buffer }); // truncated record
  assert.equal(socket.badMessages, 3);
  assert.equal(s.state, "opening");
  ws.records([1, 1, [5, 5, 5]]);
  s.cancel();
  ws.records([1, 2, [5, 5, 5]]);
  ws.fromServer({ type: "end", stream: 1, seq: 2 });
  assert.deepEqual(seen, [3]);
  assert.equal(s.state, "cancelled");
});

test("credit is granted back as playback consumes, in batches of an explicit grantStep", async () => {
  const ws = new FakeWebSocket();
  const socket = new DiaprotoSocket(ws);
  const s = socket.open("long text", { credit: 4096, grantStep: 1024 }); // a quarter window
  assert.equal(s.grantStep, 1024);
  await tick();
  ws.take();
  ws.records(...Array.from({ length: 8 }, (_, i) => [1, i + 1, new Array(512).fill(0)]));
  await tick();
  assert.deepEqual(ws.take(), [], "receiving alone grants nothing: playback has not consumed it");
  s.consumed(600);
  s.consumed(300);
  await tick();
  assert.deepEqual(ws.take(), [], "less than the step");
  s.consumed(400);
  await tick();
  assert.deepEqual(ws.take(), [{ type: "credit", stream: 1, bytes: 1300 }], "one grant, batched");
  s.consumed(2000);
  await tick();
  assert.deepEqual(ws.take(), [{ type: "credit", stream: 1, bytes: 2000 }]);
  assert.equal(s.granted, 4096 + 3300);
  assert.equal(s.grants, 2);
  ws.fromServer({ type: "end", stream: 1, seq: 8 });
  s.consumed(4096);
  await tick();
  assert.deepEqual(ws.take(), [], "no credit for a finished stream");
});

test('grantOn "read": credit follows what the application reads', async () => {
  const ws = new FakeWebSocket();
  const socket = new DiaprotoSocket(ws);
  const s = socket.open("x", { credit: 2048, grantOn: "read" });
  await tick();
  ws.take();
  ws.records([1, 1, new Array(1024).fill(1)]);
  await tick();
  assert.deepEqual(ws.take(), [], "not yet read");
  const it = s[Symbol.asyncIterator]();
  await it.next();
  await tick();
  assert.deepEqual(ws.take(), [{ type: "credit", stream: 1, bytes: 1024 }]);
  s.consumed(5000); // ignored in this mode
  await tick();
  assert.deepEqual(ws.take(), []);
});

test("stats: time to first byte, jitter (std-dev of gaps), chunks, bytes", () => {
  let clock = 1000;
  const ws = new FakeWebSocket();
  const socket = new DiaprotoSocket(ws, { now: () => clock });
  const s = socket.open("x");
  assert.equal(s.stats.ttfbMs, null);
  for (const [t, seq] of [[1100, 1], [1120, 2], [1160, 3], [1180, 4]]) {
    clock = t;
    ws.records([1, seq, new Array(1024).fill(0)]);
  }
  assert.equal(s.stats.ttfbMs, 100);
  assert.equal(s.stats.chunks, 4);
  assert.equal(s.stats.bytes, 4096);
  assert.equal(s.stats.lastGapMs, 20);
  assert.ok(Math.abs(s.stats.meanGapMs - 80 / 3) < 1e-9);
  // gaps 20, 40, 20: population standard deviation sqrt(800/9)
  assert.ok(Math.abs(s.stats.jitterMs - Math.sqrt(800 / 9)) < 1e-9, String(s.stats.jitterMs));
});

test("a closed connection fails the streams still running", async () => {
  const ws = new FakeWebSocket();
  const socket = new DiaprotoSocket(ws);
  const s = socket.open("x");
  ws.close();
  await assert.rejects(s.finished, (e) => e.code === "connection_closed");
  assert.throws(() => socket.open("y"), StreamFailure);
});

test("works with a Node 'ws'-style object (on + Buffer data)", () => {
  const handlers = {};
  const nodeWs = { readyState: 1, protocol: "diaproto.v1", on: (t, fn) => (handlers[t] = fn), send() {}, close() {} };
  const socket = new DiaprotoSocket(nodeWs);
  const s = socket.open("x");
  const bytes = encodeRecords([{ stream: 1, seq: 1, data: new Uint8Array([7, 7]) }]);
  handlers.message(Buffer.from(bytes));
  assert.equal(s.stats.bytes, 2);
});
