// diaproto client: the diaproto.v1 wire codec, a multiplexed WebSocket client with credit
// tied to playback, and a resumable Server-Sent Events consumer. An ES module with no
// dependencies and no build step; runs in browsers and in Node >= 18.
//
// The specification is docs/protocol.md; diaproto/wire_vectors.json holds the test vectors
// this module passes (clients/js/test/vectors.test.js).

/** The WebSocket subprotocol of this version. */
export const SUBPROTOCOL = "diaproto.v1";
/** The largest stream id, sequence number or byte count (u32). */
export const MAX_ID = 0xffffffff;
const HEADER = 12;

/** Values of the `code` field of an `error` message (and of {@link WireError#code}). */
export const ErrorCode = Object.freeze({
  BAD_MESSAGE: "bad_message",
  UNKNOWN_TYPE: "unknown_type",
  UNKNOWN_STREAM: "unknown_stream",
  STREAM_EXISTS: "stream_exists",
  REPLAY_GAP: "replay_gap",
  SLOW_CONSUMER: "slow_consumer",
  INVALID_REQUEST: "invalid_request",
  BUSY: "busy",
  LIMIT_EXCEEDED: "limit_exceeded",
  GENERATION_LOST: "generation_lost",
  GOING_AWAY: "going_away",
  INTERNAL: "internal",
});

// Codes that refuse one message and leave the stream they name as it was (protocol §6).
const ONE_MESSAGE_CODES = new Set(["bad_message", "unknown_type", "unknown_stream", "stream_exists"]);

/** A message we could not accept (`code` is a protocol error code; `stream` the id or null). */
export class WireError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {number|null} [stream]
   */
  constructor(code, message, stream = null) {
    super(message);
    this.name = "WireError";
    this.code = code;
    this.stream = stream;
  }
}

/** A message this side was asked to send but must not (an id out of range, a non-JSON option). */
export class LocalProtocolError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "LocalProtocolError";
  }
}

/** A stream failed: a server `error`, a lost connection, an HTTP failure. */
export class StreamFailure extends Error {
  /**
   * @param {string} code a protocol error code, or a client-side one (`connection_closed`,
   *   `http_error`, `network`, `bad_response`)
   * @param {string} message
   * @param {number|null} [stream]
   */
  constructor(code, message, stream = null) {
    super(message || code);
    this.name = "StreamFailure";
    this.code = code;
    this.stream = stream;
  }
}

// --- data records --------------------------------------------------------------------------

/** @param {ArrayBuffer|ArrayBufferView} body */
function toBytes(body) {
  if (body instanceof Uint8Array) return body;
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  if (body instanceof ArrayBuffer || Object.prototype.toString.call(body) === "[object ArrayBuffer]") {
    return new Uint8Array(body);
  }
  throw new TypeError("expected an ArrayBuffer or a typed array");
}

/**
 * Split a binary message into its records. A message that is empty or ends inside a record
 * is refused as a whole (WireError `bad_message`); payloads are views into `body`.
 * @param {ArrayBuffer|ArrayBufferView} body
 * @returns {{stream: number, seq: number, data: Uint8Array}[]}
 */
export function decodeRecords(body) {
  const bytes = toBytes(body);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const records = [];
  let offset = 0;
  const end = bytes.byteLength;
  while (offset < end) {
    if (end - offset < HEADER) throw new WireError(ErrorCode.BAD_MESSAGE, "truncated record header");
    const stream = view.getUint32(offset);
    const seq = view.getUint32(offset + 4);
    const length = view.getUint32(offset + 8);
    offset += HEADER;
    if (end - offset < length) {
      throw new WireError(ErrorCode.BAD_MESSAGE, "record payload shorter than its length");
    }
    records.push({ stream, seq, data: bytes.subarray(offset, offset + length) });
    offset += length;
  }
  if (records.length === 0) throw new WireError(ErrorCode.BAD_MESSAGE, "empty binary message");
  return records;
}

/**
 * One binary message holding the records in order.
 * @param {Iterable<{stream: number, seq: number, data: ArrayBuffer|ArrayBufferView}>} records
 * @returns {Uint8Array}
 */
export function encodeRecords(records) {
  const parts = [];
  let size = 0;
  for (const { stream, seq, data } of records) {
    const payload = toBytes(data);
    for (const [name, value] of [["stream", stream], ["seq", seq], ["length", payload.byteLength]]) {
      if (!isCount(value)) throw new LocalProtocolError(`record ${name} ${value} is not in 0..2**32-1`);
    }
    parts.push([stream, seq, payload]);
    size += HEADER + payload.byteLength;
  }
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let offset = 0;
  for (const [stream, seq, payload] of parts) {
    view.setUint32(offset, stream);
    view.setUint32(offset + 4, seq);
    view.setUint32(offset + 8, payload.byteLength);
    out.set(payload, offset + HEADER);
    offset += HEADER + payload.byteLength;
  }
  return out;
}

// --- control messages ----------------------------------------------------------------------

/** @param {unknown} value */
function isCount(value) {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= MAX_ID;
}

/** @param {unknown} value */
function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// Where the engine gives the reviver the source text (Chrome 114+, Node 21+), integral
// numbers written with a fraction or exponent (`1.0`, `1e2`) are remembered per object, so
// counts are refused exactly as the Python receiver refuses them. Elsewhere JSON.parse cannot
// tell `1.0` from `1`, which the specification leaves open (§3).
/** @type {WeakMap<object, Set<string>>} */
let floatKeys = new WeakMap();

/** @this {any} @param {string} key @param {unknown} value @param {{source?: string}} [context] */
function reviver(key, value, context) {
  if (typeof value === "number") {
    // 1e999 and integers too long for a double: valid JSON, but no double holds them.
    if (!Number.isFinite(value)) throw new SyntaxError("number out of range");
    if (context && typeof context.source === "string" && /[.eE]/.test(context.source)) {
      let keys = floatKeys.get(this);
      if (!keys) floatKeys.set(this, (keys = new Set()));
      keys.add(key);
    }
  }
  return value;
}

/** @param {string} text @returns {[Record<string, any>, string]} */
function load(text) {
  let body;
  try {
    body = JSON.parse(text, reviver);
  } catch (error) {
    // Not JSON (NaN, Infinity, single quotes, trailing text...), or nested too deeply.
    throw new WireError(ErrorCode.BAD_MESSAGE, `not JSON: ${error instanceof Error ? error.message : error}`);
  }
  if (!isObject(body)) throw new WireError(ErrorCode.BAD_MESSAGE, "a message must be a JSON object");
  const kind = body.type;
  if (typeof kind !== "string") {
    throw new WireError(ErrorCode.BAD_MESSAGE, "'type' must be a string", maybeId(body));
  }
  return [body, kind];
}

/** @param {Record<string, any>} body @param {string} name */
function countValue(body, name) {
  const value = body[name];
  if (!isCount(value) || floatKeys.get(body)?.has(name)) return undefined;
  return value + 0; // -0 is 0
}

