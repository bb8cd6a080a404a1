// A small MCP client tuned for streaming tool output: Streamable HTTP (2025-11-25 rules, with
// sessions and resumption) and WebSocket (the `mcp` subprotocol, SEP-1288 draft). An ES module
// with no dependencies and no build step; runs in browsers and in Node >= 18.
//
// Tool calls are async iterators of updates: `notifications/progress` and the experimental
// `notifications/tools/partial_result` (SEP-2998 draft), then `await call.result`.

import { SseParser } from "./diaproto.js";

/** The protocol revision offered in `initialize`. */
export const PROTOCOL_VERSION = "2025-11-25";
/** Revisions this client accepts from the server (they share the initialize handshake). */
export const SUPPORTED_PROTOCOL_VERSIONS = Object.freeze(["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"]);
/** The WebSocket subprotocol (SEP-1288, draft). */
export const MCP_SUBPROTOCOL = "mcp";
/** SEP-2998 (draft): the notification carrying a chunk of a tool call's output. */
export const PARTIAL_RESULT_METHOD = "notifications/tools/partial_result";
// SEP-2998 puts the per-request client capabilities here (the 2026-07-28 baseline).
const CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities";

/** JSON-RPC and MCP error codes. */
export const ErrorCode = Object.freeze({
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
});

/** A JSON-RPC error response: `code`, `message` and `data` as the server sent them. */
export class McpError extends Error {
  /** @param {number} code @param {string} message @param {unknown} [data] */
  constructor(code, message, data) {
    super(message);
    this.name = "McpError";
    this.code = code;
    this.data = data;
  }
}

/** The transport failed: an HTTP error status (`status`), a lost connection, a bad frame. */
export class McpTransportError extends Error {
  /** @param {string} message @param {number|null} [status] @param {unknown} [data] */
  constructor(message, status = null, data = undefined) {
    super(message);
    this.name = "McpTransportError";
    this.status = status;
    this.data = data;
  }
}

const STATUS_TEXT = /** @type {Record<number, string>} */ ({
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  409: "Conflict",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  421: "Misdirected Request",
  500: "Internal Server Error",
});

/** @param {Response} response @param {string} method @param {string} url */
async function httpError(response, method, url) {
  let detail = "";
  let data;
  try {
    const text = await response.text();
    try {
      data = JSON.parse(text);
      detail = typeof data?.error?.message === "string" ? data.error.message : text;
    } catch {
      detail = text;
    }
  } catch {
    // the body is not needed for the status
  }
  const status = response.status;
  const name = response.statusText || STATUS_TEXT[status] || "";
  const message = `HTTP ${status}${name ? ` ${name}` : ""} on ${method} ${url}${detail ? `: ${detail.slice(0, 300)}` : ""}`;
  return new McpTransportError(message, status, data);
}

/** @param {string} reason */
function abortError(reason) {
  if (typeof DOMException === "function") return new DOMException(reason, "AbortError");
  const error = new Error(reason);
  error.name = "AbortError";
  return error;
}

/** @param {number} ms @param {AbortSignal} signal */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(undefined);
    const done = () => {
      clearTimeout(timer);
      resolve(undefined);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", done);
      resolve(undefined);
    }, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** @param {unknown} value @returns {value is Record<string, any>} */
function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function randomPrefix() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID().slice(0, 8);
  return Math.random().toString(36).slice(2, 10);
}

// --- tool calls ------------------------------------------------------------------------------

/**
 * One `tools/call` in flight: an async iterator of updates (progress, partial results) that
 * ends when the call ends, and `result`, the final CallToolResult.
 */
export class ToolCall {
  /** @param {McpClient} client @param {string} name @param {string} token */
  constructor(client, name, token) {
    this.client = client;
    this.name = name;
    /** The JSON-RPC id of the request (set when it is sent). */
    this.requestId = /** @type {number|null} */ (null);
    /** `_meta.progressToken` of the request; also its SEP-2998 `partialResultToken`. */
    this.progressToken = token;
    this.partialResultToken = token;
    /** @type {((update: import("./mcp.d.ts").ToolUpdate, call: ToolCall) => void)|null} */
    this.onupdate = null;
    /** "running", then "done", "failed" or "cancelled". */
    this.state = "running";
    /** @type {import("./mcp.d.ts").ToolUpdate[]} */
    this._queue = [];
    /** @type {(() => void)|null} */
    this._wake = null;
    this._detached = false;
    this._lastProgress = -Infinity;
    this._lastSeq = -1;
    this._error = /** @type {unknown} */ (null);
    this._abort = new AbortController();
    /** @type {(value: any) => void} */
    let resolve = () => {};
    /** @type {(error: unknown) => void} */
    let reject = () => {};
    /** @type {Promise<import("./mcp.d.ts").CallToolResult>} */
    this.result = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.result.catch(() => {}); // observed through the iterator too: never unhandled
    this._resolve = resolve;
    this._reject = reject;
  }

