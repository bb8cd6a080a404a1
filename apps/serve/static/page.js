// The diaproto demo page: speaks text through the server's WebSocket or SSE endpoint (or a
// plain WebSocket of raw PCM, a benchmark baseline) and plays the PCM stream through an
// AudioWorklet, showing what the listener gets: time to first audio as played, arrival
// jitter, underruns and the playback buffer.
import { ChunkStream, DiaprotoSocket, StreamFailure, SUBPROTOCOL, speakSse } from "/static/diaproto.js";

const SOURCE_RATE = 44100; // the server's PCM: s16le, 44.1 kHz, mono
const BYTES_PER_FRAME = 2;
const BYTES_PER_SECOND = SOURCE_RATE * BYTES_PER_FRAME; // 88,200
const PREBUFFER_MS = 80; // audio held before playback starts, against early jitter
// Audio the server may send ahead of playback, beyond the prebuffer. Credit is granted back
// as playback consumes (about a chunk at a time), so the buffer holds about this much once
// filled and the server's sending follows playback; a bigger target rides out longer stalls
// of the source or the network, at the cost of more audio in flight.
const TARGET_BUFFER_MS = 300;
/** The credit window in bytes (even: whole samples); also where SSE and plain streams count
 * their steady state from, so the three transports' jitter figures compare. */
const CREDIT_WINDOW = 2 * Math.round(((TARGET_BUFFER_MS + PREBUFFER_MS) / 1000) * (BYTES_PER_SECOND / 2));
const HISTORY = 240;
const CHART_MS = 100; // the chart's refresh interval
let drawn = -1; // the chunk count the chart last showed
const MAX_ARRIVALS = 100_000;
const TRANSPORTS = { ws: `WebSocket ${SUBPROTOCOL}`, sse: "Server-Sent Events", plain: "plain WebSocket" };

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const ui = {
  text: /** @type {HTMLTextAreaElement} */ ($("text")),
  voice: /** @type {HTMLSelectElement} */ ($("voice")),
  transport: /** @type {HTMLSelectElement} */ ($("transport")),
  speed: /** @type {HTMLInputElement} */ ($("speed")),
  speedValue: $("speed-value"),
  speak: /** @type {HTMLButtonElement} */ ($("speak")),
  stop: /** @type {HTMLButtonElement} */ ($("stop")),
  state: $("state"),
  detail: $("detail"),
  firstPlayed: $("first-played"),
  ttfb: $("ttfb"),
  jitterP50: $("jitter-p50"),
  jitterP99: $("jitter-p99"),
  underruns: $("underruns"),
  buffer: $("buffer"),
  bufferHigh: $("buffer-high"),
  chunks: $("chunks"),
  kib: $("kib"),
  chart: /** @type {HTMLCanvasElement} */ ($("chart")),
};

/**
 * What the listener gets, for the current (or last) stream; read by the browser test and by
 * benchmarks. Times are milliseconds; `*Ms` figures count from `startedAt` (speak started)
 * unless said otherwise.
 */
const stats = {
  transport: "ws",
  state: "idle",
  error: /** @type {string|null} */ (null),
  /** performance.now() when speak started. */
  startedAt: /** @type {number|null} */ (null),
  /** The first byte in. */
  ttfbMs: /** @type {number|null} */ (null),
  /** The first sample out of the worklet, as played (its output time). */
  firstPlayedMs: /** @type {number|null} */ (null),
  /** [performance.now() at arrival, payload bytes] per chunk (at most 100,000). */
  arrivals: /** @type {[number, number][]} */ ([]),
  /** The credit window (bytes); for every transport, the steady state starts after it. */
  window: CREDIT_WINDOW,
  /** From the first byte until `window` bytes had arrived (the initial fill). */
  fillMs: /** @type {number|null} */ (null),
  /** Percentiles of |gap - previous chunk's duration| over the steady state. */
  jitterP50Ms: /** @type {number|null} */ (null),
  jitterP99Ms: /** @type {number|null} */ (null),
  /** The client's standard deviation of the gaps between chunks (all of them). */
  jitterMs: /** @type {number|null} */ (null),
  chunks: 0,
  bytes: 0,
  framesToWorklet: 0,
  /** Times the worklet ran dry mid-stream (audible gaps). */
  underruns: 0,
  bufferMs: 0,
  /** The most audio the worklet held during the stream. */
  bufferHighMs: 0,
  /** Credit messages sent for the stream (0 for SSE and plain). */
  grants: 0,
  /** The stream finished and the worklet played out everything. */
  played: false,
};
window.diaprotoStats = stats;