/** @param {Record<string, any>} body */
function maybeId(body) {
  return countValue(body, "stream") ?? null;
}

/** @param {Record<string, any>} body @param {string} name @param {number|null} stream */
function optCount(body, name, stream) {
  if (body[name] === undefined || body[name] === null) return null;
  const value = countValue(body, name);
  if (value === undefined) {
    throw new WireError(ErrorCode.BAD_MESSAGE, `'${name}' must be an integer in 0..2**32-1`, stream);
  }
  return value;
}

/** @param {Record<string, any>} body @param {string} name @param {number|null} stream */
function count(body, name, stream) {
  const value = optCount(body, name, stream);
  if (value === null) {
    throw new WireError(ErrorCode.BAD_MESSAGE, `'${name}' must be an integer in 0..2**32-1`, stream);
  }
  return value;
}

/** @param {Record<string, any>} body */
function id(body) {
  return count(body, "stream", null);
}

/** @param {Record<string, any>} body @param {string} name @param {number|null} stream */
function str(body, name, stream) {
  const value = body[name];
  if (typeof value !== "string") throw new WireError(ErrorCode.BAD_MESSAGE, `'${name}' must be a string`, stream);
  return value;
}

/** @param {Record<string, any>} body @param {string} name @param {number|null} stream */
function optStr(body, name, stream) {
  return body[name] === undefined || body[name] === null ? null : str(body, name, stream);
}

/** @param {Record<string, any>} body @param {string} name @param {number|null} stream */
function optObject(body, name, stream) {
  const value = body[name];
  if (value === undefined || value === null) return {};
  if (!isObject(value)) throw new WireError(ErrorCode.BAD_MESSAGE, `'${name}' must be an object`, stream);
  return value;
}

/**
 * @param {string} text
 * @param {(body: Record<string, any>, kind: string) => any} decide
 */
function decodeWith(text, decide) {
  try {
    const [body, kind] = load(text);
    return decide(body, kind);
  } finally {
    floatKeys = new WeakMap();
  }
}

/**
 * Parse a server's control message (what a client receives), in canonical form:
 * `{type:"open",stream,token}`, `{type:"end",stream,seq}` or `{type:"error",stream,code,message}`.
 * @param {string} text
 * @returns {import("./diaproto.d.ts").ServerMessage}
 */
export function decodeServerMessage(text) {
  return decodeWith(text, (body, kind) => {
    switch (kind) {
      case "open": {
        const stream = id(body);
        return { type: "open", stream, token: optStr(body, "token", stream) };
      }
      case "end": {
        const stream = id(body);
        return { type: "end", stream, seq: count(body, "seq", stream) };
      }
      case "error": {
        const stream = body.stream === undefined || body.stream === null ? null : id(body);
        const code = str(body, "code", stream);
        return { type: "error", stream, code, message: optStr(body, "message", stream) ?? "" };
      }
      default:
        throw new WireError(ErrorCode.UNKNOWN_TYPE, `unknown message type ${JSON.stringify(kind)}`, maybeId(body));
    }
  });
}

/**
 * Parse a client's control message (what a server receives), in canonical form.
 * The WireError's `stream` is what the server's error answer must carry.
 * @param {string} text
 * @returns {import("./diaproto.d.ts").ClientMessage}
 */