  /** True once the call has a result, failed or was cancelled. */
  get done() {
    return this.state !== "running";
  }

  /** @param {Record<string, any>} params */
  _progress(params) {
    const progress = params.progress;
    // Progress strictly increases (spec): anything else is a replayed duplicate.
    if (typeof progress !== "number" || !(progress > this._lastProgress)) return;
    this._lastProgress = progress;
    this._push({ type: "progress", progress, total: params.total ?? null, message: params.message ?? null });
  }

  /** @param {Record<string, any>} params */
  _partial(params) {
    const seq = params.seq;
    if (typeof seq === "number") {
      if (seq <= this._lastSeq) return; // a duplicate (after a resume) or out of order: dropped
      this._lastSeq = seq;
    }
    /** @type {import("./mcp.d.ts").PartialUpdate} */
    const update = { type: "partial", content: Array.isArray(params.content) ? params.content : [] };
    if (typeof seq === "number") update.seq = seq;
    if (params.structuredContent !== undefined) update.structuredContent = params.structuredContent;
    if (params.final === true) update.final = true;
    this._push(update);
  }

  /** @param {import("./mcp.d.ts").ToolUpdate} update */
  _push(update) {
    if (this.done) return; // nothing after completion
    if (!this._detached) this._queue.push(update);
    this.onupdate?.(update, this);
    this._notify();
  }

  _notify() {
    const wake = this._wake;
    this._wake = null;
    wake?.();
  }

  /** @param {any} result */
  _finish(result) {
    if (this.done) return;
    this.state = "done";
    this._resolve(result);
    this._notify();
  }

  /** @param {unknown} error */
  _fail(error) {
    if (this.done) return;
    const cancelled = error instanceof Error && error.name === "AbortError";
    this.state = cancelled ? "cancelled" : "failed";
    this._error = cancelled ? null : error;
    if (cancelled) this._queue = []; // updates stop at the cancel, buffered ones included
    this._reject(error);
    this._abort.abort();
    this._notify();
  }

  /**
   * Cancel the call: sends `notifications/cancelled`, rejects `result` with an AbortError and
   * ends the iterator. Does nothing once the call is over.
   * @param {string} [reason]
   */
  cancel(reason = "cancelled by the client") {
    if (this.done) return;
    this.client._cancel(this, reason);
  }

  /**
   * Updates in arrival order; ends when the call ends (normally or cancelled), throws the
   * error if it failed. One consumer: updates are handed out once.
   * @returns {AsyncIterator<import("./mcp.d.ts").ToolUpdate>}
   */
  [Symbol.asyncIterator]() {
    return {
      next: async () => {
        for (;;) {
          const update = this._queue.shift();
          if (update !== undefined) return { value: update, done: false };
          if (this.done) {
            if (this._error !== null) throw this._error;
            return { value: undefined, done: true };
          }
          await new Promise((resolve) => (this._wake = () => resolve(undefined)));
        }
      },
      return: async () => {
        this._detached = true; // stop buffering; the call itself goes on
        this._queue = [];
        return { value: undefined, done: true };
      },
    };
  }
}

// --- transports ------------------------------------------------------------------------------

/** Streamable HTTP: one POST per message; responses as JSON or an SSE stream; resumption. */
class HttpTransport {
  /** @param {McpClient} client @param {string} url @param {import("./mcp.d.ts").ConnectOptions} options */
  constructor(client, url, options) {
    this.client = client;
    this.url = url;
    this._fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this._headers = options.headers ?? {};
    /** @type {string|null} */
    this.sessionId = null;
    /** @type {string|null} */
    this.protocolVersion = null;
    this.maxRetries = options.maxRetries ?? 3;
    /** Delay before a resumption (ms); a `retry:` field from the server changes it. */
    this.retryMs = options.retryMs ?? 1000;
    /** Resumptions done (GET with Last-Event-ID). */
    this.resumes = 0;
    /** The longest SSE line accepted, in characters: one message (a whole result) is one line. */
    this.maxEventSize = options.maxEventSize ?? 64 * 1024 * 1024;
  }

