// McpClient over Streamable HTTP against the official TypeScript SDK's server
// (@modelcontextprotocol/sdk, a devDependency: `npm ci` first). Skipped loudly without it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { randomUUID } from "node:crypto";

import { McpClient, McpError, PARTIAL_RESULT_METHOD } from "../src/mcp.js";

let sdk = null;
try {
  const [{ McpServer }, { StreamableHTTPServerTransport }, { isInitializeRequest }, zod] = await Promise.all([
    import("@modelcontextprotocol/sdk/server/mcp.js"),
    import("@modelcontextprotocol/sdk/server/streamableHttp.js"),
    import("@modelcontextprotocol/sdk/types.js"),
    import("zod"),
  ]);
  sdk = { McpServer, StreamableHTTPServerTransport, isInitializeRequest, z: zod.z };
} catch (error) {
  console.error(
    `\n*** MCP SDK TESTS SKIPPED: @modelcontextprotocol/sdk is not installed (run \`npm ci\` in clients/js): ${error.message} ***\n`,
  );
}
const SKIP = sdk === null ? "@modelcontextprotocol/sdk not installed: run `npm ci` in clients/js" : false;

/** An EventStore for resumability: ids are `<stream>::<counter>`, replay stays in its stream. */
class MemoryEventStore {
  constructor() {
    this.events = [];
    this.counter = 0;
  }
  async storeEvent(streamId, message) {
    const eventId = `${streamId}::${++this.counter}`;
    this.events.push({ eventId, streamId, n: this.counter, message });
    return eventId;
  }
  async getStreamIdForEventId(eventId) {
    return this.events.find((e) => e.eventId === eventId)?.streamId;
  }
  async replayEventsAfter(lastEventId, { send }) {
    const last = this.events.find((e) => e.eventId === lastEventId);
    if (!last) return "";
    for (const e of this.events) {
      if (e.streamId === last.streamId && e.n > last.n) await send(e.eventId, e.message);
    }
    return last.streamId;
  }
}

const pcm = (i) => Buffer.from(Uint8Array.from({ length: 8 }, (_, k) => (i * 8 + k) & 0xff)).toString("base64");
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function deferred() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, resolve };
}

function buildServer(state) {
  const { McpServer, z } = sdk;
  const server = new McpServer({ name: "sdk-test-server", version: "1.0.0" });

  // Progress (and SEP-2998 partial results when the call opts in), then the whole audio.
  async function stream(extra, i, n) {
    const meta = extra._meta ?? {};
    if (meta.progressToken !== undefined) {
      await extra.sendNotification({
        method: "notifications/progress",
        params: { progressToken: meta.progressToken, progress: i, total: n, message: `chunk ${i}` },
      });
    }
    if (meta.partialResultToken !== undefined && meta["io.modelcontextprotocol/clientCapabilities"]?.partialResults) {
      await extra.sendNotification({
        method: PARTIAL_RESULT_METHOD,
        params: {
          partialResultToken: meta.partialResultToken,
          seq: i - 1,
          content: [{ type: "audio", data: pcm(i), mimeType: "audio/L16;rate=44100" }],
          final: i === n,
        },
      });
    }
  }
  const audio = (n) => ({
    content: [{ type: "audio", data: Buffer.concat(Array.from({ length: n }, (_, i) => Buffer.from(pcm(i + 1), "base64"))).toString("base64"), mimeType: "audio/L16;rate=44100" }],
  });

  server.registerTool(
    "speak",
    { description: "Speak text; streams N chunks", inputSchema: { text: z.string(), chunks: z.number().int().min(1).max(50) } },
    async ({ chunks }, extra) => {
      for (let i = 1; i <= chunks; i++) await stream(extra, i, chunks);
      return audio(chunks);
    },
  );
  server.registerTool(
    "slow",
    { description: "Streams until cancelled", inputSchema: { text: z.string() } },
    async (_args, extra) => {
      for (let i = 1; i <= 2000 && !extra.signal.aborted; i++) {
        await stream(extra, i, 2000);
        await delay(5);
      }
      state.slowAborted.resolve(extra.signal.aborted);
      return audio(1);
    },
  );
  server.registerTool(
    "dropping",
    { description: "Closes its SSE stream half-way", inputSchema: { before: z.number().int(), after: z.number().int() } },
    async ({ before: first, after: rest }, extra) => {
      const n = first + rest;
      for (let i = 1; i <= first; i++) await stream(extra, i, n);
      assert.equal(typeof extra.closeSSEStream, "function", "the SDK offers closeSSEStream with an event store");
      extra.closeSSEStream();
      state.closedStreams += 1;
      for (let i = first + 1; i <= n; i++) await stream(extra, i, n);
      return audio(n);
    },
  );
  return server;
}