export function decodeClientMessage(text) {
  return decodeWith(text, (body, kind) => {
    switch (kind) {
      case "open": {
        const stream = id(body);
        return {
          type: "open",
          stream,
          text: str(body, "text", stream),
          voice: optStr(body, "voice", stream),
          options: optObject(body, "options", stream),
          credit: optCount(body, "credit", stream),
        };
      }
      case "cancel":
        return { type: "cancel", stream: id(body) };
      case "credit": {
        const stream = id(body);
        return { type: "credit", stream, bytes: count(body, "bytes", stream) };
      }
      case "resume": {
        const stream = id(body);
        return { type: "resume", stream, after: count(body, "after", stream), token: optStr(body, "token", stream) };
      }
      default:
        throw new WireError(ErrorCode.UNKNOWN_TYPE, `unknown message type ${JSON.stringify(kind)}`, maybeId(body));
    }
  });
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** @param {unknown} value @param {string} where */
function checkJson(value, where) {
  if (typeof value === "number" && !Number.isFinite(value)) throw new LocalProtocolError(`${where}: ${value} is not JSON`);
  if (typeof value === "string" && LONE_SURROGATE.test(value)) throw new LocalProtocolError(`${where}: lone surrogate`);
  if (typeof value === "bigint" || typeof value === "function" || typeof value === "symbol") {
    throw new LocalProtocolError(`${where}: a ${typeof value} is not JSON`);
  }
  if (typeof value === "object" && value !== null) {
    for (const [key, item] of Object.entries(value)) {
      checkJson(key, where);
      checkJson(item, `${where}.${key}`);
    }
  }
}

/**
 * The canonical JSON text of a control message (either direction): members in the
 * specification's order, optional members left out when not given, no whitespace.
 * A client `open` is told from a server `open` by its `text` member.
 * @param {import("./diaproto.d.ts").AnyMessage} message
 * @returns {string}
 */
export function encodeMessage(message) {
  /** @type {Record<string, unknown>} */
  let body;
  const m = /** @type {Record<string, any>} */ (message);
  switch (m.type) {
    case "open":
      if (m.text !== undefined && m.text !== null) {
        body = { type: "open", stream: m.stream, text: m.text };
        if (m.voice != null) body.voice = m.voice;
        if (m.options != null && Object.keys(m.options).length > 0) body.options = m.options;
        if (m.credit != null) body.credit = m.credit;
      } else {
        body = { type: "open", stream: m.stream };
        if (m.token != null) body.token = m.token;
      }
      break;
    case "cancel":
      body = { type: "cancel", stream: m.stream };
      break;
    case "credit":
      body = { type: "credit", stream: m.stream, bytes: m.bytes };
      break;
    case "resume":
      body = { type: "resume", stream: m.stream, after: m.after };
      if (m.token != null) body.token = m.token;
      break;
    case "end":
      body = { type: "end", stream: m.stream, seq: m.seq };
      break;
    case "error":
      body = { type: "error", stream: m.stream ?? null, code: m.code };
      if (m.message) body.message = m.message;
      break;
    default:
      throw new LocalProtocolError(`unknown message type ${JSON.stringify(m.type)}`);
  }
  for (const name of ["stream", "credit", "bytes", "after", "seq"]) {
    const value = body[name];
    if (value !== undefined && value !== null && !isCount(value)) {
      throw new LocalProtocolError(`'${name}' must be an integer in 0..2**32-1, not ${value}`);
    }
  }
  if (body.stream === null && m.type !== "error") throw new LocalProtocolError("'stream' is required");
  for (const name of ["text", "voice", "token", "code", "message"]) {
    if (body[name] !== undefined && typeof body[name] !== "string") {
      throw new LocalProtocolError(`'${name}' must be a string`);
    }
  }
  if (body.options !== undefined && !isObject(body.options)) throw new LocalProtocolError("'options' must be an object");
  checkJson(body, "message");
  return JSON.stringify(body);
}

// --- streams -------------------------------------------------------------------------------

const now = () => (globalThis.performance ? globalThis.performance.now() : Date.now());

/**
 * Client-side statistics of a stream. Times are milliseconds.
 */
export class StreamStats {
  constructor() {
    /** From the request (open() / fetch) to the first chunk; null before it. */
    this.ttfbMs = /** @type {number|null} */ (null);
    /** Standard deviation of the gaps between chunk arrivals; null before two gaps. */
    this.jitterMs = /** @type {number|null} */ (null);
    /** Mean gap between chunk arrivals; null before the second chunk. */
    this.meanGapMs = /** @type {number|null} */ (null);
    /** The latest gap between chunk arrivals. */
    this.lastGapMs = /** @type {number|null} */ (null);
    this.chunks = 0;
    this.bytes = 0;
    /** Reconnections: SSE resumes, or resumes on a new WebSocket connection. */
    this.reconnects = 0;
    this.startedAt = 0;
    this.lastArrival = /** @type {number|null} */ (null);
    this._n = 0;
    this._mean = 0;
    this._m2 = 0;
  }

  /** @param {number} t @param {number} nbytes */
  _arrival(t, nbytes) {
    if (this.lastArrival === null) {
      this.ttfbMs = t - this.startedAt;
    } else {
      const gap = t - this.lastArrival;
      this.lastGapMs = gap;
      this._n += 1; // Welford's running variance
      const delta = gap - this._mean;
      this._mean += delta / this._n;
      this._m2 += delta * (gap - this._mean);
      this.meanGapMs = this._mean;
      this.jitterMs = this._n >= 2 ? Math.sqrt(this._m2 / this._n) : null;
    }
    this.lastArrival = t;
    this.chunks += 1;
    this.bytes += nbytes;
  }
}

/**
 * A stream of chunks: an async iterator of `Uint8Array`s plus callbacks. Chunks are queued
 * for the iterator unless `onchunk` is set and no iterator has been asked for.
 */
export class ChunkStream {
  /** @param {{now?: () => number}} [options] */
  constructor(options = {}) {
    this._now = options.now ?? now;
    this.stats = new StreamStats();
    this.stats.startedAt = this._now();
    /** @type {"opening"|"open"|"ended"|"error"|"cancelled"} */
    this.state = "opening";
    /** @type {StreamFailure|null} */
    this.error = null;
    /** Sequence number of the last chunk received (0 before the first). */
    this.lastSeq = 0;
    /** @type {((chunk: Uint8Array, seq: number, stream: ChunkStream) => void)|null} */
    this.onchunk = null;
    /** @type {((lastSeq: number, stream: ChunkStream) => void)|null} */
    this.onend = null;
    /** @type {((error: StreamFailure, stream: ChunkStream) => void)|null} */
    this.onerror = null;
    /** @type {Uint8Array[]} */
    this._queue = [];
    /** @type {(() => void)|null} */
    this._wake = null;
    this._iterating = false;
    /** @type {(value: void) => void} */
    let resolve = () => {};
    /** @type {(error: unknown) => void} */
    let reject = () => {};
    /** Settles when the stream is over: resolves on end or cancel, rejects on error. */
    this.finished = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.finished.catch(() => {}); // observed through onerror / the iterator as well
    this._resolve = resolve;
    this._reject = reject;
  }

  /** True once the stream has ended, failed or been cancelled. */
  get done() {
    return this.state === "ended" || this.state === "error" || this.state === "cancelled";
  }

  /** @param {Uint8Array} chunk @param {number} seq */
  _deliver(chunk, seq) {
    if (this.done) return;
    this.state = "open";
    this.lastSeq = seq;
    this.stats._arrival(this._now(), chunk.byteLength);
    if (this.onchunk) {
      this.onchunk(chunk, seq, this);
      this._delivered(chunk.byteLength);
    }
    if (this._iterating || !this.onchunk) this._queue.push(chunk);
    this._notify();
  }

  /** Bytes handed to the application by onchunk or the iterator (a hook for credit). */
  // eslint-disable-next-line no-unused-vars
  _delivered(_nbytes) {}

  /** @param {number} lastSeq */
  _end(lastSeq) {
    if (this.done) return;
    this.state = "ended";
    this.onend?.(lastSeq, this);
    this._resolve();
    this._notify();
  }

  /** @param {StreamFailure} error */
  _fail(error) {
    if (this.done) return;
    this.state = "error";
    this.error = error;
    this.onerror?.(error, this);
    this._reject(error);
    this._notify();
  }

  _cancelled() {
    if (this.done) return;
    this.state = "cancelled";
    this._queue.length = 0;
    this._resolve();
    this._notify();
  }

  _notify() {
    const wake = this._wake;
    this._wake = null;
    wake?.();
  }

  /** Pull more input (SSE streams read the network here); push streams wait. */
  async _pull() {
    await new Promise((resolve) => {
      this._wake = () => resolve(undefined);
    });
  }

  /** @returns {AsyncIterator<Uint8Array>} */
  [Symbol.asyncIterator]() {
    this._iterating = true;
    return {
      next: async () => {
        for (;;) {
          const chunk = this._queue.shift();
          if (chunk) {
            if (!this.onchunk) this._delivered(chunk.byteLength);
            return { value: chunk, done: false };
          }
          if (this.state === "error") throw this.error;
          if (this.done) return { value: undefined, done: true };
          await this._pull();
        }
      },
      return: async () => {
        if (!this.done) this.cancel();
        return { value: undefined, done: true };
      },
    };
  }

  /** Read the stream to its end (so callbacks fire for pull-based streams); resolves at the end. */
  async run() {
    for await (const _ of this); // eslint-disable-line no-unused-vars
  }

  /** Stop the stream; nothing more is delivered. */
  cancel() {
    this._cancelled();
  }

  /**
   * Tell the stream that `nbytes` of its audio have left the playback buffer, so that
   * credit can be granted back (WebSocket streams); a no-op for other streams.
   * @param {number} _nbytes
   */
  // eslint-disable-next-line no-unused-vars
  consumed(_nbytes) {}
}

/**
 * One stream of a {@link DiaprotoSocket}. Credit-based by default: the server may send
 * `window` bytes ahead; bytes count as consumed when `consumed()` says so (grantOn
 * "consumed", for a player) or when they are handed to the application (grantOn "read").
 * Consumption is granted back once it adds up to {@link SpeechStream#grantStep} bytes.
 */
export class SpeechStream extends ChunkStream {
  /**
   * @param {DiaprotoSocket} socket
   * @param {number} id
   * @param {{window: number|null, grantOn: "consumed"|"read", grantStep?: number|null,
   *   now?: () => number}} options
   */
  constructor(socket, id, options) {
    super(options);
    this.socket = socket;
    this.id = id;
    /** The resume token from the server's `open`. */
    this.token = /** @type {string|null} */ (null);
    /** Credit window in bytes, or null when the stream is not credit-based. */
    this.window = options.window;
    this.grantOn = options.grantOn;
    /** Total bytes granted so far (the initial credit included). */
    this.granted = options.window ?? 0;
    /** Credit messages sent for this stream (the initial credit of `open` not counted). */
    this.grants = 0;
    /** @type {number|null} the grant step asked for; null: the default for grantOn */
    this._step = options.grantStep ?? null;
    /** The largest chunk received so far (the default step of a player follows it). */
    this._largestChunk = 0;
    this._pending = 0;
    /** Bytes consumed so far (what credit is granted back for). */
    this._consumedBytes = 0;
    /** Set from a dropped connection until the server answers the stream's `resume`. */
    this._awaitingResume = false;
    /** Resumes of this stream answered `busy` in a row (each is asked again after a backoff). */
    this._resumeRetries = 0;
  }

  /**
   * Consumption is granted back once it reaches this many bytes. Asked for with
   * `grantStep` (kept within 1..window); by default a quarter window for grantOn "read"
   * (bulk readers want few messages) and, for grantOn "consumed" (a player), about one
   * received chunk (the largest so far, within 1..window/4), so that the server sends
   * chunk by chunk at the pace of playback instead of in quarter-window bursts.
   */
  get grantStep() {
    const window = this.window ?? 0;
    if (this._step !== null) return Math.max(1, Math.min(this._step, window));
    const quarter = Math.max(1, window / 4);
    if (this.grantOn === "read") return quarter;
    return Math.max(1, Math.min(this._largestChunk, quarter));
  }

  /** @param {Uint8Array} chunk @param {number} seq */
  _deliver(chunk, seq) {
    if (chunk.byteLength > this._largestChunk) this._largestChunk = chunk.byteLength;
    super._deliver(chunk, seq);
  }

  /** @param {number} nbytes */
  _delivered(nbytes) {
    if (this.grantOn === "read") this._credit(nbytes);
  }

  /** @param {number} nbytes */
  consumed(nbytes) {
    if (this.grantOn === "consumed") this._credit(nbytes);
  }

  /** @param {number} nbytes */
  _credit(nbytes) {
    if (this.window === null || this.done || !(nbytes > 0)) return;
    this._consumedBytes += nbytes;
    this._pending += nbytes;
    if (this._awaitingResume) return; // granted all at once when the resume is acknowledged
    // Coalesced: one credit message per grantStep of consumption, not one per call.
    if (this._pending >= this.grantStep) this._grant(Math.floor(this._pending));
  }

  /** @param {number} nbytes */
  _grant(nbytes) {
    const bytes = Math.min(nbytes, MAX_ID);
    this._pending -= bytes;
    this.granted += bytes;
    // Grants made in one turn go out as one message (they are flushed together anyway).
    const queued = /** @type {{type: string, stream: number, bytes: number}[]} */ (this.socket._control)
      .find((m) => m.type === "credit" && m.stream === this.id);
    if (queued && queued.bytes + bytes <= MAX_ID) {
      queued.bytes += bytes;
      return;
    }
    this.grants += 1;
    this.socket._send({ type: "credit", stream: this.id, bytes }, true);
  }

  /**
   * The server acknowledged the stream's `resume`. A resumed stream starts with credit 0
   * (protocol §10): grant what the window has room for now, the window less what was
   * received and not yet consumed; a deficit (more held than the window) is paid back from
   * the next consumption before anything more is granted.
   */
  _resumed() {
    if (this.window === null || this.done) return;
    const room = Math.min(this.window, this.window - (this.stats.bytes - this._consumedBytes));
    this._pending = room > 0 ? Math.floor(room) : room;
    if (room >= 1) this._grant(Math.floor(room));
  }

  cancel() {
    if (this.done) return;
    this.socket.cancel(this.id);
  }
}

const NO_WEBSOCKET =
  "no WebSocket implementation here: browsers and Node >= 22 have one; on Node 18-21 " +
  "`npm install ws` (then DiaprotoSocket.connect finds it), run Node with " +
  "--experimental-websocket (Node 20), or pass options.WebSocket";

/**
 * The WebSocket class to use: `options.WebSocket`, else the global one (browsers, Node >= 22,
 * Node 20 with --experimental-websocket), else the `ws` package when it is installed.
 * @param {{WebSocket?: any}} [options]
 * @returns {Promise<any>}
 */
export async function findWebSocket(options = {}) {
  if (options.WebSocket) return options.WebSocket;
  if (globalThis.WebSocket) return globalThis.WebSocket;
  const name = "ws"; // a variable: bundlers for browsers must not try to resolve it
  try {
    const module = await import(name);
    return module.WebSocket ?? module.default;
  } catch {
    throw new Error(NO_WEBSOCKET);
  }
}

/**
 * A diaproto.v1 WebSocket connection carrying any number of {@link SpeechStream}s.
 *
 * Outgoing messages queued in one turn are flushed together in one microtask, control
 * (cancel, credit) before anything else queued (opens); incoming records are dispatched
 * to their streams.
 *
 * After an unexpected close (not `close()`, and while some stream still runs) a socket made
 * from a URL dials again, with exponential backoff and jitter, and sends each running
 * stream's `resume` (its token, `after` its last record), so it goes on with nothing twice
 * and nothing lost; a refused resume (`replay_gap`, `unknown_stream`, ...) fails the stream
 * with that code. A stream without a token (not acknowledged yet) fails with
 * `connection_closed`; opens not sent yet go out on the new connection.
 */
export class DiaprotoSocket {
  /**
   * Connect to `url` with the WebSocket {@link findWebSocket} finds (the `ws` package on a
   * Node without a global WebSocket); resolves once the connection is open.
   * @param {string|URL} url
   * @param {object} [options] as for the constructor
   * @returns {Promise<DiaprotoSocket>}
   */
  static async connect(url, options = {}) {
    const WebSocket = await findWebSocket(options);
    const socket = new DiaprotoSocket(url, { ...options, WebSocket });
    await socket.ready;
    return socket;
  }

  /**
   * @param {string|URL|WebSocket|object} target a ws:// or wss:// URL, or an existing
   *   WebSocket-like object (with send, close, readyState, addEventListener)
   * @param {{WebSocket?: any, firstStreamId?: number, window?: number|null,
   *   grantOn?: "consumed"|"read", grantStep?: number|null, now?: () => number,
   *   reconnect?: false|{attempts?: number, initialDelayMs?: number, maxDelayMs?: number},
   *   timers?: {setTimeout: Function, clearTimeout: Function}, random?: () => number}} [options]
   *   `reconnect`: after an unexpected close of a connection made from a URL, dial again
   *   (exponential backoff with jitter) and resume the streams (see `_dropped`); false: never.
   */
  constructor(target, options = {}) {
    if (typeof target === "string" || target instanceof URL) {
      const Impl = options.WebSocket ?? globalThis.WebSocket;
      if (!Impl) throw new Error(NO_WEBSOCKET);
      this.ws = new Impl(String(target), [SUBPROTOCOL]);
    } else {
      this.ws = /** @type {any} */ (target);
    }
    try {
      this.ws.binaryType = "arraybuffer"; // records arrive as ArrayBuffers, in order
    } catch {
      // a WebSocket-like object without binaryType: Blobs and Buffers are handled too
    }
    this._options = options;
    // Reconnection dials the URL again: a WebSocket object given as the target cannot be.
    const dialable = typeof target === "string" || target instanceof URL;
    const Dial = options.WebSocket ?? globalThis.WebSocket ?? this.ws.constructor;
    /** @type {{url: string, Impl: any}|null} */
    this._dial = dialable && options.reconnect !== false ? { url: String(target), Impl: Dial } : null;
    /** Reconnection settings (attempts in a row, backoff bounds in ms). */
    this.reconnect = { attempts: 5, initialDelayMs: 250, maxDelayMs: 5000, ...(options.reconnect || {}) };
    this._timers = options.timers ?? { setTimeout: globalThis.setTimeout.bind(globalThis), clearTimeout: globalThis.clearTimeout.bind(globalThis) };
    this._random = options.random ?? Math.random;
    /** True from an unexpected close until the next connection is open (streams wait). */
    this.reconnecting = false;
    /** Connections made again after unexpected closes. */
    this.reconnects = 0;
    this._attempt = 0;
    this._everOpen = this.ws.readyState === 1;
    /** @type {any} */
    this._timer = null;
    /** @type {unknown} */
    this._lastClose = undefined;
    /** @type {((info: {attempt: number, delayMs: number}) => void)|null} */
    this.onreconnecting = null;
    /** @type {((info: {attempt: number}) => void)|null} */
    this.onreconnected = null;
    this._nextId = options.firstStreamId ?? 1;
    /** @type {Map<number, SpeechStream>} */
    this.streams = new Map();
    /** @type {object[]} */
    this._control = [];
    /** @type {object[]} */
    this._other = [];
    this._scheduled = false;
    this.closed = false;
    this._closedOnce = false;
    /** @type {Promise<void>|null} */
    this._blobs = null;
    /** Number of flushes that sent something (each sends one batch). */
    this.flushes = 0;
    /** Server messages we could not decode (ignored, as the protocol says). */
    this.badMessages = 0;
    /** @type {((error: {type: "error", stream: number|null, code: string, message: string}) => void)|null} */
    this.onerror = null;
    /** @type {((event: unknown) => void)|null} */
    this.onclose = null;
    /** Resolves once the connection is open (and speaks diaproto.v1). */
    this.ready = new Promise((resolve, reject) => {
      if (this.ws.readyState === 1) resolve(undefined);
      this._on("open", () => {
        if (this.ws.protocol && this.ws.protocol !== SUBPROTOCOL) {
          reject(new StreamFailure("bad_response", `server selected subprotocol ${this.ws.protocol}`));
          this.closed = true; // send nothing on this connection
          this.close(1000, "diaproto.v1 not selected");
          return;
        }
        resolve(undefined);
        this._schedule();
      });
      this._on("close", () => reject(new StreamFailure("connection_closed", "WebSocket closed")));
    });
    this.ready.catch(() => {});
    this._listen(this.ws);
  }

  /** @param {string} type @param {(event: any) => void} handler @param {any} [ws] */
  _on(type, handler, ws = this.ws) {
    if (typeof ws.addEventListener === "function") {
      ws.addEventListener(type, handler);
    } else if (typeof ws.on === "function") {
      ws.on(type, type === "message" ? (/** @type {any} */ data) => handler({ data }) : handler);
    }
  }

  /**
   * Route a connection's events here while it is the current one (events of a connection
   * that was replaced after a drop are ignored).
   * @param {any} ws
   */
  _listen(ws) {
    this._on("open", () => this._opened(ws), ws);
    this._on("message", (/** @type {any} */ event) => {
      if (ws !== this.ws) return;
      this._attempt = 0; // the connection works: the next drop gets every attempt again
      this._receive(event.data);
    }, ws);
    this._on("close", (/** @type {any} */ event) => {
      if (ws === this.ws) this._dropped(event);
    }, ws);
    // A close always follows; a listener keeps Node's `ws` from throwing the error (a
    // refused reconnection, a reset) as an unhandled EventEmitter "error".
    this._on("error", () => {}, ws);
  }

  /** @param {any} ws */
  _opened(ws) {
    if (ws !== this.ws || this.closed) return;
    if (ws.protocol && ws.protocol !== SUBPROTOCOL) {
      // The first connection: `ready` rejects and closes it. A new one: a failed attempt.
      if (this.reconnecting) ws.close(1000, "diaproto.v1 not selected");
      return;
    }
    this._everOpen = true;
    if (this.reconnecting) this._reconnected();
  }

  /**
   * The current connection closed. Unless the application closed it, or no stream is left
   * to continue, reconnect and resume the streams that have a resume token (protocol §10).
   * @param {unknown} event
   */
  _dropped(event) {
    if (this._closedOnce) return;
    this._lastClose = event;
    if (this.reconnecting) {
      this._scheduleReconnect(); // an attempt that failed
      return;
    }
    if (this.closed || !this._dial || !this._everOpen || !this._live()) {
      this._closed(event);
      return;
    }
    // Opens still queued were never sent: they go out on the next connection. Queued
    // credit is folded into the grant made after each resume; a queued cancel's stream is
    // over here already (and is not resumed).
    const unsent = new Set(this._other.map((m) => /** @type {any} */ (m).stream));
    this._control = [];
    this.reconnecting = true;
    for (const stream of [...this.streams.values()]) {
      if (stream.done) {
        this.streams.delete(stream.id);
      } else if (!unsent.has(stream.id) && stream.token === null) {
        // Sent but not acknowledged (or acknowledged without a token): there is nothing to
        // resume it with, and opening it again could start a second generation while the
        // server still runs the first.
        this.streams.delete(stream.id);
        const why = stream.state === "opening" ? "before the server acknowledged the stream" : "and the stream has no resume token";
        stream._fail(new StreamFailure("connection_closed", `the WebSocket closed ${why}`, stream.id));
      } else if (!unsent.has(stream.id)) {
        stream._awaitingResume = true; // credit waits for the resume's acknowledgement
      }
    }
    if (this.closed) return; // the application closed the socket from a callback
    if (!this._live()) {
      this._closed(event);
      return;
    }
    this._scheduleReconnect();
  }

  /** Streams still running (or waiting for their open to be sent). */
  _live() {
    for (const stream of this.streams.values()) if (!stream.done) return true;
    return false;
  }

  /** Wait the next backoff delay, then dial again; give up after `reconnect.attempts`. */
  _scheduleReconnect() {
    const { attempts, initialDelayMs, maxDelayMs } = this.reconnect;
    this._attempt += 1;
    if (this._attempt > attempts || !this._live()) {
      const why = this._live() ? `the WebSocket closed; gave up after ${attempts} reconnection attempts` : undefined;
      this._closed(this._lastClose, why);
      return;
    }
    // Exponential backoff with jitter: between half and all of min(max, initial * 2^(n-1)).
    const base = Math.min(maxDelayMs, initialDelayMs * 2 ** (this._attempt - 1));
    const delayMs = Math.round(base / 2 + (this._random() * base) / 2);
    const attempt = this._attempt;
    this.onreconnecting?.({ attempt, delayMs });
    if (this.closed) return;
    this._timer = this._timers.setTimeout(() => {
      this._timer = null;
      this._redial();
    }, delayMs);
  }

  _redial() {
    if (this.closed) return;
    if (!this._live()) {
      this._closed(this._lastClose);
      return;
    }
    const dial = /** @type {{url: string, Impl: any}} */ (this._dial);
    let ws;
    try {
      ws = new dial.Impl(dial.url, [SUBPROTOCOL]);
    } catch {
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    try {
      ws.binaryType = "arraybuffer";
    } catch {
      // handled as for the first connection
    }
    this._listen(ws);
    if (ws.readyState === 1) this._opened(ws);
  }

  /** The new connection is open: resume the streams that were running, then flush. */
  _reconnected() {
    this.reconnecting = false;
    this.reconnects += 1;
    const resumes = [];
    for (const stream of this.streams.values()) {
      if (stream.done || !stream._awaitingResume) continue;
      resumes.push({ type: "resume", stream: stream.id, after: stream.lastSeq, token: stream.token });
      stream.stats.reconnects += 1;
    }
    this._control = [...resumes, ...this._control];
    this.onreconnected?.({ attempt: this._attempt });
    this._schedule();
  }

  /**
   * Open a stream: send `open` and return the stream at once (its id is chosen here).
   * @param {string} text
   * @param {{voice?: string, speed?: number, options?: Record<string, unknown>,
   *   credit?: number|null, grantOn?: "consumed"|"read", grantStep?: number|null}} [options]
   *   `credit` is the credit window in bytes (default 131072); null opens a stream that is
   *   not credit-based. `grantStep`: grant consumption back once it reaches this many bytes
   *   (default: see {@link SpeechStream#grantStep}).
   * @returns {SpeechStream}
   */
  open(text, options = {}) {
    if (this.closed) throw new StreamFailure("connection_closed", "the socket is closed");
    const id = this._nextId++;
    const window = options.credit === undefined ? this._options.window ?? 131072 : options.credit;
    const stream = new SpeechStream(this, id, {
      window,
      grantOn: options.grantOn ?? this._options.grantOn ?? "consumed",
      grantStep: options.grantStep === undefined ? this._options.grantStep : options.grantStep,
      now: this._options.now,
    });
    this.streams.set(id, stream);
    const settings = { ...(options.options ?? {}) };
    if (options.speed !== undefined) settings.speed = options.speed;
    this._send({ type: "open", stream: id, text, voice: options.voice ?? null, options: settings, credit: window });
    return stream;
  }

  /**
   * Cancel a stream: nothing more is delivered for it. An `open` not yet sent is simply
   * dropped from the queue.
   * @param {number|SpeechStream} stream
   */
  cancel(stream) {
    const id = typeof stream === "number" ? stream : stream.id;
    const target = this.streams.get(id);
    if (target && target._awaitingResume && this.reconnecting) {
      // Its resume is not sent yet: it simply ends here and is not resumed.
      this.streams.delete(id);
      target._cancelled();
      return;
    }
    const queued = this._other.findIndex((m) => /** @type {any} */ (m).stream === id);
    if (queued >= 0) {
      this._other.splice(queued, 1);
      this._control = this._control.filter((m) => /** @type {any} */ (m).stream !== id);
    } else if (target && !target.done) {
      this._control = this._control.filter((m) => /** @type {any} */ (m).stream !== id);
      this._send({ type: "cancel", stream: id }, true);
    }
    target?._cancelled();
  }

  /** Close the connection; streams still running fail with `connection_closed`. */
  close(code = 1000, reason = "") {
    if (!this.closed) this.flush();
    this.closed = true;
    this.reconnecting = false;
    try {
      this.ws.close(code, reason);
    } catch {
      // already closed
    }
    this._closed(undefined);
  }

  /**
   * Queue a message; control messages go before everything queued that is not control.
   * @param {object} message
   * @param {boolean} [control]
   */
  _send(message, control = false) {
    if (this.closed) return;
    (control ? this._control : this._other).push(message);
    this._schedule();
  }

  _schedule() {
    if (this._scheduled) return;
    this._scheduled = true;
    queueMicrotask(() => {
      this._scheduled = false;
      this.flush();
    });
  }

  /** Send everything queued now (normally done in a microtask). */
  flush() {
    if (this.ws.readyState !== 1) return; // sent on "open"
    const batch = [...this._control, ...this._other];
    this._control = [];
    this._other = [];
    if (batch.length === 0) return;
    this.flushes += 1;
    for (const message of batch) this.ws.send(encodeMessage(/** @type {any} */ (message)));
  }

  /** @param {unknown} data */
  _receive(data) {
    if (typeof data === "string") {
      let message;
      try {
        message = decodeServerMessage(data);
      } catch {
        this.badMessages += 1; // a client never answers with error: it ignores the message
        return;
      }
      this._control_message(message);
      return;
    }
    if (typeof Blob !== "undefined" && data instanceof Blob) {
      // binaryType could not be set: keep order by chaining.
      this._blobs = (this._blobs ?? Promise.resolve()).then(async () => this._receive(await data.arrayBuffer()));
      return;
    }
    let records;
    try {
      records = decodeRecords(/** @type {ArrayBuffer} */ (data));
    } catch {
      this.badMessages += 1;
      return;
    }
    for (const { stream, seq, data: payload } of records) {
      const target = this.streams.get(stream);
      // seq <= lastSeq: already delivered (a server re-sending more than a resume asked for).
      if (target && !target.done && seq > target.lastSeq) target._deliver(payload, seq);
    }
  }

  /** @param {import("./diaproto.d.ts").ServerMessage} message */
  _control_message(message) {
    const target = message.stream === null ? undefined : this.streams.get(message.stream);
    switch (message.type) {
      case "open":
        if (target) {
          target.token = message.token ?? target.token;
          if (target.state === "opening") target.state = "open";
          if (target._awaitingResume) {
            target._awaitingResume = false;
            target._resumeRetries = 0;
            if (target.state === "cancelled") this._send({ type: "cancel", stream: target.id }, true);
            else target._resumed();
          }
        }
        break;
      case "end":
        if (target) {
          this.streams.delete(target.id);
          target._end(message.seq);
        }
        break;
      case "error":
        this.onerror?.(message);
        // `busy` answering a resume means "retry shortly" (the shared journal was slow).
        if (target && target._awaitingResume && message.code === "busy" && this._retryResume(target)) break;
        // An error answering a resume (unknown_stream, replay_gap, ...) ends the stream too.
        if (target && (target._awaitingResume || !ONE_MESSAGE_CODES.has(message.code) || target.state === "opening")) {
          this.streams.delete(target.id);
          target._fail(new StreamFailure(message.code, message.message, message.stream));
        }
        break;
    }
  }

  /**
   * A `resume` answered `busy` (the server's shared journal did not answer in time): ask
   * again on the same connection after a backoff, as many times as a reconnection would try.
   * @param {SpeechStream} stream
   * @returns {boolean} whether it will be asked again (else the stream fails with `busy`)
   */
  _retryResume(stream) {
    const { attempts, initialDelayMs, maxDelayMs } = this.reconnect;
    stream._resumeRetries += 1;
    if (stream._resumeRetries > attempts) return false;
    const base = Math.min(maxDelayMs, initialDelayMs * 2 ** (stream._resumeRetries - 1));
    const delayMs = Math.round(base / 2 + (this._random() * base) / 2);
    const ws = this.ws;
    this._timers.setTimeout(() => {
      // A connection lost meanwhile resumes the stream itself once it is back.
      if (this.ws !== ws || this.reconnecting || !stream._awaitingResume || this.streams.get(stream.id) !== stream) return;
      this._send({ type: "resume", stream: stream.id, after: stream.lastSeq, token: stream.token }, true);
    }, delayMs);
    return true;
  }

  /** @param {unknown} event @param {string} [why] */
  _closed(event, why = "the WebSocket closed") {
    if (this._closedOnce) return;
    this._closedOnce = true;
    this.closed = true;
    this.reconnecting = false;
    if (this._timer !== null) this._timers.clearTimeout(this._timer);
    this._timer = null;
    for (const stream of this.streams.values()) {
      stream._fail(new StreamFailure("connection_closed", why, stream.id));
    }
    this.streams.clear();
    this.onclose?.(event);
  }
}

// --- Server-Sent Events --------------------------------------------------------------------

/**
 * The sequence number a data event's id ends with: ids are `<epoch>.<seq>` (the epoch names
 * the stream's history, echoed back in `Last-Event-ID`); a bare number is read as is.
 * NaN when the id ends in no number.
 * @param {string|null|undefined} id
 */
export function eventSeq(id) {
  if (id === null || id === undefined) return NaN;
  const tail = id.slice(id.lastIndexOf(".") + 1);
  return /^[0-9]{1,15}$/.test(tail) ? Number(tail) : NaN;
}

/**
 * An incremental parser for `text/event-stream` (WHATWG HTML, "event stream interpretation"):
 * lines end in CR, LF or CRLF, split anywhere; a leading BOM is skipped; an `id` holding NUL
 * is ignored; `retry` must be all digits; an event without data is not dispatched and one
 * cut off before its blank line never is. `lastEventId` takes an id when its block ends.
 */
export class SseParser {
  /** @param {{lastEventId?: string|null, maxLine?: number}} [options] */
  constructor(options = {}) {
    this.lastEventId = options.lastEventId ?? null;
    this.maxLine = options.maxLine ?? 1 << 20;
    /** The latest `retry` value (ms), or null. */
    this.retry = /** @type {number|null} */ (null);
    this._decoder = new TextDecoder("utf-8");
    this._buffer = "";
    this._skipLf = false;
    /** @type {string[]} */
    this._data = [];
    this._event = "";
    this._id = this.lastEventId;
  }

  /**
   * Parse bytes (or text); returns the events completed by them.
   * @param {Uint8Array|string} chunk
   * @returns {{event: string, data: string, id: string|null}[]}
   */
  feed(chunk) {
    const text = typeof chunk === "string" ? chunk : this._decoder.decode(chunk, { stream: true });
    let buf = this._buffer + text;
    /** @type {{event: string, data: string, id: string|null}[]} */
    const events = [];
    let start = 0;
    for (;;) {
      if (this._skipLf && start < buf.length) {
        this._skipLf = false;
        if (buf[start] === "\n") start += 1;
      }
      let end = -1;
      for (let i = start; i < buf.length; i++) {
        const c = buf.charCodeAt(i);
        if (c === 10 || c === 13) {
          end = i;
          break;
        }
      }
      if (end < 0) break;
      this._line(buf.slice(start, end), events);
      if (buf[end] === "\r") this._skipLf = true;
      start = end + 1;
    }
    this._buffer = buf.slice(start);
    if (this._buffer.length > this.maxLine) throw new StreamFailure("bad_response", "SSE line too long");
    return events;
  }

  /** @param {string} line @param {{event: string, data: string, id: string|null}[]} events */
  _line(line, events) {
    if (line === "") {
      this.lastEventId = this._id;
      if (this._data.length > 0) {
        events.push({ event: this._event || "message", data: this._data.join("\n"), id: this.lastEventId });
      }
      this._data = [];
      this._event = "";
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") this._data.push(value);
    else if (name === "event") this._event = value;
    else if (name === "id") {
      if (!value.includes("\0")) this._id = value;
    } else if (name === "retry" && /^[0-9]+$/.test(value)) {
      const retry = Number(value);
      if (Number.isSafeInteger(retry)) this.retry = retry;
    }
  }
}

/** @param {string} text */
function fromBase64(text) {
  const U8 = /** @type {any} */ (Uint8Array);
  if (typeof U8.fromBase64 === "function") return /** @type {Uint8Array} */ (U8.fromBase64(text));
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/** @param {number} ms @param {AbortSignal} signal */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve(undefined);
    }, { once: true });
  });
}