  /** @param {Record<string, string>} extra */
  _requestHeaders(extra) {
    /** @type {Record<string, string>} */
    const headers = { ...this._headers, ...extra };
    if (this.sessionId !== null) headers["MCP-Session-Id"] = this.sessionId;
    if (this.protocolVersion !== null) headers["MCP-Protocol-Version"] = this.protocolVersion;
    return headers;
  }

  /**
   * Send one message. For a request, resolves once its response was dispatched to the client.
   * @param {Record<string, any>} message
   * @param {AbortSignal} [signal]
   */
  async send(message, signal) {
    const isRequest = typeof message.method === "string" && message.id !== undefined;
    const headers = this._requestHeaders({
      Accept: "application/json, text/event-stream",
      "Content-Type": "application/json",
    });
    /** @type {Response} */
    let response;
    try {
      response = await this._fetch(this.url, { method: "POST", headers, body: JSON.stringify(message), signal, cache: "no-store" });
    } catch (error) {
      if (signal?.aborted) return;
      throw new McpTransportError(`POST ${this.url} failed: ${error instanceof Error ? error.message : error}`);
    }
    if (message.method === "initialize" && response.ok) {
      const session = response.headers.get("mcp-session-id");
      if (session) this.sessionId = session;
    }
    if (!response.ok) throw await httpError(response, "POST", this.url);
    if (!isRequest) {
      response.body?.cancel().catch(() => {}); // 202 (or an empty 200): nothing to read
      return;
    }
    const type = (response.headers.get("content-type") ?? "").toLowerCase();
    if (type.startsWith("application/json")) {
      let body;
      try {
        body = await response.json();
      } catch (error) {
        if (signal?.aborted) return;
        throw new McpTransportError(`POST ${this.url}: the JSON response does not parse: ${error}`);
      }
      this.client._receive(body);
    } else if (type.startsWith("text/event-stream")) {
      await this._readStream(response, message.id, signal);
    } else {
      response.body?.cancel().catch(() => {});
      throw new McpTransportError(`POST ${this.url}: HTTP ${response.status} with content type '${type}' for a request`);
    }
    if (this.client._pending.has(message.id) && !signal?.aborted) {
      throw new McpTransportError(`POST ${this.url}: the server answered without a response to request ${message.id}`);
    }
  }

