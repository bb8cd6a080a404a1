// DiaprotoSocket: reconnection after an unexpected close, and resume of the streams (§10),
// against fake WebSockets and fake timers (no real waiting).
import { test } from "node:test";
import assert from "node:assert/strict";

import { DiaprotoSocket, StreamFailure, encodeRecords } from "../src/diaproto.js";

/** A fake WebSocket class that remembers every connection made with it. */
function fakeWebSocketClass() {
  const made = [];
  class FakeWebSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.protocol = "";
      this.binaryType = "blob";
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
    /** The connection breaks (no close frame: code 1006). */
    drop() {
      this.readyState = 3;
      this.emit("close", { code: 1006 });
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
  return { FakeWebSocket, made };
}

/** Timers that run only when the test says so. */
function fakeTimers() {
  const pending = new Map();
  let next = 1;
  return {
    pending,
    setTimeout(fn, ms) {
      const id = next++;
      pending.set(id, { fn, ms });
      return id;
    },
    clearTimeout(id) {
      pending.delete(id);
    },
    /** Run the one timer due; returns its delay. */
    fire() {
      assert.equal(pending.size, 1, "one reconnection timer pending");
      const [[id, { fn, ms }]] = pending;
      pending.delete(id);
      fn();
      return ms;
    },
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** A socket on a fake URL connection, opened, with `reconnect` settings. */
async function connected(options = {}) {
  const { FakeWebSocket, made } = fakeWebSocketClass();
  const timers = fakeTimers();
  const events = [];
  const socket = new DiaprotoSocket("ws://127.0.0.1:9/ws", {
    WebSocket: FakeWebSocket,
    timers,
    random: () => 1, // the top of the jitter range: delays are exact
    ...options,
  });
  socket.onreconnecting = (info) => events.push(["reconnecting", info]);
  socket.onreconnected = (info) => events.push(["reconnected", info]);
  socket.onclose = () => events.push(["close"]);
  made[0].connect();
  await socket.ready;
  return { socket, made, timers, events };
}

const bytes = (n, value) => new Array(n).fill(value);

test("a drop mid-stream: reconnect after the backoff, resume after the last record, nothing twice", async () => {
  const { socket, made, timers, events } = await connected();
  const s = socket.open("long text", { credit: 4000 });
  await tick();
  const first = made[0];
  assert.deepEqual(first.take(), [{ type: "open", stream: 1, text: "long text", credit: 4000 }]);
  first.fromServer({ type: "open", stream: 1, token: "tok-1" });
  first.records([1, 1, bytes(100, 1)], [1, 2, bytes(100, 2)]);
  s.consumed(200); // the player took it all (less than a quarter window: no grant yet)
  first.drop();

  assert.equal(s.state, "open", "the stream waits for the resume");
  assert.equal(socket.reconnecting, true);
  assert.equal(made.length, 1, "no new connection before the backoff delay");
  assert.equal(timers.fire(), 250);
  assert.equal(made.length, 2);
  const second = made[1];
  assert.equal(second.url, "ws://127.0.0.1:9/ws");
  assert.deepEqual(second.protocols, ["diaproto.v1"]);
  assert.equal(second.binaryType, "arraybuffer");
  second.connect();
  await tick();
  assert.deepEqual(second.take(), [{ type: "resume", stream: 1, after: 2, token: "tok-1" }]);
  assert.deepEqual(first.sent, [], "nothing goes to the dead socket");
  assert.deepEqual(events, [["reconnecting", { attempt: 1, delayMs: 250 }], ["reconnected", { attempt: 1 }]]);

  second.fromServer({ type: "open", stream: 1, token: "tok-1" });
  await tick();
  // Credit restarts at 0 on the new connection: the whole window is free (all consumed).
  assert.deepEqual(second.take(), [{ type: "credit", stream: 1, bytes: 4000 }]);
  second.records([1, 2, bytes(100, 2)], [1, 3, bytes(100, 3)]); // 2 again: ignored
  second.records([1, 4, bytes(50, 4)]);
  second.fromServer({ type: "end", stream: 1, seq: 4 });
  const got = [];
  for await (const chunk of s) got.push(chunk[0]);
  assert.deepEqual(got, [1, 2, 3, 4], "each record once, in order");
  assert.equal(s.state, "ended");
  assert.equal(s.stats.reconnects, 1);
  assert.equal(s.stats.bytes, 350);
  assert.equal(socket.reconnects, 1);
  assert.equal(socket.closed, false);
});

test("credit after a resume: the window less what is held unconsumed; a deficit is paid back first", async () => {
  const { socket, made, timers } = await connected();
  const a = socket.open("a", { credit: 1000 });
  const b = socket.open("b", { credit: 1000 });
  await tick();
  const first = made[0];
  first.fromServer({ type: "open", stream: 1, token: "ta" });
  first.fromServer({ type: "open", stream: 2, token: "tb" });
  first.records([1, 1, bytes(600, 0)], [2, 1, bytes(1200, 0)]); // b: a whole message past its credit
  a.consumed(300); // a quarter window or more: a grant, still queued when the socket dies
  first.drop();
  a.consumed(100); // while disconnected: nothing is sent, it is counted
  timers.fire();
  const second = made[1];
  second.connect();
  await tick();
  assert.deepEqual(second.take(), [
    { type: "resume", stream: 1, after: 1, token: "ta" },
    { type: "resume", stream: 2, after: 1, token: "tb" },
  ], "the credit queued for the dead socket is not sent: the resume grant covers it");
  second.fromServer({ type: "open", stream: 1, token: "ta" });
  second.fromServer({ type: "open", stream: 2, token: "tb" });
  await tick();
  // a holds 600 - 400 = 200 unconsumed: room for 800. b holds 1200 in a 1000 window: none.
  assert.deepEqual(second.take(), [{ type: "credit", stream: 1, bytes: 800 }]);
  b.consumed(300); // pays back the 200 over the window first: 100 free, under a quarter
  await tick();
  assert.deepEqual(second.take(), []);
  b.consumed(150);
  await tick();
  assert.deepEqual(second.take(), [{ type: "credit", stream: 2, bytes: 250 }]);
});

test("a replay_gap or unknown_stream answer to a resume fails the stream with that code", async () => {
  const { socket, made, timers } = await connected();
  const gap = socket.open("a");
  const unknown = socket.open("b");
  await tick();
  const first = made[0];
  first.fromServer({ type: "open", stream: 1, token: "ta" });
  first.fromServer({ type: "open", stream: 2, token: "tb" });
  first.records([1, 1, [1]], [2, 1, [2]]);
  const failures = [];
  unknown.onerror = (error) => failures.push(error.code);
  first.drop();
  timers.fire();
  made[1].connect();
  made[1].fromServer({ type: "error", stream: 1, code: "replay_gap", message: "records 2.. are gone" });
  made[1].fromServer({ type: "error", stream: 2, code: "unknown_stream", message: "no such token" });
  await assert.rejects(
    (async () => {
      for await (const _ of gap); // eslint-disable-line no-unused-vars
    })(),
    (error) => error instanceof StreamFailure && error.code === "replay_gap" && error.stream === 1,
  );
  assert.equal(gap.state, "error");
  assert.deepEqual(failures, ["unknown_stream"]);
  await assert.rejects(unknown.finished, (error) => error.code === "unknown_stream");
});

test("a resume answered busy is asked again after a backoff, then fails with busy once attempts run out", async () => {
  const { socket, made, timers } = await connected({ reconnect: { attempts: 2, initialDelayMs: 100, maxDelayMs: 1000 } });
  const stream = socket.open("a", { credit: 100 });
  await tick();
  made[0].fromServer({ type: "open", stream: 1, token: "t" });
  made[0].records([1, 1, [1, 2]]);
  made[0].drop();
  timers.fire();
  made[1].connect();
  await tick();
  const resume = { type: "resume", stream: 1, after: 1, token: "t" };
  assert.deepEqual(made[1].take(), [resume]);
  // "The shared journal did not answer; retry shortly": asked again, after 100 ms, 200 ms.
  made[1].fromServer({ type: "error", stream: 1, code: "busy", message: "retry shortly" });
  assert.equal(stream.state, "open");
  assert.equal(timers.fire(), 100);
  await tick();
  assert.deepEqual(made[1].take(), [resume]);
  made[1].fromServer({ type: "error", stream: 1, code: "busy", message: "retry shortly" });
  assert.equal(timers.fire(), 200);
  await tick();
  assert.deepEqual(made[1].take(), [resume]);
  // Acknowledged: records continue and credit is granted; the retries count starts again.
  made[1].fromServer({ type: "open", stream: 1, token: "t" });
  await tick();
  assert.deepEqual(made[1].take(), [{ type: "credit", stream: 1, bytes: 98 }]);
  made[1].records([1, 2, [3]]);
  // Another drop, and busy past the attempts: the stream fails with busy.
  made[1].drop();
  timers.fire();
  made[2].connect();
  await tick();
  made[2].take();
  for (const delay of [100, 200]) {
    made[2].fromServer({ type: "error", stream: 1, code: "busy", message: "retry shortly" });
    assert.equal(timers.fire(), delay);
  }
  made[2].fromServer({ type: "error", stream: 1, code: "busy", message: "retry shortly" });
  await assert.rejects(stream.finished, (error) => error.code === "busy");
  assert.equal(timers.pending.size, 0);
});

test("a busy retry whose connection dropped meanwhile is left to the reconnection's own resume", async () => {
  const { socket, made, timers } = await connected({ reconnect: { attempts: 3, initialDelayMs: 100, maxDelayMs: 1000 } });
  socket.open("a");
  await tick();
  made[0].fromServer({ type: "open", stream: 1, token: "t" });
  made[0].drop();
  timers.fire();
  made[1].connect();
  await tick();
  made[1].take();
  made[1].fromServer({ type: "error", stream: 1, code: "busy", message: "retry shortly" });
  made[1].drop(); // now two timers: the retry's and the reconnection's
  const [[retryId, retry]] = timers.pending;
  timers.pending.delete(retryId);
  retry.fn(); // the retry finds its connection gone: nothing sent
  timers.fire();
  made[2].connect();
  await tick();
  assert.deepEqual(made[2].take(), [{ type: "resume", stream: 1, after: 0, token: "t" }]);
  assert.deepEqual(made[1].take(), []);
});

test("a stream without a resume token fails with connection_closed; a queued open is sent after the resumes", async () => {
  const { socket, made, timers } = await connected();
  const acked = socket.open("a", { credit: null });
  const unacked = socket.open("b", { credit: null });
  await tick();
  made[0].fromServer({ type: "open", stream: 1, token: "ta" });
  made[0].drop();
  assert.equal(unacked.state, "error");
  assert.equal(unacked.error.code, "connection_closed");
  assert.match(unacked.error.message, /acknowledged/);
  assert.equal(acked.state, "open");
  const later = socket.open("c", { credit: null }); // while reconnecting: queued
  timers.fire();
  made[1].connect();
  await tick();
  assert.deepEqual(made[1].take(), [
    { type: "resume", stream: 1, after: 0, token: "ta" },
    { type: "open", stream: 3, text: "c" },
  ]);
  made[1].fromServer({ type: "open", stream: 1, token: "ta" });
  await tick();
  assert.deepEqual(made[1].take(), [], "not credit-based: no grant");
  assert.equal(later.state, "opening");
});

test("close() by the application does not reconnect; nor does a drop once every stream ended", async () => {
  const one = await connected();
  const s = one.socket.open("a");
  await tick();
  one.made[0].fromServer({ type: "open", stream: 1, token: "ta" });
  one.socket.close();
  assert.equal(one.made.length, 1);
  assert.equal(one.timers.pending.size, 0);
  await assert.rejects(s.finished, (error) => error.code === "connection_closed");
  assert.deepEqual(one.events, [["close"]]);

  const two = await connected();
  const t = two.socket.open("b");
  await tick();
  two.made[0].fromServer({ type: "open", stream: 1, token: "tb" });
  two.made[0].fromServer({ type: "end", stream: 1, seq: 0 });
  two.made[0].drop();
  assert.equal(t.state, "ended");
  assert.equal(two.timers.pending.size, 0);
  assert.equal(two.socket.closed, true);
  assert.deepEqual(two.events, [["close"]]);
});

test("attempts exhausted: backoff grows to its bound, then every stream fails with connection_closed", async () => {
  const { socket, made, timers, events } = await connected({
    reconnect: { attempts: 4, initialDelayMs: 100, maxDelayMs: 300 },
    random: () => 0, // the bottom of the jitter range: half the delay
  });
  const a = socket.open("a");
  const b = socket.open("b");
  await tick();
  made[0].fromServer({ type: "open", stream: 1, token: "ta" });
  made[0].fromServer({ type: "open", stream: 2, token: "tb" });
  made[0].drop();
  const delays = [];
  for (let i = 0; i < 4; i++) {
    delays.push(timers.fire());
    made.at(-1).close(1006); // the server is not there
  }
  assert.deepEqual(delays, [50, 100, 150, 150]);
  assert.equal(made.length, 5);
  assert.equal(timers.pending.size, 0);
  for (const stream of [a, b]) {
    assert.equal(stream.state, "error");
    assert.equal(stream.error.code, "connection_closed");
    assert.match(stream.error.message, /gave up after 4/);
  }
  assert.equal(socket.closed, true);
  assert.deepEqual(events.map((e) => e[0]), ["reconnecting", "reconnecting", "reconnecting", "reconnecting", "close"]);
  assert.throws(() => socket.open("c"), StreamFailure);
});

test("cancel while reconnecting ends the stream here; it is not resumed and nothing is sent for it", async () => {
  const { socket, made, timers } = await connected();
  const kept = socket.open("a", { credit: null });
  const dropped = socket.open("b", { credit: null });
  await tick();
  made[0].fromServer({ type: "open", stream: 1, token: "ta" });
  made[0].fromServer({ type: "open", stream: 2, token: "tb" });
  made[0].drop();
  dropped.cancel();
  assert.equal(dropped.state, "cancelled");
  await dropped.finished;
  timers.fire();
  made[1].connect();
  await tick();
  assert.deepEqual(made[1].take(), [{ type: "resume", stream: 1, after: 0, token: "ta" }]);
  assert.equal(kept.state, "open");

  // Cancelled after the resume went out but before its answer: cancel is sent (again on the
  // answer, in case the server did not know the stream yet), and no credit.
  kept.cancel();
  await tick();
  assert.deepEqual(made[1].take(), [{ type: "cancel", stream: 1 }]);
  made[1].fromServer({ type: "open", stream: 1, token: "ta" });
  made[1].records([1, 1, [1]]);
  await tick();
  assert.deepEqual(made[1].take(), [{ type: "cancel", stream: 1 }]);
  assert.equal(kept.stats.chunks, 0);
});

test("cancelling every stream while reconnecting stops reconnecting", async () => {
  const { socket, made, timers, events } = await connected();
  const s = socket.open("a");
  await tick();
  made[0].fromServer({ type: "open", stream: 1, token: "ta" });
  made[0].drop();
  s.cancel();
  timers.fire();
  assert.equal(made.length, 1, "no connection for nothing");
  assert.equal(socket.closed, true);
  assert.deepEqual(events.map((e) => e[0]), ["reconnecting", "close"]);
});

test("a connection that opens and drops again uses up attempts; one that answers resets them", async () => {
  const { socket, made, timers } = await connected({ reconnect: { attempts: 2 } });
  const s = socket.open("a", { credit: null });
  await tick();
  made[0].fromServer({ type: "open", stream: 1, token: "ta" });
  made[0].drop();
  timers.fire();
  made[1].connect();
  made[1].drop(); // before any answer: the second attempt
  timers.fire();
  made[2].connect();
  made[2].fromServer({ type: "open", stream: 1, token: "ta" }); // answered: attempts reset
  made[2].records([1, 1, [1]]);
  made[2].drop();
  assert.equal(timers.fire(), 250, "counted from the first attempt again");
  made[3].connect();
  await tick();
  assert.deepEqual(made[3].take(), [{ type: "resume", stream: 1, after: 1, token: "ta" }]);
  assert.equal(s.stats.reconnects, 3);
  assert.equal(s.state, "open");
});

test("reconnect: false, and a WebSocket object as the target, close as before", async () => {
  const { socket, made, timers } = await connected({ reconnect: false });
  const s = socket.open("a");
  await tick();
  made[0].fromServer({ type: "open", stream: 1, token: "ta" });
  made[0].drop();
  assert.equal(timers.pending.size, 0);
  await assert.rejects(s.finished, (error) => error.code === "connection_closed");

  const { FakeWebSocket } = fakeWebSocketClass();
  const ws = new FakeWebSocket("ws://x/ws");
  ws.connect();
  const timers2 = fakeTimers();
  const given = new DiaprotoSocket(ws, { timers: timers2 });
  const t = given.open("b");
  await tick();
  ws.fromServer({ type: "open", stream: 1, token: "tb" });
  ws.drop();
  assert.equal(timers2.pending.size, 0);
  await assert.rejects(t.finished, (error) => error.code === "connection_closed");
});

test("a server that no longer selects diaproto.v1 is a failed attempt", async () => {
  const { socket, made, timers } = await connected({ reconnect: { attempts: 1 } });
  const s = socket.open("a");
  await tick();
  made[0].fromServer({ type: "open", stream: 1, token: "ta" });
  made[0].drop();
  timers.fire();
  made[1].readyState = 1;
  made[1].protocol = "chat";
  made[1].emit("open");
  assert.deepEqual(made[1].sent, []);
  assert.equal(s.state, "error");
  assert.equal(s.error.code, "connection_closed");
  assert.equal(socket.closed, true);
});