/**
 * One stream over Server-Sent Events, read with `fetch` so it works with POST and reads the
 * network only as fast as the consumer pulls chunks (backpressure). After a dropped
 * connection it reconnects with `Last-Event-ID` (at most `maxRetries` times in a row,
 * waiting the server's `retry:` delay) and skips chunks it already holds.
 */
export class SseSpeechStream extends ChunkStream {
  /**
   * @param {string|URL} url
   * @param {{method?: "GET"|"POST", body?: unknown, headers?: Record<string, string>,
   *   fetch?: typeof fetch, maxRetries?: number, retryMs?: number, lastEventId?: string|null,
   *   now?: () => number}} [options] `body` (POST) is sent as JSON.
   */
  constructor(url, options = {}) {
    super(options);
    this.url = String(url);
    this.method = options.method ?? (options.body === undefined ? "GET" : "POST");
    this._body = options.body;
    this._headers = options.headers ?? {};
    this._fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.maxRetries = options.maxRetries ?? 3;
    /** Delay before a reconnection (ms); a `retry:` field from the server changes it. */
    this.retryMs = options.retryMs ?? 1000;
    this._abort = new AbortController();
    this._parser = new SseParser({ lastEventId: options.lastEventId ?? null });
    /** @type {ReadableStreamDefaultReader<Uint8Array>|null} */
    this._reader = null;
    this._failures = 0;
  }