/** @type {AudioContext|null} */
let context = null;
/** @type {AudioWorkletNode|null} */
let player = null;
/** @type {DiaprotoSocket|null} */
let socket = null;
/** @type {ChunkStream|null} */
let current = null;
let epoch = 0; // one per speak: tells the worklet's messages about this stream from older ones
/** @type {{epoch: number, resolve: (value: object) => void, reject: (error: Error) => void}|null} */
let waiter = null; // settles when this epoch's audio has played (or failed)
/** The plain baseline's URL, once given: the Speak button repeats a plain run with it. */
let lastPlainUrl = /** @type {string|URL|undefined} */ (undefined);
let lastConsumed = 0; // the worklet's running count of frames played
let consumedFraction = 0; // bytes owed to credit, below one byte
const jitter = {
  first: /** @type {number|null} */ (null),
  last: /** @type {number|null} */ (null),
  lastDurationMs: 0,
  received: 0,
  /** @type {number[]} */
  samples: [],
  sorted: 0, // samples summarised in stats so far
};
/** @type {number[]} */
const bufferHistory = [];
/** @type {number[]} */
const gapHistory = [];

// --- audio ---------------------------------------------------------------------------------

async function ensureAudio() {
  if (!context) {
    try {
      context = new AudioContext({ sampleRate: SOURCE_RATE, latencyHint: "interactive" });
    } catch {
      context = new AudioContext({ latencyHint: "interactive" }); // this browser picks the rate
    }
    await context.audioWorklet.addModule("/static/player-worklet.js");
    player = new AudioWorkletNode(context, "pcm-player", { numberOfInputs: 0, outputChannelCount: [1] });
    player.connect(context.destination);
    player.port.onmessage = ({ data }) => onPlayerMessage(data);
  }
  if (context.state !== "running") await context.resume();
}

/** @param {any} data a message of the worklet (see player-worklet.js) */
function onPlayerMessage(data) {
  if (data.type === "status") onPlayerStatus(data);
  else if (data.epoch !== epoch) return; // about an earlier stream
  else if (data.type === "started") {
    stats.firstPlayedMs = performanceTime(data.time) - /** @type {number} */ (stats.startedAt);
  } else if (data.type === "drained" && current === null && stats.state === "done") {
    stats.played = true;
    stats.bufferMs = 0;
    finishJitter();
    render();
    ui.stop.disabled = true;
    setState("done", `${describe()} · played`);
    settle(null);
  }
}

/** The performance.now() time at which the sample at context time `t` reaches the output. */
function performanceTime(t) {
  const audio = /** @type {AudioContext} */ (context);
  const stamp = typeof audio.getOutputTimestamp === "function" ? audio.getOutputTimestamp() : null;
  if (stamp && stamp.contextTime && stamp.performanceTime) {
    return stamp.performanceTime + (t - stamp.contextTime) * 1000;
  }
  // No output timestamp yet: the context's clock, plus the output latency it reports.
  return performance.now() + (t - audio.currentTime + (audio.outputLatency || 0)) * 1000;
}

/** The worklet reports what it holds and what it has played; played audio earns credit. */
function onPlayerStatus({ epoch: from, buffered, high, consumed, underruns }) {
  const played = consumed - lastConsumed;
  lastConsumed = consumed;
  if (from !== epoch) return; // frames of an earlier stream earn this one nothing
  const rate = context ? context.sampleRate : SOURCE_RATE;
  stats.bufferMs = (buffered / rate) * 1000;
  stats.bufferHighMs = (high / rate) * 1000;
  stats.underruns = underruns;
  if (played > 0 && current) {
    // Every report grants what it played; the client coalesces to about a chunk a message.
    const bytes = ((played * SOURCE_RATE) / rate) * BYTES_PER_FRAME + consumedFraction;
    const whole = Math.floor(bytes);
    consumedFraction = bytes - whole;
    current.consumed(whole);
    stats.grants = grantsOf(current);
  }
}

