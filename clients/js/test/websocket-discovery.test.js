// Which WebSocket the client uses: one given, the global one, or the `ws` package (Node 18-21).
import { test } from "node:test";
import assert from "node:assert/strict";
import { WebSocket as WsWebSocket, WebSocketServer } from "ws";
import { DiaprotoSocket, SUBPROTOCOL, findWebSocket } from "../src/diaproto.js";

test("a WebSocket given is used as is", async () => {
  class Mine {}
  assert.equal(await findWebSocket({ WebSocket: Mine }), Mine);
});

test("without a global WebSocket the ws package is found", async (t) => {
  const saved = globalThis.WebSocket;
  delete globalThis.WebSocket; // as on Node 18-21 without --experimental-websocket
  t.after(() => {
    if (saved !== undefined) globalThis.WebSocket = saved;
  });
  assert.equal(await findWebSocket(), WsWebSocket);
  assert.throws(() => new DiaprotoSocket("ws://127.0.0.1:9/ws"), /npm install ws/);
});

test("connect() opens a diaproto.v1 connection with the WebSocket it found", async (t) => {
  const saved = globalThis.WebSocket;
  delete globalThis.WebSocket;
  const server = new WebSocketServer({
    host: "127.0.0.1",
    port: 0,
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });
  await new Promise((resolve) => server.once("listening", resolve));
  t.after(() => {
    if (saved !== undefined) globalThis.WebSocket = saved;
    server.close();
  });
  const url = `ws://127.0.0.1:${server.address().port}/ws`;
  const socket = await DiaprotoSocket.connect(url);
  assert.ok(socket.ws instanceof WsWebSocket);
  assert.equal(socket.ws.protocol, SUBPROTOCOL);
  socket.close(1000, "done");
});