  /** The id a reconnection sends as `Last-Event-ID` (the last complete event's id). */
  get lastEventId() {
    return this._parser.lastEventId;
  }

  async _connect() {
    /** @type {Record<string, string>} */
    const headers = { Accept: "text/event-stream", "Cache-Control": "no-store", ...this._headers };
    if (this._parser.lastEventId !== null && this._parser.lastEventId !== "") {
      headers["Last-Event-ID"] = this._parser.lastEventId;
    }
    /** @type {RequestInit} */
    const init = { method: this.method, headers, signal: this._abort.signal, cache: "no-store" };
    if (this._body !== undefined) {
      init.body = typeof this._body === "string" ? this._body : JSON.stringify(this._body);
      headers["Content-Type"] ??= "application/json";
    }
    const response = await this._fetch(this.url, init);
    const type = response.headers.get("content-type") ?? "";
    if (!response.ok || !type.toLowerCase().startsWith("text/event-stream")) {
      response.body?.cancel?.().catch?.(() => {});
      const detail = response.ok ? `content type ${type}` : `HTTP ${response.status}`;
      throw new StreamFailure(response.ok ? "bad_response" : "http_error", detail); // not retried
    }
    if (!response.body) throw new StreamFailure("bad_response", "response without a body");
    this._reader = response.body.getReader();
  }

