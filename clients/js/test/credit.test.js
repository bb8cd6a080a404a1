// Credit at playback pace: how SpeechStream grants consumption back (grantStep), against
// fake WebSockets, a fake server that honours credit as protocol §8 says, and fake timers.
import { test } from "node:test";
import assert from "node:assert/strict";

import { DiaprotoSocket, encodeRecords } from "../src/diaproto.js";

/** A fake WebSocket class that remembers every connection made with it. */
function fakeWebSocketClass() {
  const made = [];
  class FakeWebSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.protocol = "";
      this.sent = [];
      this.listeners = new Map();
      made.push(this);
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
      this.sent.push(JSON.parse(text));
    }
    close(code = 1000) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.emit("close", { code });
    }
    connect() {
      this.readyState = 1;
      this.protocol = "diaproto.v1";
      this.emit("open");
    }
    drop() {
      this.readyState = 3;
      this.emit("close", { code: 1006 });
    }
    fromServer(message) {
      this.emit("message", { data: JSON.stringify(message) });
    }
    /** One record per WebSocket message, as the server sends them. */
    record(stream, seq, length) {
      const bytes = encodeRecords([{ stream, seq, data: new Uint8Array(length) }]);
      this.emit("message", { data: bytes.buffer });
    }
    take() {
      const sent = this.sent;
      this.sent = [];
      return sent;
    }
  }
  return { FakeWebSocket, made };
}

