// McpClient over WebSocket (subprotocol `mcp`) against a fake WebSocket whose "server" speaks
// JSON-RPC. No dependencies.
import { test } from "node:test";
import assert from "node:assert/strict";

import { McpClient, McpError, McpTransportError, MCP_SUBPROTOCOL } from "../src/mcp.js";

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** A WebSocket stand-in: the constructor is what the client gets; `handle` plays the server. */
function fakeWebSocket({ protocol = "mcp", handle }) {
  const sockets = [];
  class FakeWebSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.protocol = "";
      this.binaryType = "blob";
      this.sent = [];
      this.closedWith = null;
      this.listeners = new Map();
      sockets.push(this);
      setImmediate(() => {
        this.readyState = 1;
        this.protocol = protocol;
        this.emit("open");
      });
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
      assert.equal(typeof text, "string", "one JSON-RPC message per text frame");
      const message = JSON.parse(text);
      this.sent.push(message);
      handle(message, this);
    }
    close(code = 1005, reason = "") {
      if (this.readyState === 3) return;
      this.closedWith = { code, reason };
      this.readyState = 3;
      setImmediate(() => this.emit("close", { code }));
    }
    reply(message) {
      this.emit("message", { data: JSON.stringify({ jsonrpc: "2.0", ...message }) });
    }
  }
  return { FakeWebSocket, sockets };
}

/** A server: initialize, tools/list, ping, and `speak` streaming `chunks` updates. */
function serverHandler(extra = () => false) {
  return (message, ws) => {
    if (extra(message, ws)) return;
    const { id, method, params } = message;
    if (method === "initialize") {
      ws.reply({ id, result: { protocolVersion: "2025-06-18", capabilities: { tools: {} }, serverInfo: { name: "fake", version: "1" } } });
    } else if (method === "tools/list") {
      ws.reply({ id, result: params.cursor ? { tools: [{ name: "b" }] } : { tools: [{ name: "a" }], nextCursor: "p2" } });
    } else if (method === "ping") {
      ws.reply({ id, result: {} });
    } else if (method === "tools/call" && params.name === "speak") {
      const { progressToken, partialResultToken } = params._meta;
      for (let i = 1; i <= params.arguments.chunks; i++) {
        ws.reply({ method: "notifications/progress", params: { progressToken, progress: i, total: params.arguments.chunks } });
        ws.reply({ method: "notifications/tools/partial_result", params: { partialResultToken, seq: i - 1, content: [{ type: "text", text: `part ${i}` }] } });
      }
      ws.reply({ id, result: { content: [{ type: "text", text: "all" }] } });
    } else if (method === "tools/call" && params.name === "broken") {
      ws.reply({ id, error: { code: -32602, message: "bad arguments", data: { field: "text" } } });
    }
  };
}

const connect = (FakeWebSocket, options = {}) =>
  McpClient.connect("ws://127.0.0.1:1/mcp", { WebSocket: FakeWebSocket, clientInfo: { name: "t", version: "0" }, ...options });

test("connect offers the mcp subprotocol, initializes, and accepts the server's version", async () => {
  const { FakeWebSocket, sockets } = fakeWebSocket({ handle: serverHandler() });
  const client = await connect(FakeWebSocket, { capabilities: { roots: {} } });
  const [ws] = sockets;
  assert.deepEqual(ws.protocols, [MCP_SUBPROTOCOL]);
  assert.equal(ws.binaryType, "arraybuffer");
  assert.deepEqual(ws.sent.map((m) => m.method), ["initialize", "notifications/initialized"]);
  assert.deepEqual(ws.sent[0].params, {
    protocolVersion: "2025-11-25",
    capabilities: { roots: {}, partialResults: {}, experimental: { partialResults: {} } },
    clientInfo: { name: "t", version: "0" },
  });
  assert.equal(client.protocolVersion, "2025-06-18");
  assert.deepEqual((await client.listTools()).tools, [{ name: "a" }, { name: "b" }], "pages are followed");
  await client.ping();
  await client.close();
  assert.equal(ws.closedWith.code, 1000);
});