  /** Read until at least one chunk is queued or the stream is over. */
  async _pull() {
    const before = this.stats.chunks;
    while (!this.done && this.stats.chunks === before) {
      try {
        if (!this._reader) await this._connect();
        const reader = /** @type {ReadableStreamDefaultReader<Uint8Array>} */ (this._reader);
        const { value, done } = await reader.read();
        if (done) throw new StreamFailure("network", "the event stream ended before its end event");
        this._handle(this._parser.feed(value));
      } catch (error) {
        if (this.done) return;
        if (error instanceof StreamFailure && error.code !== "network") {
          this._fail(error);
          return;
        }
        // A dropped connection: resume after the last complete event.
        this._reader = null;
        this._parser = new SseParser({ lastEventId: this._parser.lastEventId });
        this._failures += 1;
        if (this._failures > this.maxRetries) {
          const message = error instanceof Error ? error.message : String(error);
          this._fail(new StreamFailure("network", `gave up after ${this.maxRetries} reconnections: ${message}`));
          return;
        }
        this.stats.reconnects += 1;
        await sleep(this.retryMs, this._abort.signal);
      }
    }
  }

  /** @param {{event: string, data: string, id: string|null}[]} events */
  _handle(events) {
    if (this._parser.retry !== null) this.retryMs = this._parser.retry;
    for (const { event, data, id } of events) {
      if (this.done) return;
      this._failures = 0;
      if (event === "data") {
        const seq = eventSeq(id);
        if (Number.isInteger(seq) && seq <= this.lastSeq) continue; // resent after a resume
        let payload;
        try {
          payload = fromBase64(data);
        } catch {
          this._fail(new StreamFailure("bad_response", "data event is not base64"));
          return;
        }
        this._deliver(payload, Number.isInteger(seq) ? seq : this.lastSeq + 1);
      } else if (event === "end" || event === "error") {
        let message;
        try {
          message = decodeServerMessage(data);
        } catch {
          continue; // undecodable: ignored like any unknown message
        }
        this._close();
        if (message.type === "end") this._end(message.seq);
        else if (message.type === "error") this._fail(new StreamFailure(message.code, message.message, message.stream));
      }
      // other event types: ignored (forward compatibility)
    }
  }