/** @param {ChunkStream} stream */
function grantsOf(stream) {
  return "grants" in stream ? /** @type {number} */ (stream.grants) : 0;
}

/** Linear-interpolation resampler across chunk boundaries (only when the rates differ). */
class Resampler {
  /** @param {number} from @param {number} to */
  constructor(from, to) {
    this.step = from / to;
    this.pos = 0; // position in the current input; -1 is the previous chunk's last sample
    this.prev = 0;
  }

  /** @param {Float32Array} input */
  process(input) {
    const n = input.length;
    const out = new Float32Array(Math.ceil((n - this.pos) / this.step) + 1);
    let k = 0;
    let pos = this.pos;
    while (pos < n - 1) {
      const i = Math.floor(pos);
      const a = i < 0 ? this.prev : input[i];
      const b = input[i + 1];
      out[k++] = a + (b - a) * (pos - i);
      pos += this.step;
    }
    this.pos = pos - n;
    if (n > 0) this.prev = input[n - 1];
    return out.subarray(0, k);
  }
}

/** PCM s16le bytes to float samples, keeping an odd trailing byte for the next chunk. */
class PcmDecoder {
  constructor() {
    this.carry = /** @type {number|null} */ (null);
  }

  /** @param {Uint8Array} bytes */
  decode(bytes) {
    let data = bytes;
    if (this.carry !== null) {
      data = new Uint8Array(bytes.length + 1);
      data[0] = this.carry;
      data.set(bytes, 1);
      this.carry = null;
    }
    const frames = data.length >> 1;
    if (data.length & 1) this.carry = data[data.length - 1];
    const view = new DataView(data.buffer, data.byteOffset, frames * 2);
    const out = new Float32Array(frames);
    for (let i = 0; i < frames; i++) out[i] = view.getInt16(i * 2, true) / 32768;
    return out;
  }
}

// --- speaking ------------------------------------------------------------------------------

function wsUrl() {
  const url = new URL("/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return url;
}

async function getSocket() {
  if (!socket || socket.closed) {
    socket = new DiaprotoSocket(wsUrl());
    socket.onclose = () => {
      socket = null;
    };
  }
  await socket.ready;
  return socket;
}

/**
 * The plain baseline: one WebSocket, one text message with the request, then every binary
 * message is raw PCM (s16le, 44.1 kHz, mono); the server closes with 1000 at the end. No
 * protocol, no credit: what a stream costs without diaproto.
 * @param {string|URL} url
 * @param {{text: string, voice: string, speed: number}} request
 */
function plainStream(url, request) {
  const stream = new ChunkStream();
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  let seq = 0;
  ws.onopen = () => ws.send(JSON.stringify(request));
  ws.onmessage = ({ data }) => {
    if (typeof data === "string") return; // only audio is played
    seq += 1;
    stream._deliver(new Uint8Array(data), seq);
  };
  ws.onclose = ({ code, reason }) => {
    if (code === 1000) stream._end(seq);
    else stream._fail(new StreamFailure("connection_closed", `the plain WebSocket closed with ${code}${reason ? `: ${reason}` : ""}`));
  };
  const cancel = stream.cancel.bind(stream);
  stream.cancel = () => {
    cancel();
    ws.close(1000);
  };
  return stream;
}

function setState(state, detail = "") {
  stats.state = state;
  ui.state.textContent = state;
  ui.state.dataset.state = state;
  ui.detail.textContent = detail;
}

function resetStats(transport) {
  Object.assign(stats, {
    transport, error: null, startedAt: performance.now(), ttfbMs: null, firstPlayedMs: null,
    arrivals: [], fillMs: null, jitterP50Ms: null, jitterP99Ms: null, jitterMs: null,
    chunks: 0, bytes: 0, framesToWorklet: 0, underruns: 0, bufferMs: 0, bufferHighMs: 0,
    grants: 0, played: false,
  });
  Object.assign(jitter, { first: null, last: null, lastDurationMs: 0, received: 0, samples: [], sorted: 0 });
  bufferHistory.length = 0;
  gapHistory.length = 0;
  consumedFraction = 0;
  render();
}

/**
 * A chunk arrived (called from the stream as it is delivered, so the time is the arrival's).
 * @param {ChunkStream} stream @param {number} nbytes
 */
function onArrival(stream, nbytes) {
  const t = performance.now();
  if (stats.arrivals.length < MAX_ARRIVALS) stats.arrivals.push([t, nbytes]);
  if (jitter.last === null) {
    jitter.first = t;
    stats.ttfbMs = t - /** @type {number} */ (stats.startedAt);
  } else {
    const gap = t - jitter.last;
    pushHistory(gapHistory, gap);
    // The steady state: once a window has arrived, chunks should come one chunk's duration
    // apart. Before that the stream fills the buffer at the source's speed (fillMs).
    if (jitter.received >= CREDIT_WINDOW && jitter.samples.length < MAX_ARRIVALS) {
      jitter.samples.push(Math.abs(gap - jitter.lastDurationMs));
    }
  }
  jitter.received += nbytes;
  if (stats.fillMs === null && jitter.received >= CREDIT_WINDOW) stats.fillMs = t - /** @type {number} */ (jitter.first);
  jitter.last = t;
  jitter.lastDurationMs = (nbytes / BYTES_PER_SECOND) * 1000;
  stats.chunks = stream.stats.chunks;
  stats.bytes = stream.stats.bytes;
  stats.jitterMs = stream.stats.jitterMs;
}

/** Summarise the jitter samples (sorting is left to the render ticks, not each chunk). */
function finishJitter() {
  const n = jitter.samples.length;
  if (n === jitter.sorted) return;
  const sorted = Float64Array.from(jitter.samples).sort();
  const rank = (p) => sorted[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))]; // nearest rank
  stats.jitterP50Ms = rank(0.5);
  stats.jitterP99Ms = rank(0.99);
  jitter.sorted = n;
}