function fakeTimers() {
  const pending = new Map();
  let next = 1;
  return {
    setTimeout(fn, ms) {
      const id = next++;
      pending.set(id, { fn, ms });
      return id;
    },
    clearTimeout(id) {
      pending.delete(id);
    },
    fire() {
      assert.equal(pending.size, 1, "one reconnection timer pending");
      const [[id, { fn }]] = pending;
      pending.delete(id);
      fn();
    },
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

async function connected(options = {}) {
  const { FakeWebSocket, made } = fakeWebSocketClass();
  const timers = fakeTimers();
  const socket = new DiaprotoSocket("ws://127.0.0.1:9/ws", { WebSocket: FakeWebSocket, timers, random: () => 1, ...options });
  made[0].connect();
  await socket.ready;
  return { socket, made, timers };
}

/** Open a stream and acknowledge it; returns the stream and its connection. */
async function opened(openOptions, socketOptions = {}) {
  const { socket, made, timers } = await connected(socketOptions);
  const stream = socket.open("some text", openOptions);
  await tick();
  const ws = made[0];
  ws.take();
  ws.fromServer({ type: "open", stream: stream.id, token: "tok" });
  return { socket, made, timers, ws, stream };
}

const credits = (messages) => messages.filter((m) => m.type === "credit").map((m) => m.bytes);

test('grantOn "consumed" (a player): one chunk-sized grant per chunk played', async () => {
  const { ws, stream } = await opened({ credit: 8192 });
  assert.equal(stream.grantOn, "consumed");
  for (let seq = 1; seq <= 8; seq++) ws.record(1, seq, 1024);
  assert.equal(stream.grantStep, 1024, "the largest chunk received");
  for (let i = 0; i < 8; i++) {
    stream.consumed(1024);
    await tick();
    assert.deepEqual(ws.take(), [{ type: "credit", stream: 1, bytes: 1024 }], `chunk ${i + 1}`);
  }
  // A player reporting in smaller steps (a 48 kHz context: ~940 bytes a tick) is coalesced
  // to about a chunk a grant.
  const sizes = [];
  for (let i = 0; i < 12; i++) {
    stream.consumed(940);
    await tick();
    sizes.push(...credits(ws.take()));
  }
  assert.deepEqual(sizes, [1880, 1880, 1880, 1880, 1880, 1880]);
  assert.equal(stream.grants, 8 + 6);
  assert.equal(stream.granted, 8192 + 8 * 1024 + 12 * 940);
});

test("the default step follows the largest chunk so far, within 1..window/4", async () => {
  const { ws, stream } = await opened({ credit: 8192 });
  assert.equal(stream.grantStep, 1, "before any chunk");
  ws.record(1, 1, 300);
  assert.equal(stream.grantStep, 300);
  ws.record(1, 2, 1024);
  assert.equal(stream.grantStep, 1024);
  ws.record(1, 3, 200); // a short last chunk does not lower it
  assert.equal(stream.grantStep, 1024);
  ws.record(1, 4, 4096);
  assert.equal(stream.grantStep, 2048, "bounded by a quarter window");
  const small = await opened({ credit: 2048 });
  small.ws.record(1, 1, 1024);
  assert.equal(small.stream.grantStep, 512);
  small.stream.consumed(1024);
  await tick();
  assert.deepEqual(credits(small.ws.take()), [1024], "a whole consumption is granted at once");
});

test('grantOn "read": quarter-window batches are kept', async () => {
  const { ws, stream } = await opened({ credit: 8192, grantOn: "read" });
  for (let seq = 1; seq <= 8; seq++) ws.record(1, seq, 1024);
  assert.equal(stream.grantStep, 2048);
  const it = stream[Symbol.asyncIterator]();
  const grants = [];
  for (let i = 0; i < 8; i++) {
    await it.next();
    await tick();
    grants.push(credits(ws.take()));
  }
  assert.deepEqual(grants, [[], [2048], [], [2048], [], [2048], [], [2048]]);
  stream.consumed(4096); // ignored in this mode
  await tick();
  assert.deepEqual(ws.take(), []);
});

test("an explicit grantStep (open or socket default) is kept within 1..window", async () => {
  const a = await opened({ credit: 8192, grantStep: 4096 });
  a.ws.record(1, 1, 1024);
  assert.equal(a.stream.grantStep, 4096);
  for (let i = 0; i < 3; i++) a.stream.consumed(1024);
  await tick();
  assert.deepEqual(a.ws.take(), [], "below the step");
  a.stream.consumed(1024);
  await tick();
  assert.deepEqual(credits(a.ws.take()), [4096]);

  const b = await opened({ credit: 4096, grantOn: "read" }, { grantStep: 1024 });
  assert.equal(b.stream.grantStep, 1024, "the socket's default");
  const c = await opened({ credit: 4096, grantOn: "read", grantStep: null }, { grantStep: 1024 });
  assert.equal(c.stream.grantStep, 1024, "null: the default for grantOn (a quarter window)");
  assert.equal((await opened({ credit: 4096, grantStep: 0 })).stream.grantStep, 1);
  assert.equal((await opened({ credit: 4096, grantStep: 1e9 })).stream.grantStep, 4096, "never above the window");
});

/**
 * A server that honours credit (protocol §8: a whole record goes out while the stream's
 * credit is positive) against a consumer; checks the bounds at every step.
 * @param {{grantOn: "consumed"|"read", window: number, consume: number[]}} options
 *   `consume`: the sizes the player reports in turn (grantOn "consumed"); "read" reads a chunk
 */
async function simulate({ grantOn, window, consume }) {
  const { ws, stream } = await opened({ credit: window, grantOn });
  const chunks = [...Array.from({ length: 300 }, () => 1024), 500]; // ~3.5 s and a short last
  const total = chunks.reduce((a, b) => a + b, 0);
  let credit = window;
  let sent = 0;
  let seq = 0;
  let consumed = 0;
  let grants = 0;
  const it = stream[Symbol.asyncIterator]();
  const serve = () => {
    while (credit > 0 && seq < chunks.length) {
      const length = chunks[seq];
      seq += 1;
      credit -= length;
      sent += length;
      ws.record(1, seq, length);
    }
    if (seq === chunks.length && stream.state === "open") ws.fromServer({ type: "end", stream: 1, seq });
  };
  serve();
  for (let round = 0; round < 10_000 && consumed < total; round++) {
    const held = sent - consumed;
    assert.ok(held <= window + 1024 - 1, `held ${held}: at most the window and one message less a byte`);
    if (grantOn === "read") {
      const { value, done } = await it.next();
      if (done) break;
      consumed += value.byteLength;
    } else {
      const bytes = Math.min(held, consume[round % consume.length]);
      consumed += bytes;
      stream.consumed(bytes);
    }
    await tick();
    for (const bytes of credits(ws.take())) {
      credit += bytes;
      grants += 1;
    }
    assert.ok(stream.granted <= consumed + window, `granted ${stream.granted} > consumed ${consumed} + window`);
    assert.equal(stream.granted, window + (credit + sent - window));
    serve();
  }
  assert.equal(sent, total, "everything was sent: no stall");
  assert.equal(consumed, total);
  assert.equal(stream.grants, grants);
  return { grants, total };
}

test("against a server honouring credit: bounded, never stalls; a player grants chunk by chunk", async () => {
  const window = 33516; // the page's window: ~380 ms of audio
  const player = await simulate({ grantOn: "consumed", window, consume: [1024] });
  assert.ok(player.grants >= Math.floor((player.total - window) / 1024), `${player.grants} grants`);
  const uneven = await simulate({ grantOn: "consumed", window, consume: [940, 700, 1300, 128, 2048] });
  assert.ok(uneven.grants >= Math.floor((uneven.total - window) / 2048), `${uneven.grants} grants`);
  const reader = await simulate({ grantOn: "read", window, consume: [] });
  assert.ok(reader.grants <= Math.ceil(reader.total / (window / 4)), `${reader.grants} grants: quarter windows`);
});

test("resume: the window's room is granted at once, then chunk-sized grants again", async () => {
  const { socket, made, timers, ws, stream } = await opened({ credit: 4096 });
  for (let seq = 1; seq <= 4; seq++) ws.record(1, seq, 1024); // the whole window
  stream.consumed(1024);
  stream.consumed(1024);
  await tick();
  assert.deepEqual(credits(ws.take()), [2048], "two consumptions in one turn: one message");
  ws.record(1, 5, 1024);
  ws.record(1, 6, 1024);
  stream.consumed(1024); // queued, but the connection drops in this same turn
  ws.drop();
  stream.consumed(1024); // while disconnected: counted, not sent
  timers.fire();
  const second = made[1];
  second.connect();
  await tick();
  assert.deepEqual(second.take(), [{ type: "resume", stream: 1, after: 6, token: "tok" }]);
  second.fromServer({ type: "open", stream: 1, token: "tok" });
  await tick();
  // Held: 6144 received - 4096 consumed = 2048; room in the window: 2048.
  assert.deepEqual(second.take(), [{ type: "credit", stream: 1, bytes: 2048 }]);
  assert.equal(stream.grantStep, 1024, "the step survives the resume");
  second.record(1, 7, 1024);
  stream.consumed(1024);
  await tick();
  assert.deepEqual(credits(second.take()), [1024]);
  assert.equal(socket.streams.get(1), stream);

  // A deficit (a message over the window held) is paid back before anything is granted.
  const d = await opened({ credit: 4096 });
  for (let seq = 1; seq <= 5; seq++) d.ws.record(1, seq, 1024);
  d.ws.drop();
  d.timers.fire();
  d.made[1].connect();
  d.made[1].fromServer({ type: "open", stream: 1, token: "tok" });
  await tick();
  assert.deepEqual(credits(d.made[1].take()), [], "5120 held in a 4096 window");
  d.stream.consumed(1024);
  await tick();
  assert.deepEqual(credits(d.made[1].take()), [], "the deficit paid back");
  d.stream.consumed(1024);
  await tick();
  assert.deepEqual(credits(d.made[1].take()), [1024]);
});