  _close() {
    this._reader?.cancel().catch(() => {});
    this._reader = null;
  }

  /** Stop reading and close the response (which cancels the stream on the server). */
  cancel() {
    if (this.done) return;
    this._cancelled();
    this._abort.abort();
    this._close();
  }
}

/**
 * Speak `text` over SSE: GET `/v1/stream?text=...` (with a resume `id`), or POST with JSON.
 * @param {string|URL} base the server's origin, e.g. `location.origin`
 * @param {string} text
 * @param {{voice?: string, speed?: number, method?: "GET"|"POST", fetch?: typeof fetch,
 *   maxRetries?: number, id?: string}} [options]
 * @returns {SseSpeechStream}
 */
export function speakSse(base, text, options = {}) {
  const url = new URL("/v1/stream", base);
  const fields = { text, voice: options.voice ?? "S1", speed: options.speed ?? 1.0 };
  if ((options.method ?? "GET") === "POST") {
    return new SseSpeechStream(url, { method: "POST", body: fields, fetch: options.fetch, maxRetries: options.maxRetries });
  }
  url.searchParams.set("text", fields.text);
  url.searchParams.set("voice", fields.voice);
  url.searchParams.set("speed", String(fields.speed));
  url.searchParams.set("id", options.id ?? randomId());
  return new SseSpeechStream(url, { fetch: options.fetch, maxRetries: options.maxRetries });
}

