// The SSE parser and SseSpeechStream against a fake fetch.
import { test } from "node:test";
import assert from "node:assert/strict";

import { SseParser, SseSpeechStream, StreamFailure, eventSeq, speakSse } from "../src/diaproto.js";

const enc = new TextEncoder();
const b64 = (bytes) => Buffer.from(bytes).toString("base64");

const SAMPLE =
  "\ufeff: heartbeat\r\n" +
  "retry: 2500\n\n" +
  "id: 1\r\nevent: data\r\ndata: " + b64([1, 2, 3]) + "\r\n\r\n" +
  "event: data\rid: 2\rdata: " + b64([4]) + "\r\r" +
  "event: note\ndata: first line\ndata:second line — é 🎙\n\n" +
  "id: 3\n\n" + // no data: not dispatched, but the id counts
  "id: a\0b\nevent: data\ndata\n\n" + // id with NUL ignored; empty data line
  "event: data\nid: 9\ndata: " + b64([9]); // cut off: never dispatched

function parseSplit(bytes, cuts) {
  const parser = new SseParser();
  const events = [];
  let start = 0;
  for (const cut of [...cuts, bytes.length]) {
    events.push(...parser.feed(bytes.subarray(start, cut)));
    start = cut;
  }
  return { events, lastEventId: parser.lastEventId, retry: parser.retry };
}

test("the parser follows the WHATWG rules", () => {
  const { events, lastEventId, retry } = parseSplit(enc.encode(SAMPLE), []);
  assert.deepEqual(events, [
    { event: "data", data: b64([1, 2, 3]), id: "1" },
    { event: "data", data: b64([4]), id: "2" },
    { event: "note", data: "first line\nsecond line — é 🎙", id: "2" },
    { event: "data", data: "", id: "3" },
  ]);
  assert.equal(lastEventId, "3", "the cut-off block's id does not count");
  assert.equal(retry, 2500);
});

test("the parser gives the same events however the bytes are split", () => {
  const bytes = enc.encode(SAMPLE);
  const whole = parseSplit(bytes, []);
  const everyByte = parseSplit(bytes, Array.from({ length: bytes.length - 1 }, (_, i) => i + 1));
  assert.deepEqual(everyByte, whole);
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let round = 0; round < 200; round++) {
    const cuts = [...new Set(Array.from({ length: 1 + Math.floor(random() * 12) }, () => 1 + Math.floor(random() * (bytes.length - 1))))].sort((a, b) => a - b);
    assert.deepEqual(parseSplit(bytes, cuts), whole, `cuts ${cuts}`);
  }
});

/** A Response whose body yields `parts` (strings), then ends or fails. */
function sseResponse(parts, { fail = false, status = 200, type = "text/event-stream; charset=utf-8", pulls } = {}) {
  let i = 0;
  const body = new ReadableStream(
    {
      pull(controller) {
        if (pulls) pulls.count += 1;
        if (i < parts.length) controller.enqueue(enc.encode(parts[i++]));
        else if (fail) controller.error(new TypeError("network error"));
        else controller.close();
      },
    },
    { highWaterMark: 0 },
  );
  return new Response(body, { status, headers: { "content-type": type } });
}

// The server's ids: the stream's epoch, a dot, the sequence number.
const EPOCH = "0a1b2c3d";
const dataEvent = (seq, bytes) => `event: data\nid: ${EPOCH}.${seq}\ndata: ${b64(bytes)}\n\n`;
const endEvent = (seq) => `event: end\ndata: {"type":"end","stream":1,"seq":${seq}}\n\n`;

test("a dropped connection resumes with Last-Event-ID, honours retry:, and skips resent chunks", async () => {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, headers: { ...init.headers }, method: init.method });
    if (calls.length === 1) {
      // chunk 3 is cut off before its blank line: it must be asked for again
      return sseResponse(["retry: 5\n\n", dataEvent(1, [1]), dataEvent(2, [2]), `event: data\nid: ${EPOCH}.3\ndata: AwM=`], { fail: true });
    }
    return sseResponse([dataEvent(2, [2]), dataEvent(3, [3, 3]), dataEvent(4, [4]), endEvent(4)]);
  };
  const stream = new SseSpeechStream("http://x/v1/stream?text=hi&id=r1", { fetch, maxRetries: 2 });
  const got = [];
  for await (const chunk of stream) got.push([...chunk]);
  assert.deepEqual(got, [[1], [2], [3, 3], [4]]);
  assert.equal(calls.length, 2);
  assert.equal(calls[0].headers["Last-Event-ID"], undefined);
  assert.equal(calls[1].headers["Last-Event-ID"], `${EPOCH}.2`, "echoed verbatim, epoch and all");
  assert.equal(calls[1].headers.Accept, "text/event-stream");
  assert.equal(stream.retryMs, 5);
  assert.equal(stream.stats.reconnects, 1);
  assert.equal(stream.stats.chunks, 4);
  assert.equal(stream.state, "ended");
  assert.equal(stream.lastSeq, 4);
});