function describe() {
  const seconds = (stats.bytes / BYTES_PER_SECOND).toFixed(2);
  const grants = stats.transport === "ws" ? ` · ${stats.grants} credit grants` : "";
  return `${stats.chunks} chunks, ${seconds} s of audio${grants}`;
}

/** Settle the pending speak: resolve with the figures (error null) or reject. */
function settle(/** @type {Error|null} */ error) {
  const w = waiter;
  waiter = null;
  if (!w) return;
  if (error) w.reject(error);
  else w.resolve({ ...stats });
}

/**
 * Speak `text` and play it: the Speak button and `window.diaprotoSpeak` both come here.
 * Resolves with a copy of the figures once the audio has been played out; rejects on an
 * error, or when stopped or replaced by another speak.
 * @param {{text: string, transport?: "ws"|"sse"|"plain", voice?: string, speed?: number,
 *   plainUrl?: string|URL}} options
 * @returns {Promise<object>}
 */
function speak({ text, transport = "ws", voice = "S1", speed = 1, plainUrl }) {
  stop("stopped"); // and a new epoch
  const done = new Promise((resolve, reject) => {
    waiter = { epoch, resolve, reject };
  });
  void play({ text: String(text ?? "").trim(), transport, voice, speed, plainUrl });
  return done;
}

