// The TypeScript MCP SDK as a client of an MCP server; tests/interop/mcp/test_sdk_node.py asserts on the
// one JSON line this prints.
//
//   node client.mjs http <base-url>   Streamable HTTP at <base>/mcp: initialize, tools/list,
//                                     speak with onprogress, list_voices, cancel with an
//                                     AbortSignal, resume with a resumptionToken
//   node client.mjs http <base-url> settle
//                                     the same, but the resume waits until the dropped call's
//                                     generation has ended (the SDK's own server: see resume())
//   node client.mjs ws <base-url>     WebSocketClientTransport at ws://<host>/mcp: initialize,
//                                     tools/list, speak with onprogress, cancel
//
// GET <base>/metrics (gauge diaproto_active_generations) shows whether a cancelled generation
// stopped; it is read while this client is still connected, so a dropped connection cannot be
// what stopped it.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { WebSocketClientTransport } from '@modelcontextprotocol/sdk/client/websocket.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

const [mode, base, resumeWhen] = process.argv.slice(2);
const LONG_TEXT = Array.from({ length: 400 }, (_, i) => `word${i}`).join(' ');
const CLIENT_INFO = { name: 'diaproto-tests-node', version: '0' };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function activeGenerations() {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('diaproto_active_generations'));
  return line === undefined ? null : Number(line.trim().split(/\s+/).pop());
}

// Polls (bounded, 50 ms apart) until the gauge is 0; returns the last value read.
async function settledGenerations(polls = 100) {
  let value = await activeGenerations();
  for (let i = 0; i < polls && value !== 0; i++) {
    await sleep(50);
    value = await activeGenerations();
  }
  return value;
}

// The WAV of a speak result: inline (AudioContent) or, past the inline limit, behind its link.
async function audioOf(result) {
  const block = result.content.find((c) => c.type === 'audio' || c.type === 'resource_link');
  if (block?.type === 'audio') return { mimeType: block.mimeType, wav: Buffer.from(block.data, 'base64') };
  if (block?.type === 'resource_link') {
    return { mimeType: block.mimeType, wav: Buffer.from(await (await fetch(block.uri)).arrayBuffer()) };
  }
  return { mimeType: null, wav: null };
}

async function describe(result) {
  const { mimeType, wav } = await audioOf(result);
  return {
    contentTypes: result.content.map((c) => c.type),
    audioMimeType: mimeType,
    audioRiff: wav ? wav.subarray(0, 4).toString('latin1') : null,
    isError: result.isError ?? false,
  };
}

async function speakWithProgress(client) {
  const progress = [];
  const result = await client.callTool(
    { name: 'speak', arguments: { text: 'hello from the typescript sdk' } },
    CallToolResultSchema,
    { onprogress: (p) => progress.push(p.progress) },
  );
  return { progress, ...(await describe(result)) };
}

// Aborts a long speak once it is generating: the SDK sends notifications/cancelled.
async function cancelSpeak(client) {
  const controller = new AbortController();
  let generating;
  const firstProgress = new Promise((resolve) => (generating = resolve));
  const call = client
    .callTool({ name: 'speak', arguments: { text: LONG_TEXT } }, CallToolResultSchema, {
      signal: controller.signal,
      onprogress: () => generating(),
    })
    .then(
      () => null,
      (e) => String(e?.message ?? e),
    );
  await Promise.race([firstProgress, sleep(10000)]);
  const activeBeforeCancel = await activeGenerations();
  controller.abort('test cancels');
  const error = await call;
  return { activeBeforeCancel, error, activeAfterCancel: await settledGenerations() };
}

// Drops the connection mid-call (not a cancellation in 2025-11-25), then resumes the same
// request on a new transport with the session id and the last resumption token (GET with
// Last-Event-ID); the server must replay the rest of that stream, ending with the result.
// With `settle` the resume waits until the dropped call's generation has ended: the SDK's server
// replays only if it has already noticed the dropped stream (else it keeps routing the live tail,
// the result included, to the dead one; its own comment calls that window pre-existing), and
// once the call has ended the result is in its event store, so the replay alone carries it.
async function resume(url, client, transport, settle) {
  const tokens = [];
  let progressSeen = 0;
  let reachedToken;
  const gotTokens = new Promise((resolve) => (reachedToken = resolve));
  const first = client
    .callTool({ name: 'speak', arguments: { text: 'resume ' + LONG_TEXT.slice(0, 120) } }, CallToolResultSchema, {
      onprogress: () => {
        progressSeen += 1;
      },
      onresumptiontoken: (token) => {
        tokens.push(token);
        if (tokens.length >= 3) reachedToken();
      },
    })
    .catch((e) => String(e?.message ?? e));
  await Promise.race([gotTokens, sleep(5000)]);
  const sessionId = transport.sessionId;
  const protocolVersion = transport.protocolVersion;
  await transport.close();
  await first;
  if (tokens.length === 0) return { tokens: 0, resumed: false, reason: 'no resumption token' };
  if (settle) await settledGenerations(400);

  const transport2 = new StreamableHTTPClientTransport(url, { sessionId });
  const client2 = new Client(CLIENT_INFO);
  await client2.connect(transport2);
  transport2.setProtocolVersion(protocolVersion);
  const moreTokens = [];
  const result = await client2.request(
    { method: 'tools/call', params: { name: 'speak', arguments: {} } },
    CallToolResultSchema,
    {
      resumptionToken: tokens[tokens.length - 1],
      onresumptiontoken: (token) => moreTokens.push(token),
      timeout: 20000,
    },
  );
  await transport2.terminateSession();
  await client2.close();
  return { tokens: tokens.length, resumedTokens: moreTokens.length, resumed: true, ...(await describe(result)) };
}

async function runHttp() {
  const url = new URL(`${base}/mcp`);
  const transport = new StreamableHTTPClientTransport(url);
  const client = new Client(CLIENT_INFO);
  await client.connect(transport);
  const out = {
    transport: 'streamable-http',
    protocolVersion: transport.protocolVersion,
    sessionId: transport.sessionId !== undefined,
    serverName: client.getServerVersion()?.name ?? null,
  };
  out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
  out.speak = await speakWithProgress(client);
  const voices = await client.callTool({ name: 'list_voices', arguments: {} });
  out.voices = voices.structuredContent?.voices?.map((v) => v.id) ?? null;
  out.ping = await client.ping();
  out.cancel = await cancelSpeak(client);
  out.resume = await resume(url, client, transport, resumeWhen === 'settle');
  return out;
}

async function runWs() {
  if (typeof globalThis.WebSocket === 'undefined') {
    throw new Error('no global WebSocket: run node >= 22 or node --experimental-websocket');
  }
  const url = new URL(`${base.replace(/^http/, 'ws')}/mcp`);
  const transport = new WebSocketClientTransport(url);
  const client = new Client(CLIENT_INFO);
  await client.connect(transport);
  const out = { transport: 'websocket', serverName: client.getServerVersion()?.name ?? null };
  out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
  out.speak = await speakWithProgress(client);
  out.ping = await client.ping();
  out.cancel = await cancelSpeak(client);
  await client.close();
  return out;
}

try {
  const out = mode === 'ws' ? await runWs() : await runHttp();
  console.log(JSON.stringify({ ok: true, ...out }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e?.stack ?? e) }));
}
process.exit(0);