test("eventSeq reads the sequence number an id ends with", () => {
  assert.equal(eventSeq("0a1b2c3d.42"), 42);
  assert.equal(eventSeq("7"), 7, "a bare number");
  for (const id of [null, undefined, "", "0a1b2c3d.", "0a1b2c3d.x1", "1e3", "a.-1"]) {
    assert.ok(Number.isNaN(eventSeq(id)), `${id}`);
  }
});

test("reconnections are bounded", async () => {
  let calls = 0;
  const fetch = async () => {
    calls += 1;
    throw new TypeError("connection refused");
  };
  const stream = new SseSpeechStream("http://x/v1/stream", { fetch, maxRetries: 2, retryMs: 1 });
  await assert.rejects(stream.run(), (e) => e instanceof StreamFailure && e.code === "network");
  assert.equal(calls, 3, "the first attempt and two retries");
});

test("an HTTP error or a wrong content type fails at once", async () => {
  for (const [options, code] of [[{ status: 503 }, "http_error"], [{ type: "text/html" }, "bad_response"]]) {
    let calls = 0;
    const fetch = async () => (calls++, sseResponse([], options));
    const stream = new SseSpeechStream("http://x/", { fetch, retryMs: 1 });
    await assert.rejects(stream.run(), (e) => e.code === code);
    assert.equal(calls, 1);
  }
});

test("an error event fails the stream with its code; unknown events are ignored", async () => {
  const fetch = async () =>
    sseResponse([
      "event: progress\ndata: 50%\n\n",
      dataEvent(1, [1]),
      'event: error\ndata: {"type":"error","stream":1,"code":"replay_gap","message":"too old"}\n\n',
    ]);
  const stream = new SseSpeechStream("http://x/", { fetch });
  const got = [];
  stream.onchunk = (chunk) => got.push([...chunk]);
  await assert.rejects(stream.run(), (e) => e.code === "replay_gap" && e.message === "too old");
  assert.deepEqual(got, [[1]]);
  assert.equal(stream.state, "error");
});

test("the network is read only as fast as the consumer pulls (backpressure)", async () => {
  const pulls = { count: 0 };
  const parts = Array.from({ length: 100 }, (_, i) => dataEvent(i + 1, [i]));
  const fetch = async () => sseResponse([...parts, endEvent(100)], { pulls });
  const stream = new SseSpeechStream("http://x/", { fetch });
  const it = stream[Symbol.asyncIterator]();
  const first = await it.next();
  assert.deepEqual([...first.value], [0]);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.ok(pulls.count <= 3, `read ${pulls.count} parts for one chunk`);
  await it.return();
  assert.equal(stream.state, "cancelled");
});

test("speakSse builds the GET (with a resume id) and the POST requests", async () => {
  const calls = [];
  const fetch = async (url, init) => (calls.push([String(url), init]), sseResponse([endEvent(0)]));
  await speakSse("http://h:1/", "Hello there", { voice: "S2", speed: 1.25, id: "abc", fetch }).run();
  const get = new URL(calls[0][0]);
  assert.equal(get.pathname, "/v1/stream");
  assert.deepEqual(Object.fromEntries(get.searchParams), { text: "Hello there", voice: "S2", speed: "1.25", id: "abc" });
  assert.equal(calls[0][1].method, "GET");
  await speakSse("http://h:1/", "Hi", { method: "POST", fetch }).run();
  assert.equal(calls[1][0], "http://h:1/v1/stream");
  assert.equal(calls[1][1].method, "POST");
  assert.deepEqual(JSON.parse(calls[1][1].body), { text: "Hi", voice: "S1", speed: 1 });
  assert.equal(calls[1][1].headers["Content-Type"], "application/json");
  assert.equal(calls[1][1].headers.Accept, "text/event-stream");
});
