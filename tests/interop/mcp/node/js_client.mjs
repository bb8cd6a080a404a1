// diaproto's own JavaScript MCP client (clients/js/src/mcp.js) against an MCP server;
// tests/interop/mcp/test_mcp_js_client.py asserts on the one JSON line this prints last.
//
//   node js_client.mjs <mode> <base-url>
//     speak    Streamable HTTP: initialize, tools/list, speak with progress + partial results
//     cancel   Streamable HTTP: cancel a long speak once it streams
//     resume   Streamable HTTP: speak; the server drops the stream mid-call; the client resumes
//     ws       WebSocket (subprotocol mcp): speak with progress + partial results, ping, cancel
//     errors   Streamable HTTP: an unknown tool, a bad argument, an expired session
//
// Checkpoints: the script prints `CHECKPOINT <name>` and waits for a line on stdin, so the
// test can act on the server at that moment (drop the streams, read /metrics).
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { McpClient, McpError } from '../../../../clients/js/src/mcp.js';

const [mode, base] = process.argv.slice(2);
const CLIENT_INFO = { name: 'diaproto-tests-js-client', version: '0' };
const SENTENCES = Array.from({ length: 6 }, (_, n) => `Sentence ${n} of the test speaks a little while.`).join(' ');
const LONG_TEXT = Array.from({ length: 400 }, (_, i) => `word${i}`).join(' ');

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function checkpoint(name) {
  process.stdout.write(`CHECKPOINT ${name}\n`);
  const { done } = await lines.next();
  if (done) throw new Error(`stdin closed at checkpoint ${name}`);
}

function connect(transport) {
  const url = transport === 'websocket' ? `${base.replace(/^http/, 'ws')}/mcp` : `${base}/mcp`;
  return McpClient.connect(url, { transport, clientInfo: CLIENT_INFO, WebSocket });
}

// Iterates a call's updates; `onPartial(count)` runs after each partial (awaited).
async function collect(call, onPartial = async () => {}) {
  const progress = [];
  const partials = [];
  for await (const update of call) {
    if (update.type === 'progress') progress.push(update.progress);
    else if (update.type === 'partial') {
      partials.push(update);
      await onPartial(partials.length);
    }
  }
  const result = await call.result;
  const streamed = Buffer.concat(
    partials.flatMap((p) => p.content.map((c) => Buffer.from(c.data, 'base64'))),
  );
  const first = result.content[0];
  // Inline up to the server's limit (a message well under 1 MiB), else behind a link.
  let wav = Buffer.alloc(0);
  if (first?.type === 'audio') wav = Buffer.from(first.data, 'base64');
  else if (first?.type === 'resource_link') wav = Buffer.from(await (await fetch(first.uri)).arrayBuffer());
  return {
    progress,
    seqs: partials.map((p) => p.seq ?? null),
    partialMimeTypes: [...new Set(partials.flatMap((p) => p.content.map((c) => c.mimeType)))],
    contentTypes: result.content.map((c) => c.type),
    audioMimeType: first?.mimeType ?? null,
    audioRiff: wav.subarray(0, 4).toString('latin1'),
    streamedBytes: streamed.length,
    wavMatchesPartials: wav.length > 44 && wav.subarray(44).equals(streamed),
    isError: result.isError ?? false,
  };
}

async function speak() {
  const client = await connect('http');
  try {
    const { tools } = await client.listTools();
    const speak = await collect(client.callTool('speak', { text: SENTENCES }));
    return {
      protocolVersion: client.protocolVersion,
      sessionId: typeof client.transport.sessionId === 'string' && client.transport.sessionId.length > 0,
      serverPartialResults: client.serverCapabilities?.experimental?.partialResults ?? null,
      tools: tools.map((t) => t.name),
      speak,
    };
  } finally {
    await client.close();
  }
}

// Cancels once the call streams; the test reads /metrics at the checkpoints.
async function cancelOver(client) {
  const call = client.callTool('speak', { text: LONG_TEXT });
  let partials = 0;
  let error = null;
  for await (const update of call) {
    if (update.type !== 'partial') continue;
    partials += 1;
    await checkpoint('STREAMING');
    call.cancel('the test cancels');
  }
  try {
    await call.result;
  } catch (e) {
    error = e.name;
  }
  await checkpoint('CANCELLED');
  await client.ping(); // still connected after the cancel
  return { partials, error, state: call.state };
}

async function cancel() {
  const client = await connect('http');
  try {
    return { cancel: await cancelOver(client) };
  } finally {
    await client.close();
  }
}

async function resume() {
  const client = await connect('http');
  try {
    const call = client.callTool('speak', { text: SENTENCES });
    const speak = await collect(call, async (n) => {
      if (n === 3) await checkpoint('DROP');
    });
    return { speak, resumes: client.transport.resumes };
  } finally {
    await client.close();
  }
}

async function ws() {
  const client = await connect('websocket');
  try {
    const { tools } = await client.listTools();
    const speak = await collect(client.callTool('speak', { text: SENTENCES }));
    await client.ping();
    return {
      protocolVersion: client.protocolVersion,
      tools: tools.map((t) => t.name),
      speak,
      ping: true,
      cancel: await cancelOver(client),
    };
  } finally {
    await client.close();
  }
}

async function errors() {
  const client = await connect('http');
  try {
    let unknown = null;
    try {
      const result = await client.callTool('no_such_tool', {}).result;
      unknown = { resolved: result };
    } catch (e) {
      unknown = { name: e.name, isMcpError: e instanceof McpError, code: e.code ?? null, message: e.message };
    }
    const bad = await client.callTool('speak', { text: 'hello', speed: 9 }).result;
    const before = client.transport.sessionId;
    await checkpoint('EXPIRE'); // the test ends the session server-side: the next POST is a 404
    const { tools } = await client.listTools();
    return {
      unknown,
      badArgument: { isError: bad.isError ?? false, text: bad.content?.[0]?.text ?? null },
      expired: {
        reinitializations: client.reinitializations,
        newSession: client.transport.sessionId !== before,
        tools: tools.map((t) => t.name),
      },
    };
  } finally {
    await client.close();
  }
}

const MODES = { speak, cancel, resume, ws, errors };

try {
  const result = await MODES[mode]();
  process.stdout.write(`${JSON.stringify({ ok: true, ...result })}\n`);
} catch (error) {
  process.stdout.write(`${JSON.stringify({ ok: false, error: String(error?.stack ?? error) })}\n`);
}
process.exit(0);