test("a server that does not select mcp, or picks an unknown version, is refused", async () => {
  const wrong = fakeWebSocket({ protocol: "", handle: serverHandler() });
  await assert.rejects(connect(wrong.FakeWebSocket), /selected subprotocol none, not 'mcp'/);
  assert.deepEqual(wrong.sockets[0].sent, []);
  const odd = fakeWebSocket({
    handle: serverHandler((m, ws) => {
      if (m.method !== "initialize") return false;
      ws.reply({ id: m.id, result: { protocolVersion: "1999-01-01", capabilities: {}, serverInfo: { name: "x", version: "1" } } });
      return true;
    }),
  });
  await assert.rejects(connect(odd.FakeWebSocket), /protocol version "1999-01-01"/);
});

test("callTool: progress and partial results in order, duplicates dropped, then the result", async () => {
  const { FakeWebSocket, sockets } = fakeWebSocket({
    handle: serverHandler((m, ws) => {
      if (m.params?.name !== "dup") return false;
      const { progressToken, partialResultToken } = m.params._meta;
      const progress = (p) => ws.reply({ method: "notifications/progress", params: { progressToken, progress: p } });
      const partial = (seq) => ws.reply({ method: "notifications/tools/partial_result", params: { partialResultToken, seq, content: [] } });
      progress(1), partial(0), progress(1), partial(0), progress(2), partial(1), progress(0.5);
      // Someone else's token: ignored.
      ws.reply({ method: "notifications/tools/partial_result", params: { partialResultToken: "forged", seq: 5, content: [] } });
      ws.reply({ id: m.id, result: { content: [] } });
      progress(3); // after completion: nothing
      return true;
    }),
  });
  const client = await connect(FakeWebSocket);
  const call = client.callTool("speak", { chunks: 3 });
  const updates = [];
  for await (const update of call) updates.push(update);
  assert.deepEqual(updates, [
    { type: "progress", progress: 1, total: 3, message: null },
    { type: "partial", content: [{ type: "text", text: "part 1" }], seq: 0 },
    { type: "progress", progress: 2, total: 3, message: null },
    { type: "partial", content: [{ type: "text", text: "part 2" }], seq: 1 },
    { type: "progress", progress: 3, total: 3, message: null },
    { type: "partial", content: [{ type: "text", text: "part 3" }], seq: 2 },
  ]);
  assert.deepEqual(await call.result, { content: [{ type: "text", text: "all" }] });
  const request = sockets[0].sent.find((m) => m.method === "tools/call");
  assert.equal(request.params._meta.progressToken, call.progressToken);
  assert.equal(request.params._meta.partialResultToken, call.progressToken);
  assert.deepEqual(request.params._meta["io.modelcontextprotocol/clientCapabilities"], { partialResults: {} });

  const dup = client.callTool("dup", {});
  const seen = [];
  for await (const update of dup) seen.push(update.type === "progress" ? `p${update.progress}` : `s${update.seq}`);
  assert.deepEqual(seen, ["p1", "s0", "p2", "s1"]);
  await client.close();
});

test("partialResults: false leaves SEP-2998 out of initialize and of the call", async () => {
  const { FakeWebSocket, sockets } = fakeWebSocket({ handle: serverHandler() });
  const client = await connect(FakeWebSocket, { partialResults: false });
  assert.deepEqual(sockets[0].sent[0].params.capabilities, {});
  const call = client.callTool("speak", { chunks: 1 });
  await call.result;
  const meta = sockets[0].sent.find((m) => m.method === "tools/call").params._meta;
  assert.deepEqual(Object.keys(meta), ["progressToken"]);
  await client.close();
});

