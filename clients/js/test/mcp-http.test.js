// McpClient over Streamable HTTP against a fake fetch: status mapping, JSON and SSE responses,
// resumption (duplicates, retry:, bounded attempts), session expiry. No dependencies.
import { test } from "node:test";
import assert from "node:assert/strict";

import { McpClient, McpTransportError } from "../src/mcp.js";

const enc = new TextEncoder();
const URL_ = "http://127.0.0.1:1/mcp";

/** A Response whose body yields `parts` (strings), then ends (or fails with a network error). */
function sse(parts, { fail = false, headers = {} } = {}) {
  let i = 0;
  const body = new ReadableStream(
    {
      pull(controller) {
        if (i < parts.length) controller.enqueue(enc.encode(parts[i++]));
        else if (fail) controller.error(new TypeError("network error"));
        else controller.close();
      },
    },
    { highWaterMark: 0 },
  );
  return new Response(body, { status: 200, headers: { "content-type": "text/event-stream", ...headers } });
}
const json = (body, status = 200, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
const event = (id, message) => `id: ${id}\nevent: message\ndata: ${JSON.stringify({ jsonrpc: "2.0", ...message })}\n\n`;
const initResult = (id) => ({ jsonrpc: "2.0", id, result: { protocolVersion: "2025-11-25", capabilities: {}, serverInfo: { name: "fake", version: "1" } } });

/** A fake server: `route(request)` answers tools/call etc.; initialize and notifications are built in. */
function fakeServer(route = () => undefined) {
  const log = [];
  let sessions = 0;
  const fetch = async (url, init) => {
    const headers = Object.fromEntries(Object.entries(init.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
    const body = init.body === undefined ? undefined : JSON.parse(init.body);
    const request = { method: init.method, headers, body };
    log.push(request);
    const routed = await route(request, log);
    if (routed !== undefined) return routed;
    if (body?.method === "initialize") return json(initResult(body.id), 200, { "mcp-session-id": `s${++sessions}` });
    if (init.method === "DELETE" || (body && body.id === undefined) || (body && body.method === undefined)) {
      return new Response(null, { status: 202 });
    }
    if (body?.method === "ping") return json({ jsonrpc: "2.0", id: body.id, result: {} });
    return json({ jsonrpc: "2.0", id: body?.id ?? null, error: { code: -32601, message: "Method not found" } }, 200);
  };
  return { fetch, log };
}

const connect = (fetch, options = {}) => McpClient.connect(URL_, { fetch, retryMs: 1, ...options });

test("headers: Accept, Content-Type, then the session id and protocol version; DELETE on close", async () => {
  const { fetch, log } = fakeServer();
  const client = await connect(fetch, { headers: { Authorization: "Bearer t" } });
  await client.ping();
  await client.close();
  assert.deepEqual(log.map((r) => r.method + " " + (r.body?.method ?? "")), ["POST initialize", "POST notifications/initialized", "POST ping", "DELETE "]);
  assert.equal(log[0].headers.accept, "application/json, text/event-stream");
  assert.equal(log[0].headers["content-type"], "application/json");
  assert.equal(log[0].headers["mcp-session-id"], undefined);
  assert.equal(log[0].headers["mcp-protocol-version"], undefined);
  for (const r of log.slice(1)) {
    assert.equal(r.headers["mcp-session-id"], "s1");
    assert.equal(r.headers["mcp-protocol-version"], "2025-11-25");
    assert.equal(r.headers.authorization, "Bearer t");
  }
});

test("HTTP errors reject with the status and the server's message", async () => {
  for (const status of [400, 401, 403, 404, 406, 413, 415, 421]) {
    const { fetch } = fakeServer((r) => json({ jsonrpc: "2.0", id: null, error: { code: -32000, message: `refused ${status}` } }, status));
    await assert.rejects(connect(fetch), (error) => {
      assert.ok(error instanceof McpTransportError);
      assert.equal(error.status, status);
      assert.match(error.message, new RegExp(`^HTTP ${status} \\w.* on POST ${URL_}: refused ${status}$`));
      return true;
    });
  }
  const { fetch } = fakeServer((r) => (r.body?.method === "tools/list" ? new Response("<html>", { status: 200, headers: { "content-type": "text/html" } }) : undefined));
  const client = await connect(fetch);
  await assert.rejects(client.listTools(), /content type 'text\/html'/);
  await client.close();
});

test("an expired session is re-initialized once; a second 404 is an error", async () => {
  let expire = 1;
  const { fetch, log } = fakeServer((r) => {
    if (r.body?.method === "ping" && r.headers["mcp-session-id"] === "s1" && expire-- > 0) return json({}, 404);
    if (r.body?.method === "tools/list") return json({}, 404);
    return undefined;
  });
  const client = await connect(fetch);
  await client.ping();
  assert.equal(client.reinitializations, 1);
  assert.equal(client.transport.sessionId, "s2");
  assert.deepEqual(log.slice(2).map((r) => `${r.body?.method}@${r.headers["mcp-session-id"] ?? "-"}`), [
    "ping@s1",
    "initialize@-",
    "notifications/initialized@s2",
    "ping@s2",
  ]);
  await assert.rejects(client.listTools(), (e) => e.status === 404);
  assert.equal(client.reinitializations, 2, "each expiry is renewed once, then the error stands");
  await client.close();
});

test("an SSE response: priming event, notifications, then the response", async () => {
  const { fetch } = fakeServer((r) => {
    if (r.body?.method !== "tools/call") return undefined;
    const token = r.body.params._meta.progressToken;
    return sse([
      "id: e0\nretry: 7\ndata: \n\n",
      event("e1", { method: "notifications/progress", params: { progressToken: token, progress: 1, total: 2 } }).slice(0, 20),
      event("e1", { method: "notifications/progress", params: { progressToken: token, progress: 1, total: 2 } }).slice(20),
      ": keepalive\n\n",
      event("e2", { method: "notifications/progress", params: { progressToken: token, progress: 2, total: 2 } }),
      event("e3", { id: r.body.id, result: { content: [{ type: "text", text: "ok" }] } }),
    ]);
  });
  const client = await connect(fetch);
  const call = client.callTool("t", {});
  const progress = [];
  for await (const u of call) progress.push(u.progress);
  assert.deepEqual(progress, [1, 2]);
  assert.deepEqual(await call.result, { content: [{ type: "text", text: "ok" }] });
  assert.equal(client.transport.retryMs, 7);
  assert.equal(client.transport.resumes, 0);
  await client.close();
});

test("resume: GET with Last-Event-ID after the retry delay, replayed events skipped", async () => {
  let token;
  let id;
  const progress = (n, eid) => event(eid, { method: "notifications/progress", params: { progressToken: token, progress: n } });
  const partial = (seq, eid) => event(eid, { method: "notifications/tools/partial_result", params: { partialResultToken: token, seq, content: [{ type: "text", text: `${seq}` }] } });
  let gets = 0;
  const { fetch, log } = fakeServer((r) => {
    if (r.body?.method === "tools/call") {
      token = r.body.params._meta.progressToken;
      id = r.body.id;
      // The server closes after retry: (polling), then the network drops mid-event.
      return sse(["id: a0\nretry: 3\ndata: \n\n", progress(1, "a1"), partial(0, "a2")]);
    }
    if (r.method === "GET") {
      gets += 1;
      if (gets === 1) return sse([progress(1, "a1"), partial(0, "a2"), progress(2, "a3"), "id: a4\ndata: {\"jsonrpc\""], { fail: true });
      // A server that replays too much: duplicates (by id) must not reach the iterator.
      return sse([partial(0, "a2"), progress(2, "a3"), partial(1, "a4"), event("a5", { id, result: { content: [] } })]);
    }
    return undefined;
  });
  const client = await connect(fetch, { retryMs: 10_000 });
  const call = client.callTool("t", {});
  const updates = [];
  for await (const u of call) updates.push(u.type === "progress" ? `p${u.progress}` : `s${u.seq}`);
  assert.deepEqual(updates, ["p1", "s0", "p2", "s1"]);
  assert.deepEqual(await call.result, { content: [] });
  const resumes = log.filter((r) => r.method === "GET");
  assert.deepEqual(resumes.map((r) => r.headers["last-event-id"]), ["a2", "a3"]);
  assert.equal(resumes[0].headers.accept, "text/event-stream");
  assert.equal(resumes[0].headers["mcp-session-id"], "s1");
  assert.equal(client.transport.resumes, 2);
  await client.close();
});

test("resumption is bounded, and impossible without an event id", async () => {
  const { fetch, log } = fakeServer((r) => {
    if (r.body?.method === "tools/call" && r.body.params.name === "noid") return sse(["data: {}\n\n"]);
    if (r.body?.method === "tools/call") return sse(["id: x1\ndata: \n\n"]);
    if (r.method === "GET") return sse([": nothing\n\n"]);
    return undefined;
  });
  const client = await connect(fetch, { maxRetries: 2 });
  await assert.rejects(client.callTool("noid", {}).result, /without an event id to resume from/);
  const call = client.callTool("t", {});
  await assert.rejects(call.result, /gave up resuming request \d+ after 2 attempts/);
  assert.equal(log.filter((r) => r.method === "GET").length, 2);
  await client.close();
});

test("cancelling a streamed call posts notifications/cancelled and stops the resume loop", async () => {
  let cancelledWith = null;
  const { fetch } = fakeServer((r, log) => {
    if (r.body?.method === "notifications/cancelled") cancelledWith = r.body.params;
    if (r.body?.method === "tools/call") {
      const token = r.body.params._meta.progressToken;
      return sse(["id: 1\ndata: \n\n", event("2", { method: "notifications/progress", params: { progressToken: token, progress: 1 } })]);
    }
    if (r.method === "GET") assert.fail("no resume after a cancel");
    return undefined;
  });
  const client = await connect(fetch, { retryMs: 50 });
  const call = client.callTool("t", {});
  for await (const u of call) {
    assert.equal(u.progress, 1);
    call.cancel("enough");
  }
  await assert.rejects(call.result, { name: "AbortError", message: "enough" });
  await new Promise((resolve) => setTimeout(resolve, 60)); // past the retry delay: no GET
  assert.deepEqual(cancelledWith, { requestId: call.requestId, reason: "enough" });
  await client.close();
});

test("a 409 on resume (the old stream still registered) is retried; an oversized event is an error", async () => {
  let gets = 0;
  const { fetch, log } = fakeServer((r) => {
    if (r.body?.method === "tools/call" && r.body.params.name === "big") {
      const big = event("2", { id: r.body.id, result: { content: [{ type: "text", text: "x".repeat(5000) }] } });
      return sse(["id: 1\ndata: \n\n", big.slice(0, 4500), big.slice(4500)]); // the bound is on a line still incomplete
    }
    if (r.body?.method === "tools/call") return sse(["id: 1\ndata: \n\n"]);
    if (r.method === "GET") {
      gets += 1;
      if (gets === 1) return json({ jsonrpc: "2.0", id: null, error: { code: -32000, message: "Conflict" } }, 409);
      return sse([event("2", { id: log.find((x) => x.body?.method === "tools/call").body.id, result: { content: [] } })]);
    }
    return undefined;
  });
  const client = await connect(fetch, { maxEventSize: 4096 });
  assert.deepEqual(await client.callTool("t", {}).result, { content: [] });
  assert.equal(gets, 2);
  await assert.rejects(client.callTool("big", {}).result, /SSE line too long \(maxEventSize 4096\)/);
  assert.equal(gets, 2, "not retried as a dropped connection");
  await client.close();
});
