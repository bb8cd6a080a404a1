// TypeScript declarations for mcp.js (the MCP streaming client).

/** The protocol revision offered in `initialize`. */
export declare const PROTOCOL_VERSION: "2025-11-25";
/** Revisions accepted from the server's InitializeResult. */
export declare const SUPPORTED_PROTOCOL_VERSIONS: readonly string[];
/** The WebSocket subprotocol (SEP-1288, draft). */
export declare const MCP_SUBPROTOCOL: "mcp";
/** SEP-2998 (draft): the notification carrying a chunk of a tool call's output. */
export declare const PARTIAL_RESULT_METHOD: "notifications/tools/partial_result";
export declare const ErrorCode: Readonly<{
  PARSE_ERROR: -32700;
  INVALID_REQUEST: -32600;
  METHOD_NOT_FOUND: -32601;
  INVALID_PARAMS: -32602;
  INTERNAL_ERROR: -32603;
}>;

/** A JSON-RPC error response. */
export declare class McpError extends Error {
  constructor(code: number, message: string, data?: unknown);
  readonly code: number;
  readonly data: unknown;
}

/**
 * The transport failed: an HTTP error status (`status`, and the parsed body as `data`), a
 * closed WebSocket, a binary frame, a stream that ended and could not be resumed.
 */
export declare class McpTransportError extends Error {
  constructor(message: string, status?: number | null, data?: unknown);
  readonly status: number | null;
  readonly data: unknown;
}

export interface ContentBlock {
  type: string;
  [key: string]: unknown;
}

export interface CallToolResult {
  content: ContentBlock[];
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
  _meta?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface Tool {
  name: string;
  description?: string;
  inputSchema?: Record<string, unknown>;
  [key: string]: unknown;
}

/** `notifications/progress` for this call (values strictly increase; others are dropped). */
export interface ProgressUpdate {
  type: "progress";
  progress: number;
  total: number | null;
  message: string | null;
}

/**
 * `notifications/tools/partial_result` for this call: SEP-2998, a draft (experimental).
 * Sent by the server as `{partialResultToken, seq, content, structuredContent?, final?}`;
 * the client matches `partialResultToken` (or, failing that, `progressToken`) against its own
 * calls, and drops a `seq` not above the last one seen (a duplicate after a resume).
 */
export interface PartialUpdate {
  type: "partial";
  content: ContentBlock[];
  seq?: number;
  structuredContent?: unknown;
  final?: true;
}

export type ToolUpdate = ProgressUpdate | PartialUpdate;

export interface ConnectOptions {
  /** Default: "websocket" for ws:/wss: URLs, else "http" (Streamable HTTP). */
  transport?: "http" | "websocket";
  clientInfo?: { name: string; version: string; [key: string]: unknown };
  capabilities?: Record<string, unknown>;
  /**
   * Ask for SEP-2998 partial results (default true). Declared as `capabilities.partialResults
   * = {}` and `capabilities.experimental.partialResults = {}` in `initialize` and, per call, as
   * `_meta.partialResultToken` (= the progress token) plus
   * `_meta["io.modelcontextprotocol/clientCapabilities"] = {partialResults: {}}`.
   */
  partialResults?: boolean;
  /** HTTP: a fetch implementation (default: the global one). */
  fetch?: typeof fetch;
  /** HTTP: extra headers on every request (e.g. Authorization). Not possible on a browser WebSocket. */
  headers?: Record<string, string>;
  /** HTTP: resumptions in a row before giving up (default 3). */
  maxRetries?: number;
  /** HTTP: delay before a resumption in ms (default 1000); the server's `retry:` replaces it. */
  retryMs?: number;
  /** HTTP: the longest SSE line (one whole message) accepted, in characters (default 64 MiB). */
  maxEventSize?: number;
  /** WebSocket: a constructor `new WebSocket(url, protocols)` (default: the global one). */
  WebSocket?: new (url: string, protocols: string[]) => any;
}

/**
 * One tools/call in flight. Iterate it for updates (one consumer); the iterator ends when the
 * call ends or is cancelled (buffered updates are dropped on cancel) and throws if it failed.
 */
export declare class ToolCall implements AsyncIterable<ToolUpdate> {
  readonly client: McpClient;
  readonly name: string;
  /** The JSON-RPC id of the request. */
  readonly requestId: number | null;
  /** `_meta.progressToken`, unique per call. */
  readonly progressToken: string;
  /** `_meta.partialResultToken` (SEP-2998): the same value as progressToken. */
  readonly partialResultToken: string;
  /** The final result; rejects with McpError, McpTransportError, or an AbortError on cancel. */
  readonly result: Promise<CallToolResult>;
  state: "running" | "done" | "failed" | "cancelled";
  readonly done: boolean;
  /** Called for every update, before the iterator sees it. */
  onupdate: ((update: ToolUpdate, call: ToolCall) => void) | null;
  /** Send notifications/cancelled; reject `result` with an AbortError; stop the updates. */
  cancel(reason?: string): void;
  [Symbol.asyncIterator](): AsyncIterator<ToolUpdate>;
}

export declare class McpClient {
  /** Connect, then `initialize` and `notifications/initialized`. */
  static connect(url: string | URL, options?: ConnectOptions): Promise<McpClient>;
  constructor(url: string | URL, options?: ConnectOptions);
  readonly url: string;
  readonly clientInfo: { name: string; version: string };
  readonly capabilities: Record<string, unknown>;
  readonly partialResults: boolean;
  /** The transport: HTTP exposes sessionId, protocolVersion, retryMs, resumes. */
  readonly transport: {
    sessionId: string | null;
    protocolVersion: string | null;
    retryMs?: number;
    maxRetries?: number;
    resumes?: number;
    maxEventSize?: number;
  };
  /** The negotiated protocol version. */
  protocolVersion: string | null;
  serverInfo: { name: string; version: string; [key: string]: unknown } | null;
  serverCapabilities: Record<string, unknown>;
  instructions: string | null;
  /** Re-initializations after an expired session (HTTP 404). */
  reinitializations: number;
  closed: boolean;
  /** Notifications no call claims (e.g. notifications/message). */
  onnotification: ((message: { jsonrpc: "2.0"; method: string; params?: any }) => void) | null;
  /** Errors that belong to no request (an undecodable event, a binary frame). */
  onerror: ((error: Error) => void) | null;
  /** Any request: resolves with its result. */
  request(method: string, params?: Record<string, unknown>, options?: { signal?: AbortSignal }): Promise<any>;
  notify(method: string, params?: Record<string, unknown>): Promise<void>;
  ping(): Promise<void>;
  /** All tools, following nextCursor. */
  listTools(options?: { signal?: AbortSignal }): Promise<{ tools: Tool[] }>;
  callTool(
    name: string,
    args?: Record<string, unknown>,
    options?: { signal?: AbortSignal; meta?: Record<string, unknown> },
  ): ToolCall;
  /** Fail what is in flight; DELETE the session (HTTP) or close the WebSocket (1000). */
  close(): Promise<void>;
}
