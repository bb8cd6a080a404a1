// TypeScript declarations for diaproto.js (the diaproto.v1 client).

export declare const SUBPROTOCOL: "diaproto.v1";
export declare const MAX_ID: 4294967295;
export declare const ErrorCode: Readonly<{
  BAD_MESSAGE: "bad_message";
  UNKNOWN_TYPE: "unknown_type";
  UNKNOWN_STREAM: "unknown_stream";
  STREAM_EXISTS: "stream_exists";
  REPLAY_GAP: "replay_gap";
  SLOW_CONSUMER: "slow_consumer";
  INVALID_REQUEST: "invalid_request";
  BUSY: "busy";
  LIMIT_EXCEEDED: "limit_exceeded";
  GOING_AWAY: "going_away";
  INTERNAL: "internal";
}>;

/** A received message that could not be accepted. */
export declare class WireError extends Error {
  constructor(code: string, message: string, stream?: number | null);
  readonly code: string;
  /** For client messages: the stream the server's error answer carries. */
  readonly stream: number | null;
}
/** A message this side must not send. */
export declare class LocalProtocolError extends Error {}
/** Why a stream failed: a server error code or connection_closed, network, http_error, bad_response. */
export declare class StreamFailure extends Error {
  constructor(code: string, message: string, stream?: number | null);
  readonly code: string;
  readonly stream: number | null;
}

export interface DataRecord {
  stream: number;
  seq: number;
  data: Uint8Array;
}

export type ClientMessage =
  | { type: "open"; stream: number; text: string; voice: string | null; options: Record<string, unknown>; credit: number | null }
  | { type: "cancel"; stream: number }
  | { type: "credit"; stream: number; bytes: number }
  | { type: "resume"; stream: number; after: number; token: string | null };

export type ServerMessage =
  | { type: "open"; stream: number; token: string | null }
  | { type: "end"; stream: number; seq: number }
  | { type: "error"; stream: number | null; code: string; message: string };

/** Input of encodeMessage: optional members may be omitted. */
export type AnyMessage =
  | { type: "open"; stream: number; text: string; voice?: string | null; options?: Record<string, unknown> | null; credit?: number | null }
  | { type: "open"; stream: number; token?: string | null }
  | { type: "cancel"; stream: number }
  | { type: "credit"; stream: number; bytes: number }
  | { type: "resume"; stream: number; after: number; token?: string | null }
  | { type: "end"; stream: number; seq: number }
  | { type: "error"; stream?: number | null; code: string; message?: string | null };

export declare function decodeRecords(body: ArrayBuffer | ArrayBufferView): DataRecord[];
export declare function encodeRecords(
  records: Iterable<{ stream: number; seq: number; data: ArrayBuffer | ArrayBufferView }>,
): Uint8Array;
export declare function decodeServerMessage(text: string): ServerMessage;
export declare function decodeClientMessage(text: string): ClientMessage;
export declare function encodeMessage(message: AnyMessage): string;

export declare class StreamStats {
  ttfbMs: number | null;
  jitterMs: number | null;
  meanGapMs: number | null;
  lastGapMs: number | null;
  chunks: number;
  bytes: number;
  /** Reconnections: SSE resumes, or resumes on a new WebSocket connection. */
  reconnects: number;
  startedAt: number;
  lastArrival: number | null;
}

export type StreamState = "opening" | "open" | "ended" | "error" | "cancelled";

/** A stream of PCM (or other) chunks: async-iterable, with callbacks. */
export declare class ChunkStream implements AsyncIterable<Uint8Array> {
  constructor(options?: { now?: () => number });
  readonly stats: StreamStats;
  state: StreamState;
  error: StreamFailure | null;
  lastSeq: number;
  readonly done: boolean;
  /** Settles when the stream is over: resolves on end or cancel, rejects on error. */
  readonly finished: Promise<void>;
  onchunk: ((chunk: Uint8Array, seq: number, stream: ChunkStream) => void) | null;
  onend: ((lastSeq: number, stream: ChunkStream) => void) | null;
  onerror: ((error: StreamFailure, stream: ChunkStream) => void) | null;
  [Symbol.asyncIterator](): AsyncIterator<Uint8Array>;
  run(): Promise<void>;
  cancel(): void;
  /** Bytes that left the playback buffer (grants credit back on WebSocket streams). */
  consumed(nbytes: number): void;
}

export declare class SpeechStream extends ChunkStream {
  readonly socket: DiaprotoSocket;
  readonly id: number;
  token: string | null;
  readonly window: number | null;
  readonly grantOn: "consumed" | "read";
  /** Total bytes granted so far, the initial credit included. */
  granted: number;
  /** Credit messages sent for this stream (grants in one turn share one message). */
  grants: number;
  /**
   * Consumption is granted back once it adds up to this many bytes: the `grantStep` asked
   * for (kept within 1..window), else a quarter window for grantOn "read", and for grantOn
   * "consumed" the largest chunk received so far (within 1..window/4): about one credit
   * message per chunk played, so the server sends at the pace of playback.
   */
  readonly grantStep: number;
}