/** @param {{text: string, transport: string, voice: string, speed: number, plainUrl?: string|URL}} request */
async function play({ text, transport, voice, speed, plainUrl }) {
  resetStats(transport);
  /** @type {ChunkStream|null} */
  let stream = null;
  const mine = epoch;
  try {
    if (!(transport in TRANSPORTS)) throw new Error(`unknown transport ${JSON.stringify(transport)}`);
    if (!text) throw new Error("Nothing to say: the text is empty.");
    if (transport === "plain" && !plainUrl) throw new Error("the plain transport needs plainUrl");
    setState("connecting", TRANSPORTS[transport]);
    ui.speak.disabled = true;
    ui.stop.disabled = false;
    await ensureAudio();
    if (mine !== epoch) return; // stopped or replaced meanwhile
    const audio = /** @type {AudioContext} */ (context);
    player?.port.postMessage({ type: "reset", epoch: mine, prebuffer: Math.round((PREBUFFER_MS / 1000) * audio.sampleRate) });
    if (transport === "ws") {
      const ws = await getSocket();
      if (mine !== epoch) return;
      // Credit follows playback; the server also sends at the pace the audio plays, so the
      // chunks come evenly (the player's status ticks come in the audio device's bursts).
      stream = ws.open(text, { voice, speed, credit: CREDIT_WINDOW, grantOn: "consumed", options: { pace: "realtime" } });
    } else if (transport === "sse") {
      stream = speakSse(location.origin, text, { voice, speed });
    } else {
      stream = plainStream(/** @type {string|URL} */ (plainUrl), { text, voice, speed });
    }
    current = stream;
    const own = stream;
    own.onchunk = (chunk) => {
      if (own === current) onArrival(own, chunk.byteLength);
    };
    setState("waiting", "Waiting for the first chunk…");
    const resampler = audio.sampleRate === SOURCE_RATE ? null : new Resampler(SOURCE_RATE, audio.sampleRate);
    const pcm = new PcmDecoder();
    for await (const chunk of stream) {
      if (stream !== current) break;
      let samples = pcm.decode(chunk);
      if (resampler) samples = resampler.process(samples);
      stats.framesToWorklet += samples.length; // before the transfer empties `samples`
      player?.port.postMessage({ type: "push", samples }, [samples.buffer]);
      if (stats.state === "waiting") setState("streaming", TRANSPORTS[transport]);
    }
    if (stream === current) {
      stats.grants = grantsOf(stream);
      current = null;
      finishJitter();
      setState("done", `${describe()} · playing out`);
      player?.port.postMessage({ type: "drain" }); // play what is left; "drained" settles
    }
  } catch (error) {
    if (mine === epoch && (stream === current || stream === null)) {
      const failure = error instanceof Error ? error : new Error(String(error));
      const code = /** @type {any} */ (failure).code;
      const message = `${code ? `${code}: ` : ""}${failure.message}`;
      stats.error = message;
      current = null;
      setState("error", message);
      player?.port.postMessage({ type: "drain" }); // let what arrived play out, no underrun
      ui.stop.disabled = true;
      settle(failure);
    }
  } finally {
    if (mine === epoch) ui.speak.disabled = false;
    render();
  }
}

/** Stop the stream and the audio; a pending speak rejects. */
function stop(state = "stopped") {
  const stream = current;
  current = null;
  epoch += 1; // a speak still starting gives up; the worklet's later messages are not its
  if (stream && !stream.done) stream.cancel();
  if (stream || waiter) {
    player?.port.postMessage({ type: "reset", epoch });
    setState(state, "Cancelled.");
  }
  settle(new Error(state));
  ui.speak.disabled = false;
  ui.stop.disabled = true;
}

/**
 * For automation (tests, benchmarks): the Speak button's path, with these settings (shown
 * on the page too). `transport: "plain"` needs `plainUrl` (a ws:// URL).
 */
window.diaprotoSpeak = (options) => {
  const { text, transport = "ws", voice, speed } = options ?? {};
  if (options?.plainUrl) lastPlainUrl = options.plainUrl;
  if (typeof text === "string") ui.text.value = text;
  if (transport in TRANSPORTS) ui.transport.value = transport; // "plain": a hidden option
  if (voice) ui.voice.value = voice;
  if (speed !== undefined) {
    ui.speed.value = String(speed);
    ui.speedValue.textContent = `${Number(speed).toFixed(2)}×`;
  }
  return speak({ ...options, transport });
};

// --- numbers and chart ---------------------------------------------------------------------

/** @param {number[]} list @param {number} value */
function pushHistory(list, value) {
  list.push(value);
  if (list.length > HISTORY) list.shift();
}

/** @param {number|null} value */
function fmt(value) {
  if (value === null || !Number.isFinite(value)) return "–";
  return value < 10 ? value.toFixed(1) : String(Math.round(value));
}

function render() {
  finishJitter();
  ui.firstPlayed.textContent = fmt(stats.firstPlayedMs);
  ui.ttfb.textContent = fmt(stats.ttfbMs);
  ui.jitterP50.textContent = fmt(stats.jitterP50Ms);
  ui.jitterP99.textContent = fmt(stats.jitterP99Ms);
  ui.underruns.textContent = String(stats.underruns);
  ui.buffer.textContent = String(Math.round(stats.bufferMs));
  ui.bufferHigh.textContent = String(Math.round(stats.bufferHighMs));
  ui.chunks.textContent = String(stats.chunks);
  ui.kib.textContent = `${(stats.bytes / 1024).toFixed(0)} KiB`;
  drawChart();
}