const state = {
  transports: new Map(),
  requests: [],
  closedStreams: 0,
  slowAborted: null,
};
let httpServer;
let url;

before(async () => {
  if (SKIP) return;
  const { StreamableHTTPServerTransport, isInitializeRequest } = sdk;
  httpServer = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const text = Buffer.concat(chunks).toString("utf8");
    const body = text ? JSON.parse(text) : undefined;
    state.requests.push({ method: req.method, headers: { ...req.headers }, body });
    const sid = req.headers["mcp-session-id"];
    let transport = sid ? state.transports.get(sid) : undefined;
    if (!transport) {
      if (sid || req.method !== "POST" || !isInitializeRequest(body)) {
        const status = sid ? 404 : 400;
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32001, message: sid ? "Session not found" : "Bad Request" }, id: null }));
        return;
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        eventStore: new MemoryEventStore(),
        retryInterval: 20,
        onsessioninitialized: (id) => state.transports.set(id, transport),
      });
      transport.onclose = () => {
        if (transport.sessionId) state.transports.delete(transport.sessionId);
      };
      await buildServer(state).connect(transport);
    }
    await transport.handleRequest(req, res, body);
  });
  await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${httpServer.address().port}/mcp`;
});

after(async () => {
  if (SKIP) return;
  for (const transport of state.transports.values()) await transport.close();
  httpServer.closeAllConnections();
  await new Promise((resolve) => httpServer.close(resolve));
});

const connect = () => McpClient.connect(url, { clientInfo: { name: "sdk-test", version: "0" }, retryMs: 5000 });

test("connect negotiates 2025-11-25, echoes the session id and protocol version, lists tools, pings", { skip: SKIP }, async () => {
  const start = state.requests.length;
  const client = await connect();
  try {
    assert.equal(client.protocolVersion, "2025-11-25");
    assert.equal(client.serverInfo.name, "sdk-test-server");
    const sid = client.transport.sessionId;
    assert.ok(sid && state.transports.has(sid));
    const { tools } = await client.listTools();
    assert.deepEqual(tools.map((t) => t.name).sort(), ["dropping", "slow", "speak"]);
    await client.ping();
    const seen = state.requests.slice(start);
    const init = seen[0];
    assert.equal(init.body.method, "initialize");
    assert.deepEqual(init.body.params.capabilities, { partialResults: {}, experimental: { partialResults: {} } });
    assert.match(init.headers.accept, /application\/json/);
    assert.match(init.headers.accept, /text\/event-stream/);
    assert.equal(init.headers["mcp-session-id"], undefined);
    assert.deepEqual(seen.map((r) => r.body?.method), ["initialize", "notifications/initialized", "tools/list", "ping"]);
    for (const later of seen.slice(1)) {
      assert.equal(later.headers["mcp-session-id"], sid);
      assert.equal(later.headers["mcp-protocol-version"], "2025-11-25");
    }
  } finally {
    await client.close();
  }
  const last = state.requests.at(-1);
  assert.equal(last.method, "DELETE", "close ends the session");
  assert.equal(state.transports.size === 0 || !state.transports.has(last.headers["mcp-session-id"]), true);
});

test("callTool streams progress and partial results in order, then the result", { skip: SKIP }, async () => {
  const client = await connect();
  try {
    const call = client.callTool("speak", { text: "Hello.", chunks: 5 });
    const updates = [];
    for await (const update of call) updates.push(update);
    const result = await call.result;
    assert.deepEqual(
      updates.filter((u) => u.type === "progress"),
      [1, 2, 3, 4, 5].map((i) => ({ type: "progress", progress: i, total: 5, message: `chunk ${i}` })),
    );
    const partials = updates.filter((u) => u.type === "partial");
    assert.deepEqual(partials.map((u) => u.seq), [0, 1, 2, 3, 4]);
    assert.deepEqual(partials.map((u) => u.content[0].data), [1, 2, 3, 4, 5].map(pcm));
    assert.equal(partials.at(-1).final, true);
    assert.equal(result.content[0].type, "audio");
    assert.equal(Buffer.from(result.content[0].data, "base64").length, 40);
    assert.equal(call.state, "done");

    // Two calls at once: each gets its own token and only its own updates.
    const a = client.callTool("speak", { text: "a", chunks: 3 });
    const b = client.callTool("speak", { text: "b", chunks: 2 });
    assert.notEqual(a.progressToken, b.progressToken);
    const collect = async (c) => {
      const out = [];
      for await (const u of c) if (u.type === "progress") out.push(u.progress);
      return out;
    };
    assert.deepEqual(await Promise.all([collect(a), collect(b)]), [[1, 2, 3], [1, 2]]);
  } finally {
    await client.close();
  }
});

test("cancel mid-call: notifications/cancelled reaches the tool, result rejects with AbortError", { skip: SKIP }, async () => {
  const client = await connect();
  try {
    for (const how of ["cancel", "signal"]) {
      state.slowAborted = deferred();
      const controller = new AbortController();
      const call = client.callTool("slow", { text: "long" }, { signal: controller.signal });
      const seen = [];
      for await (const update of call) {
        seen.push(update);
        if (seen.length === 3) {
          if (how === "cancel") call.cancel("user pressed stop");
          else controller.abort();
        }
      }
      assert.equal(seen.length, 3, "no update after the cancel");
      await assert.rejects(call.result, { name: "AbortError" });
      assert.equal(call.state, "cancelled");
      assert.equal(await state.slowAborted.promise, true, "the tool's abort signal fired");
      const cancelled = state.requests.findLast((r) => r.body?.method === "notifications/cancelled");
      assert.equal(cancelled.body.params.requestId, call.requestId);
    }
    await client.ping(); // the session is fine afterwards
  } finally {
    await client.close();
  }
});

test("errors: unknown tool, unknown method, bad arguments", { skip: SKIP }, async () => {
  const client = await connect();
  try {
    // The SDK's McpServer reports an unknown tool as a tool error, not a JSON-RPC error.
    const result = await client.callTool("nope", {}).result;
    assert.equal(result.isError, true);
    assert.match(result.content[0].text, /nope not found/);
    await assert.rejects(client.request("no/such/method", {}), (error) => {
      assert.ok(error instanceof McpError);
      assert.equal(error.code, -32601);
      assert.match(error.message, /not found/i);
      return true;
    });
    const bad = await client.callTool("speak", { text: 1, chunks: 2 }).result;
    assert.equal(bad.isError, true);
  } finally {
    await client.close();
  }
});

test("an expired session (404) is re-initialized once and the request goes through", { skip: SKIP }, async () => {
  const client = await connect();
  try {
    const old = client.transport.sessionId;
    await state.transports.get(old).close(); // the server forgets the session
    assert.equal(state.transports.has(old), false);
    const start = state.requests.length;
    const call = client.callTool("speak", { text: "again", chunks: 2 });
    const progress = [];
    for await (const u of call) if (u.type === "progress") progress.push(u.progress);
    assert.deepEqual(progress, [1, 2]);
    assert.equal((await call.result).content[0].type, "audio");
    assert.equal(client.reinitializations, 1);
    assert.notEqual(client.transport.sessionId, old);
    const methods = state.requests.slice(start).map((r) => r.body?.method);
    assert.deepEqual(methods, ["tools/call", "initialize", "notifications/initialized", "tools/call"]);
  } finally {
    await client.close();
  }
});

test("resume: the server closes the SSE stream mid-call; every update arrives exactly once", { skip: SKIP }, async () => {
  const client = await connect();
  try {
    const closedBefore = state.closedStreams;
    const call = client.callTool("dropping", { before: 3, after: 4 });
    const updates = [];
    for await (const update of call) updates.push(update);
    const result = await call.result;
    assert.equal(state.closedStreams, closedBefore + 1);
    assert.deepEqual(updates.filter((u) => u.type === "progress").map((u) => u.progress), [1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(updates.filter((u) => u.type === "partial").map((u) => u.seq), [0, 1, 2, 3, 4, 5, 6]);
    assert.equal(Buffer.from(result.content[0].data, "base64").length, 56);
    assert.ok(client.transport.resumes >= 1);
    assert.equal(client.transport.retryMs, 20, "the server's retry: field was honoured");
    const resume = state.requests.findLast((r) => r.method === "GET");
    assert.match(resume.headers["last-event-id"], /::\d+$/);
    assert.equal(resume.headers["mcp-session-id"], client.transport.sessionId);
  } finally {
    await client.close();
  }
});