export interface OpenOptions {
  voice?: string;
  speed?: number;
  options?: Record<string, unknown>;
  /** Credit window in bytes (default 131072); null: not credit-based. */
  credit?: number | null;
  /** "consumed": credit follows consumed() (a player); "read": what the application reads. */
  grantOn?: "consumed" | "read";
  /**
   * Grant consumption back once it reaches this many bytes (kept within 1..credit). Default
   * (undefined or null): the socket's `grantStep`, else a quarter of the window for "read"
   * and about one received chunk for "consumed" (see {@link SpeechStream.grantStep}).
   */
  grantStep?: number | null;
}

export interface WebSocketLike {
  readyState: number;
  protocol?: string;
  binaryType?: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener?(type: string, listener: (event: any) => void): void;
  on?(type: string, listener: (...args: any[]) => void): void;
}

export interface DiaprotoSocketOptions {
  WebSocket?: any;
  firstStreamId?: number;
  /** Default credit window of open() (131072). */
  window?: number | null;
  /** Default grantOn of open() ("consumed"). */
  grantOn?: "consumed" | "read";
  /** Default grantStep of open() (see {@link OpenOptions.grantStep}). */
  grantStep?: number | null;
  now?: () => number;
  /**
   * After an unexpected close, dial the URL again and resume the streams (default on; a
   * WebSocket object given as the target cannot be dialled again). false: never.
   */
  reconnect?: false | Partial<ReconnectOptions>;
  /** Timers for the reconnection backoff (tests inject fakes). */
  timers?: { setTimeout(fn: () => void, ms: number): unknown; clearTimeout(id: any): void };
  /** Jitter source, in [0, 1) (default Math.random). */
  random?: () => number;
}

export interface ReconnectOptions {
  /** Connection attempts in a row before the streams fail (default 5). */
  attempts: number;
  /** Backoff before the first attempt (default 250 ms); doubles each attempt. */
  initialDelayMs: number;
  /** Bound of the backoff (default 5000 ms); each delay is jittered to 50..100 % of it. */
  maxDelayMs: number;
}

/**
 * The WebSocket class to use: `options.WebSocket`, else the global one, else the `ws`
 * package when it is installed; rejects with how to get one.
 */
export declare function findWebSocket(options?: { WebSocket?: unknown }): Promise<unknown>;

export declare class DiaprotoSocket {
  /** Connect with the WebSocket {@link findWebSocket} finds; resolves once open. */
  static connect(url: string | URL, options?: DiaprotoSocketOptions): Promise<DiaprotoSocket>;
  constructor(target: string | URL | WebSocketLike, options?: DiaprotoSocketOptions);
  /** The current connection (a new one after each reconnection). */
  readonly ws: WebSocketLike;
  readonly streams: Map<number, SpeechStream>;
  /** Resolves once open (and diaproto.v1 was selected). */
  readonly ready: Promise<void>;
  closed: boolean;
  flushes: number;
  badMessages: number;
  onerror: ((error: { type: "error"; stream: number | null; code: string; message: string }) => void) | null;
  /** Fires once the socket is over (closed by the application, or reconnection gave up). */
  onclose: ((event: unknown) => void) | null;
  /** The settings in force (defaults filled in). */
  readonly reconnect: ReconnectOptions;
  /** True from an unexpected close until the next connection is open. */
  readonly reconnecting: boolean;
  /** Connections made again after unexpected closes. */
  readonly reconnects: number;
  /** An unexpected close: attempt `attempt` follows in `delayMs`. */
  onreconnecting: ((info: { attempt: number; delayMs: number }) => void) | null;
  /** A new connection is open; the streams' `resume`s are on their way. */
  onreconnected: ((info: { attempt: number }) => void) | null;
  open(text: string, options?: OpenOptions): SpeechStream;
  cancel(stream: number | SpeechStream): void;
  flush(): void;
  close(code?: number, reason?: string): void;
}

export interface SseEvent {
  event: string;
  data: string;
  id: string | null;
}

/** The sequence number a data event's id (`<epoch>.<seq>`) ends with; NaN when none. */
export declare function eventSeq(id: string | null | undefined): number;

export declare class SseParser {
  constructor(options?: { lastEventId?: string | null; maxLine?: number });
  lastEventId: string | null;
  retry: number | null;
  feed(chunk: Uint8Array | string): SseEvent[];
}

export interface SseOptions {
  method?: "GET" | "POST";
  body?: unknown;
  headers?: Record<string, string>;
  fetch?: typeof fetch;
  maxRetries?: number;
  retryMs?: number;
  lastEventId?: string | null;
  now?: () => number;
}

export declare class SseSpeechStream extends ChunkStream {
  constructor(url: string | URL, options?: SseOptions);
  readonly url: string;
  readonly method: "GET" | "POST";
  maxRetries: number;
  retryMs: number;
  readonly lastEventId: string | null;
}

export declare function speakSse(
  base: string | URL,
  text: string,
  options?: { voice?: string; speed?: number; method?: "GET" | "POST"; fetch?: typeof fetch; maxRetries?: number; id?: string },
): SseSpeechStream;

export declare function eventSourceStream(
  url: string | URL,
  options?: { EventSource?: any; now?: () => number },
): ChunkStream & { source: EventSource };