function randomId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/**
 * Use the browser's own `EventSource` for the GET endpoint (it reconnects with
 * `Last-Event-ID` by itself). Push-based: chunks arrive as the browser reads them.
 * @param {string|URL} url
 * @param {{EventSource?: any, now?: () => number}} [options]
 * @returns {ChunkStream & {source: EventSource}}
 */
export function eventSourceStream(url, options = {}) {
  const Impl = options.EventSource ?? globalThis.EventSource;
  if (!Impl) throw new Error("no EventSource implementation");
  const stream = /** @type {ChunkStream & {source: any}} */ (new ChunkStream(options));
  const source = new Impl(String(url));
  stream.source = source;
  const base = stream.cancel.bind(stream);
  stream.cancel = () => {
    source.close();
    base();
  };
  source.addEventListener("data", (/** @type {MessageEvent} */ event) => {
    const seq = eventSeq(event.lastEventId);
    if (Number.isInteger(seq) && seq <= stream.lastSeq) return;
    stream._deliver(fromBase64(event.data), Number.isInteger(seq) ? seq : stream.lastSeq + 1);
  });
  for (const type of ["end", "error"]) {
    source.addEventListener(type, (/** @type {MessageEvent} */ event) => {
      if (typeof event.data !== "string") {
        // A connection error: EventSource reconnects unless it has given up.
        if (source.readyState === 2) stream._fail(new StreamFailure("network", "EventSource closed"));
        return;
      }
      let message;
      try {
        message = decodeServerMessage(event.data);
      } catch {
        return;
      }
      source.close();
      if (message.type === "end") stream._end(message.seq);
      else if (message.type === "error") stream._fail(new StreamFailure(message.code, message.message, message.stream));
    });
  }
  return stream;
}