/** @type {{grid: string, bufferColor: string, gapColor: string, muted: string}|null} */
let colors = null;
// Read once (a style recalculation per frame would hold up the main thread, where chunks
// arrive), and again when the colour scheme changes.
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
  colors = null;
});

function chartColors() {
  if (!colors) {
    const styles = getComputedStyle(document.documentElement);
    colors = {
      grid: styles.getPropertyValue("--grid").trim() || "#e5e7eb",
      bufferColor: styles.getPropertyValue("--accent").trim() || "#4f46e5",
      gapColor: styles.getPropertyValue("--gap").trim() || "#f59e0b",
      muted: styles.getPropertyValue("--muted").trim() || "#6b7280",
    };
  }
  return colors;
}

function drawChart() {
  const canvas = ui.chart;
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(width * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const g = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const { grid, bufferColor, gapColor, muted } = chartColors();
  const top = 12;
  const bottom = height - 18;
  const plot = bottom - top;
  const maxBuffer = Math.max(500, ...bufferHistory) * 1.1;
  const maxGap = Math.max(50, ...gapHistory) * 1.1;

  g.strokeStyle = grid;
  g.lineWidth = 1;
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = muted;
  for (let i = 0; i <= 4; i++) {
    const y = Math.round(top + (plot * i) / 4) + 0.5;
    g.beginPath();
    g.moveTo(0, y);
    g.lineTo(width, y);
    g.stroke();
  }
  g.fillText(`${Math.round(maxBuffer)} ms buffer`, 6, top + 10);
  g.textAlign = "right";
  g.fillText(`${Math.round(maxGap)} ms gap`, width - 6, top + 10);
  g.textAlign = "left";

  // gaps between chunks: thin bars, newest on the right
  const barWidth = width / HISTORY;
  g.fillStyle = gapColor;
  gapHistory.forEach((gap, i) => {
    const h = (Math.min(gap, maxGap) / maxGap) * plot;
    const x = width - (gapHistory.length - i) * barWidth;
    g.fillRect(x, bottom - h, Math.max(1, barWidth - 1), h);
  });

  // buffer depth: a filled line
  if (bufferHistory.length > 1) {
    const step = width / (HISTORY - 1);
    const x0 = width - (bufferHistory.length - 1) * step;
    g.beginPath();
    g.moveTo(x0, bottom);
    bufferHistory.forEach((ms, i) => g.lineTo(x0 + i * step, bottom - (ms / maxBuffer) * plot));
    g.lineTo(width, bottom);
    g.closePath();
    g.globalAlpha = 0.15;
    g.fillStyle = bufferColor;
    g.fill();
    g.globalAlpha = 1;
    g.beginPath();
    bufferHistory.forEach((ms, i) => {
      const y = bottom - (ms / maxBuffer) * plot;
      if (i === 0) g.moveTo(x0, y);
      else g.lineTo(x0 + i * step, y);
    });
    g.strokeStyle = bufferColor;
    g.lineWidth = 2;
    g.stroke();
  }
  g.fillStyle = muted;
  g.fillText(`buffer: last ${((HISTORY * CHART_MS) / 1000).toFixed(0)} s · gaps: last ${HISTORY} chunks`, 6, height - 4);
}

// The chart at 10 Hz, and only while there is something to show: drawing runs on the main
// thread, where the chunks arrive, so every redraw can delay one.
setInterval(() => {
  const live = current !== null || stats.bufferMs > 0;
  if (live) pushHistory(bufferHistory, stats.bufferMs);
  if (live || drawn !== stats.chunks) {
    drawn = stats.chunks;
    render();
  }
}, CHART_MS);

// --- wiring --------------------------------------------------------------------------------

/** The Speak button: the settings on the page. */
function speakFromPage() {
  const options = {
    text: ui.text.value,
    transport: /** @type {"ws"|"sse"|"plain"} */ (ui.transport.value),
    voice: ui.voice.value,
    speed: Number(ui.speed.value),
    plainUrl: lastPlainUrl,
  };
  speak(options).catch(() => {}); // shown on the page
}

ui.speed.addEventListener("input", () => {
  ui.speedValue.textContent = `${Number(ui.speed.value).toFixed(2)}×`;
});
ui.speak.addEventListener("click", speakFromPage);
ui.stop.addEventListener("click", () => stop());
ui.text.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) speakFromPage();
});
render();