  /**
   * Read a request's SSE stream until its response arrives. If the stream ends first, resume
   * with GET and Last-Event-ID after the `retry` delay (at most `maxRetries` times in a row);
   * events already seen on this stream are skipped.
   * @param {Response} response @param {number} id @param {AbortSignal} [signal]
   */
  async _readStream(response, id, signal) {
    /** @type {Set<string>} */
    const seen = new Set();
    /** @type {string|null} */
    let lastEventId = null;
    let failures = 0;
    /** @type {Response|null} */
    let current = response;
    let cause = "the stream ended";
    for (;;) {
      /** @type {SseParser} */
      const parser = new SseParser({ lastEventId, maxLine: this.maxEventSize });
      if (current !== null) {
        cause = "the stream ended";
        if (!current.body) throw new McpTransportError(`${this.url}: an event stream without a body`);
        const reader = current.body.getReader();
        let previousId = lastEventId;
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            let events;
            try {
              events = parser.feed(value);
            } catch (error) {
              reader.cancel().catch(() => {});
              throw new McpTransportError(`${this.url}: ${error instanceof Error ? error.message : error} (maxEventSize ${this.maxEventSize})`);
            }
            for (const event of events) {
              // An event without its own id carries the previous one: only a new id can repeat.
              if (event.id !== null && event.id !== previousId) {
                if (seen.has(event.id)) continue;
                seen.add(event.id);
              }
              previousId = event.id;
              if (event.data === "") continue; // a priming event (an id, maybe retry:)
              failures = 0;
              let message;
              try {
                message = JSON.parse(event.data);
              } catch {
                this.client._report(new McpTransportError(`${this.url}: an SSE event is not JSON`));
                continue;
              }
              this.client._receive(message);
            }
            lastEventId = parser.lastEventId;
            if (parser.retry !== null) this.retryMs = parser.retry;
            if (!this.client._pending.has(id)) {
              reader.cancel().catch(() => {});
              return;
            }
          }
        } catch (error) {
          if (signal?.aborted || !this.client._pending.has(id)) return;
          if (error instanceof McpTransportError) throw error; // not a dropped connection
          cause = error instanceof Error ? error.message : String(error);
        }
        lastEventId = parser.lastEventId;
        if (parser.retry !== null) this.retryMs = parser.retry;
      }
      if (signal?.aborted || !this.client._pending.has(id)) return;
      if (lastEventId === null || lastEventId === "") {
        throw new McpTransportError(`${this.url}: ${cause} before the response to request ${id}, without an event id to resume from`);
      }
      failures += 1;
      if (failures > this.maxRetries) {
        throw new McpTransportError(`${this.url}: gave up resuming request ${id} after ${this.maxRetries} attempts (${cause})`);
      }
      await sleep(this.retryMs, signal ?? new AbortController().signal);
      if (signal?.aborted) return;
      this.resumes += 1;
      current = null;
      try {
        current = await this._fetch(this.url, {
          method: "GET",
          headers: this._requestHeaders({ Accept: "text/event-stream", "Last-Event-ID": lastEventId }),
          signal,
          cache: "no-store",
        });
      } catch (error) {
        if (signal?.aborted) return;
        cause = `GET failed: ${error instanceof Error ? error.message : error}`; // retried within the bound
        continue;
      }
      if (current.status === 409) {
        // The server still holds the old stream (it has not seen the drop yet): try again.
        cause = (await httpError(current, "GET", this.url)).message;
        current = null;
        continue;
      }
      if (!current.ok) throw await httpError(current, "GET", this.url);
      const type = (current.headers.get("content-type") ?? "").toLowerCase();
      if (!type.startsWith("text/event-stream")) {
        current.body?.cancel().catch(() => {});
        throw new McpTransportError(`GET ${this.url} (resume): content type '${type}', not text/event-stream`);
      }
    }
  }

  /** End the session (DELETE); a 405 or a failure is fine. */
  async close() {
    if (this.sessionId === null) return;
    try {
      const response = await this._fetch(this.url, { method: "DELETE", headers: this._requestHeaders({}) });
      response.body?.cancel().catch(() => {});
    } catch {
      // the server may already be gone
    }
    this.sessionId = null;
  }

  /** Forget the session (it expired): the next initialize starts a new one. */
  reset() {
    this.sessionId = null;
    this.protocolVersion = null;
  }
}

/** WebSocket: one JSON-RPC message per text frame, subprotocol `mcp`. */
class WebSocketTransport {
  /** @param {McpClient} client @param {string} url @param {import("./mcp.d.ts").ConnectOptions} options */
  constructor(client, url, options) {
    this.client = client;
    this.url = url;
    const Impl = options.WebSocket ?? globalThis.WebSocket;
    if (!Impl) throw new McpTransportError("no WebSocket implementation: pass options.WebSocket");
    this.ws = new Impl(url, [MCP_SUBPROTOCOL]);
    if ("binaryType" in this.ws) this.ws.binaryType = "arraybuffer";
    /** @type {string|null} */
    this.sessionId = null; // no sessions on a WebSocket: the connection is the session
    /** @type {string|null} */
    this.protocolVersion = null;
    this.closed = false;
    this.ready = new Promise((resolve, reject) => {
      const opened = () => {
        if (this.ws.protocol !== MCP_SUBPROTOCOL) {
          const got = this.ws.protocol ? `'${this.ws.protocol}'` : "none";
          reject(new McpTransportError(`${url}: the server selected subprotocol ${got}, not '${MCP_SUBPROTOCOL}'`));
          this.ws.close(1002, "subprotocol mcp required");
          return;
        }
        resolve(undefined);
      };
      if (this.ws.readyState === 1) opened();
      this._on("open", opened);
      this._on("close", (/** @type {any} */ event) => {
        reject(new McpTransportError(`${url}: the WebSocket closed before it opened (code ${event?.code})`));
        this._closed(event);
      });
    });
    this.ready.catch(() => {});
    this._on("message", (/** @type {any} */ event) => this._message(event?.data));
  }

  /** @param {string} type @param {(event: any) => void} listener */
  _on(type, listener) {
    const ws = /** @type {any} */ (this.ws);
    if (typeof ws.addEventListener === "function") ws.addEventListener(type, listener);
    else ws.on(type, listener);
  }