test("cancel sends notifications/cancelled, rejects result with AbortError, stops updates", async () => {
  let callId = null;
  const { FakeWebSocket, sockets } = fakeWebSocket({
    handle: serverHandler((m, ws) => {
      if (m.params?.name !== "slow") return false;
      callId = m.id;
      ws.reply({ method: "notifications/progress", params: { progressToken: m.params._meta.progressToken, progress: 1 } });
      return true;
    }),
  });
  const client = await connect(FakeWebSocket);
  const call = client.callTool("slow", {});
  const updates = [];
  for await (const update of call) {
    updates.push(update);
    call.cancel("stop please");
    call.cancel("twice is harmless");
  }
  assert.equal(updates.length, 1);
  await assert.rejects(call.result, (error) => error.name === "AbortError" && /stop please/.test(error.message));
  await tick();
  const cancels = sockets[0].sent.filter((m) => m.method === "notifications/cancelled");
  assert.deepEqual(cancels.map((m) => m.params), [{ requestId: callId, reason: "stop please" }]);
  // A late response for the cancelled request changes nothing.
  sockets[0].reply({ id: callId, result: { content: [] } });
  assert.equal(call.state, "cancelled");

  const controller = new AbortController();
  const second = client.callTool("slow", {}, { signal: controller.signal });
  controller.abort();
  await assert.rejects(second.result, { name: "AbortError" });
  await tick();
  assert.equal(sockets[0].sent.filter((m) => m.method === "notifications/cancelled").at(-1).params.requestId, second.requestId);

  const ping = new AbortController();
  const pending = client.request("tools/call", { name: "slow", arguments: {}, _meta: { progressToken: "x" } }, { signal: ping.signal });
  ping.abort();
  await assert.rejects(pending, { name: "AbortError" });
  await client.close();
});

test("a JSON-RPC error rejects with McpError carrying code, message and data", async () => {
  const { FakeWebSocket } = fakeWebSocket({ handle: serverHandler() });
  const client = await connect(FakeWebSocket);
  const call = client.callTool("broken", {});
  await assert.rejects(call.result, (error) => {
    assert.ok(error instanceof McpError);
    assert.equal(error.code, -32602);
    assert.equal(error.message, "bad arguments");
    assert.deepEqual(error.data, { field: "text" });
    return true;
  });
  await assert.rejects(async () => {
    for await (const update of call) assert.fail(`unexpected ${update}`);
  }, McpError, "the iterator throws the failure");
  await client.close();
});

test("the server's ping is answered; other server requests get method-not-found", async () => {
  const { FakeWebSocket, sockets } = fakeWebSocket({ handle: serverHandler() });
  const client = await connect(FakeWebSocket);
  const notes = [];
  client.onnotification = (m) => notes.push(m.method);
  const ws = sockets[0];
  ws.reply({ id: "s1", method: "ping" });
  ws.reply({ id: "s2", method: "sampling/createMessage", params: {} });
  ws.reply({ method: "notifications/message", params: { level: "info", data: "hi" } });
  await tick();
  const replies = ws.sent.filter((m) => m.id === "s1" || m.id === "s2");
  assert.deepEqual(replies[0], { jsonrpc: "2.0", id: "s1", result: {} });
  assert.equal(replies[1].error.code, -32601);
  assert.deepEqual(notes, ["notifications/message"]);
  await client.close();
});

test("a binary frame is reported and closes the connection with 1003; pending calls fail", async () => {
  const { FakeWebSocket, sockets } = fakeWebSocket({
    handle: serverHandler((m) => m.params?.name === "slow"),
  });
  const client = await connect(FakeWebSocket);
  const errors = [];
  client.onerror = (error) => errors.push(error);
  const call = client.callTool("slow", {});
  await tick();
  sockets[0].emit("message", { data: "{not json" });
  assert.equal(errors.length, 1, "a text frame that is not JSON is reported and skipped");
  assert.equal(sockets[0].closedWith, null);
  sockets[0].emit("message", { data: new Uint8Array([1, 2, 3]).buffer });
  assert.ok(errors[1] instanceof McpTransportError);
  assert.match(errors[1].message, /binary/);
  assert.equal(sockets[0].closedWith.code, 1003);
  await assert.rejects(call.result, (error) => error instanceof McpTransportError && /closed/.test(error.message));
  await assert.rejects(client.ping(), McpTransportError);
  await client.close();
});