  /** @param {unknown} data */
  _message(data) {
    if (typeof data !== "string") {
      // SEP-1288: text frames only; a binary frame closes the connection with 1003.
      this.client._report(new McpTransportError(`${this.url}: a binary WebSocket frame (MCP uses text frames only)`));
      this.ws.close(1003, "text frames only");
      return;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      this.client._report(new McpTransportError(`${this.url}: a WebSocket frame that is not JSON`));
      return;
    }
    this.client._receive(message);
  }

  /** @param {any} event */
  _closed(event) {
    if (this.closed) return;
    this.closed = true;
    this.client._lost(new McpTransportError(`${this.url}: the WebSocket closed (code ${event?.code ?? "?"})`));
  }

  /** @param {Record<string, any>} message */
  async send(message) {
    await this.ready;
    if (this.closed || this.ws.readyState !== 1) throw new McpTransportError(`${this.url}: the WebSocket is not open`);
    this.ws.send(JSON.stringify(message));
  }

  async close() {
    if (!this.closed) this.ws.close(1000, "client closed");
  }

  reset() {}
}

// --- the client ------------------------------------------------------------------------------

/**
 * An MCP client session. Create it with {@link McpClient.connect}, which performs
 * `initialize` and `notifications/initialized`.
 */
export class McpClient {
  /**
   * Connect and initialize.
   * @param {string|URL} url `http(s)://…/mcp` or `ws(s)://…`
   * @param {import("./mcp.d.ts").ConnectOptions} [options]
   * @returns {Promise<McpClient>}
   */
  static async connect(url, options = {}) {
    const client = new McpClient(url, options);
    try {
      await client._initialize();
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  }

  /** @param {string|URL} url @param {import("./mcp.d.ts").ConnectOptions} [options] */
  constructor(url, options = {}) {
    this.url = String(url);
    const kind = options.transport ?? (/^wss?:/i.test(this.url) ? "websocket" : "http");
    this.clientInfo = options.clientInfo ?? { name: "diaproto-mcp-client", version: "0.1.0" };
    /** Whether tool calls ask for SEP-2998 partial results (default true). */
    this.partialResults = options.partialResults ?? true;
    /** @type {Record<string, any>} */
    const capabilities = { ...(options.capabilities ?? {}) };
    if (this.partialResults) {
      // SEP-2998 names a top-level capability; `experimental` too, for servers that only
      // accept unknown capabilities there (2025-11-25's place for extensions).
      capabilities.partialResults = {};
      capabilities.experimental = { ...(capabilities.experimental ?? {}), partialResults: {} };
    }
    this.capabilities = capabilities;
    /** @type {HttpTransport|WebSocketTransport} */
    this.transport = kind === "websocket" ? new WebSocketTransport(this, this.url, options) : new HttpTransport(this, this.url, options);
    /** The negotiated protocol version, the server's info, capabilities and instructions. */
    this.protocolVersion = /** @type {string|null} */ (null);
    this.serverInfo = /** @type {any} */ (null);
    this.serverCapabilities = /** @type {any} */ ({});
    this.instructions = /** @type {string|null} */ (null);
    /** Re-initializations after an expired session (HTTP 404). */
    this.reinitializations = 0;
    /** Called with notifications no call claims (e.g. `notifications/message`). */
    this.onnotification = /** @type {((message: any) => void)|null} */ (null);
    /** Called with errors that belong to no request (a bad frame, an undecodable event). */
    this.onerror = /** @type {((error: Error) => void)|null} */ (null);
    this.closed = false;
    /** @type {Map<number|string, {resolve: (value: any) => void, reject: (error: unknown) => void}>} */
    this._pending = new Map();
    /** @type {Map<string, ToolCall>} */
    this._calls = new Map();
    this._nextId = 1;
    this._tokenPrefix = randomPrefix();
    this._tokens = 0;
    /** @type {Promise<void>|null} */
    this._renewing = null;
  }

  async _initialize() {
    const result = await this.request("initialize", {
      protocolVersion: PROTOCOL_VERSION,
      capabilities: this.capabilities,
      clientInfo: this.clientInfo,
    });
    const version = result?.protocolVersion;
    if (!SUPPORTED_PROTOCOL_VERSIONS.includes(version)) {
      throw new McpTransportError(`the server chose protocol version ${JSON.stringify(version)}, which this client does not support`);
    }
    this.protocolVersion = version;
    this.transport.protocolVersion = version;
    this.serverInfo = result.serverInfo ?? null;
    this.serverCapabilities = result.capabilities ?? {};
    this.instructions = result.instructions ?? null;
    await this.notify("notifications/initialized");
  }

  /**
   * The session expired (404): initialize again, once for all requests that saw it.
   * @param {string|null} session the session the failed request carried
   */
  async _renew(session) {
    if (this.transport.sessionId !== session) return; // someone else already renewed it
    if (!this._renewing) {
      this.transport.reset();
      this.reinitializations += 1;
      this._renewing = this._initialize().finally(() => (this._renewing = null));
    }
    await this._renewing;
  }

  /**
   * Send a request; resolves with its result, rejects with an McpError (a JSON-RPC error),
   * an McpTransportError, or an AbortError when `signal` aborts.
   * @param {string} method
   * @param {Record<string, any>} [params]
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<any>}
   */
  request(method, params, options = {}) {
    return this._start(method, params, options.signal ?? null, null).promise;
  }

  /**
   * @param {string} method @param {Record<string, any>|undefined} params
   * @param {AbortSignal|null} signal @param {ToolCall|null} call
   */
  _start(method, params, signal, call) {
    if (this.closed) {
      return { id: -1, promise: Promise.reject(new McpTransportError("the client is closed")) };
    }
    const id = this._nextId++;
    /** @type {Record<string, any>} */
    const message = { jsonrpc: "2.0", id, method };
    if (params !== undefined) message.params = params;
    const abort = call ? call._abort : new AbortController();
    /** @type {Promise<any>} */
    const promise = new Promise((resolve, reject) => {
      // A call settles synchronously with its response: nothing after completion gets through.
      const entry = call
        ? { resolve: (/** @type {any} */ v) => (call._finish(v), resolve(v)), reject: (/** @type {unknown} */ e) => (call._fail(e), reject(e)) }
        : { resolve, reject };
      this._pending.set(id, entry);
    });
    const fail = (/** @type {unknown} */ error) => {
      const entry = this._pending.get(id);
      if (!entry) return;
      this._pending.delete(id);
      entry.reject(error);
    };
    promise.then(
      () => abort.abort(),
      () => abort.abort(),
    );
    if (signal && !call) {
      if (signal.aborted) fail(abortError("aborted"));
      else signal.addEventListener("abort", () => this._cancelRequest(id, "aborted", fail), { once: true });
    }
    const attempt = async (/** @type {boolean} */ retried) => {
      const session = this.transport.sessionId;
      try {
        await this.transport.send(message, abort.signal);
      } catch (error) {
        if (
          !retried && error instanceof McpTransportError && error.status === 404 &&
          session !== null && method !== "initialize" && this._pending.has(id)
        ) {
          await this._renew(session);
          return attempt(true);
        }
        throw error;
      }
    };
    if (this._pending.has(id)) attempt(false).catch(fail);
    return { id, promise };
  }

  /**
   * Send a notification (fire and forget over WebSocket; a POST answered 202 over HTTP).
   * @param {string} method @param {Record<string, any>} [params]
   */
  async notify(method, params) {
    /** @type {Record<string, any>} */
    const message = { jsonrpc: "2.0", method };
    if (params !== undefined) message.params = params;
    await this.transport.send(message);
  }

  /**
   * @param {number} id @param {string} reason
   * @param {(error: unknown) => void} fail
   */
  _cancelRequest(id, reason, fail) {
    if (!this._pending.has(id)) return;
    fail(abortError(reason));
    // Not awaited: a lost or refused cancellation changes nothing here (the spec tolerates races).
    this.notify("notifications/cancelled", { requestId: id, reason }).catch(() => {});
  }

  /** @param {ToolCall} call @param {string} reason */
  _cancel(call, reason) {
    const id = call.requestId;
    const entry = id === null ? undefined : this._pending.get(id);
    if (id !== null && entry) {
      this._pending.delete(id);
      // Sent before the stream is dropped: on HTTP a dropped stream is not a cancellation.
      this.notify("notifications/cancelled", { requestId: id, reason }).catch(() => {});
    }
    const error = abortError(reason);
    call._fail(error); // updates stop now
    entry?.reject(error);
  }

  /** @returns {Promise<void>} */
  async ping() {
    await this.request("ping");
  }

  /**
   * All tools, following `nextCursor` (at most 100 pages).
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<{tools: any[]}>}
   */
  async listTools(options = {}) {
    const tools = [];
    /** @type {string|undefined} */
    let cursor;
    for (let page = 0; page < 100; page++) {
      const result = await this.request("tools/list", cursor === undefined ? {} : { cursor }, options);
      tools.push(...(result?.tools ?? []));
      cursor = result?.nextCursor;
      if (typeof cursor !== "string" || cursor === "") break;
    }
    return { tools };
  }

  /**
   * Call a tool. The returned ToolCall is an async iterator of updates; `call.result` is the
   * final CallToolResult. Each call carries a unique `_meta.progressToken`, which is also its
   * SEP-2998 `_meta.partialResultToken` (when `partialResults` is on).
   * @param {string} name
   * @param {Record<string, unknown>} [args]
   * @param {{signal?: AbortSignal, meta?: Record<string, unknown>}} [options]
   * @returns {ToolCall}
   */
  callTool(name, args = {}, options = {}) {
    const token = `${this._tokenPrefix}-${++this._tokens}`;
    const call = new ToolCall(this, name, token);
    /** @type {Record<string, unknown>} */
    const meta = { ...(options.meta ?? {}), progressToken: token };
    if (this.partialResults) {
      meta.partialResultToken = token;
      meta[CAPABILITIES_META] = { partialResults: {} };
    }
    this._calls.set(token, call);
    const signal = options.signal;
    if (signal?.aborted) {
      call._fail(abortError("aborted before the call"));
      this._calls.delete(token);
      return call;
    }
    const { id, promise } = this._start("tools/call", { name, arguments: args, _meta: meta }, null, call);
    call.requestId = id;
    const onAbort = () => call.cancel(typeof signal?.reason === "string" ? signal.reason : "aborted");
    signal?.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (result) => call._finish(result),
      (error) => call._fail(error),
    ).finally(() => {
      this._calls.delete(token);
      signal?.removeEventListener("abort", onAbort);
    });
    return call;
  }

  /** @param {unknown} message */
  _receive(message) {
    if (Array.isArray(message)) {
      for (const item of message) this._receive(item);
      return;
    }
    if (!isObject(message)) {
      this._report(new McpTransportError("a message that is not a JSON object"));
      return;
    }
    if (typeof message.method === "string") {
      if (message.id !== undefined && message.id !== null) this._serverRequest(message);
      else this._notification(message);
      return;
    }
    const entry = this._pending.get(message.id);
    if (!entry) return; // a late response (after a cancel): ignored
    this._pending.delete(message.id);
    if (isObject(message.error)) {
      const { code, message: text, data } = message.error;
      entry.reject(new McpError(typeof code === "number" ? code : ErrorCode.INTERNAL_ERROR, String(text ?? "error"), data));
    } else {
      entry.resolve(message.result);
    }
  }

  /** @param {Record<string, any>} message */
  _notification(message) {
    const params = isObject(message.params) ? message.params : {};
    if (message.method === "notifications/progress") {
      const call = this._calls.get(String(params.progressToken));
      if (call) return call._progress(params);
    } else if (message.method === PARTIAL_RESULT_METHOD) {
      // Only tokens this client issued for a call in flight (SEP-2998, security section).
      const call = this._calls.get(String(params.partialResultToken ?? params.progressToken));
      if (call) return call._partial(params);
      return;
    } else if (message.method === "notifications/cancelled") {
      return; // the server gave up on a request of ours: its response (or none) follows
    }
    this.onnotification?.(message);
  }

  /** @param {Record<string, any>} message */
  _serverRequest(message) {
    /** @type {Record<string, any>} */
    const reply = { jsonrpc: "2.0", id: message.id };
    if (message.method === "ping") reply.result = {};
    else reply.error = { code: ErrorCode.METHOD_NOT_FOUND, message: `method not supported by this client: ${message.method}` };
    this.transport.send(reply).catch((error) => this._report(error));
  }

  /** @param {unknown} error */
  _report(error) {
    this.onerror?.(error instanceof Error ? error : new Error(String(error)));
  }

  /** The connection is gone (WebSocket): every request fails. @param {Error} error */
  _lost(error) {
    for (const entry of this._pending.values()) entry.reject(error);
    this._pending.clear();
  }

  /** Fail what is in flight, end the session (HTTP DELETE) or close the WebSocket. */
  async close() {
    if (this.closed) return;
    this.closed = true;
    this._lost(new McpTransportError("the client was closed"));
    await this.transport.close();
  }
}
