// The diaproto demo page: speaks text through the server's WebSocket or SSE endpoint and
// plays the PCM stream through an AudioWorklet, showing the live numbers of the stream.
import { DiaprotoSocket, SUBPROTOCOL, speakSse } from "/static/diaproto.js";

const SOURCE_RATE = 44100; // the server's PCM: s16le, 44.1 kHz, mono
const BYTES_PER_FRAME = 2;
const CREDIT_WINDOW = 131072; // ~1.5 s of audio ahead of playback
const HISTORY = 240;
const PREBUFFER_MS = 80; // audio held before playback starts, against early jitter

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
  ttfb: $("ttfb"),
  jitter: $("jitter"),
  buffer: $("buffer"),
  chunks: $("chunks"),
  kib: $("kib"),
  chart: /** @type {HTMLCanvasElement} */ ($("chart")),
};

/** Live numbers, also read by the browser test. */
const stats = {
  framesToWorklet: 0,
  chunks: 0,
  bytes: 0,
  ttfbMs: /** @type {number|null} */ (null),
  jitterMs: /** @type {number|null} */ (null),
  bufferMs: 0,
  underruns: 0,
  transport: "ws",
  state: "idle",
  error: /** @type {string|null} */ (null),
};
window.diaprotoStats = stats;

/** @type {AudioContext|null} */
let context = null;
/** @type {AudioWorkletNode|null} */
let player = null;
/** @type {DiaprotoSocket|null} */
let socket = null;
/** @type {import("/static/diaproto.js").ChunkStream|null} */
let current = null;
let lastConsumed = 0; // the worklet's running count of frames played
let consumedFraction = 0; // bytes owed to credit, below one byte
const bufferHistory = [];
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
    player.port.onmessage = ({ data }) => onPlayerStatus(data);
  }
  if (context.state !== "running") await context.resume();
}

/** The worklet reports what it holds and what it has played; played audio earns credit. */
function onPlayerStatus({ buffered, consumed, underruns }) {
  const rate = context ? context.sampleRate : SOURCE_RATE;
  stats.bufferMs = (buffered / rate) * 1000;
  stats.underruns = underruns;
  const played = consumed - lastConsumed;
  lastConsumed = consumed;
  if (played > 0 && current) {
    const bytes = (played * SOURCE_RATE) / rate * BYTES_PER_FRAME + consumedFraction;
    const whole = Math.floor(bytes);
    consumedFraction = bytes - whole;
    current.consumed(whole);
  }
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

function setState(state, detail = "") {
  stats.state = state;
  ui.state.textContent = state;
  ui.state.dataset.state = state;
  ui.detail.textContent = detail;
}

function resetStats(transport) {
  Object.assign(stats, {
    framesToWorklet: 0, chunks: 0, bytes: 0, ttfbMs: null, jitterMs: null, underruns: 0, transport, error: null,
  });
  bufferHistory.length = 0;
  gapHistory.length = 0;
  consumedFraction = 0;
  render();
}

async function speak() {
  stop("stopped");
  const transport = ui.transport.value;
  const text = ui.text.value.trim();
  if (!text) {
    setState("error", "Nothing to say: the text is empty.");
    return;
  }
  resetStats(transport);
  setState("connecting", transport === "ws" ? `WebSocket ${SUBPROTOCOL}` : "Server-Sent Events");
  ui.speak.disabled = true;
  ui.stop.disabled = false;
  const options = { voice: ui.voice.value, speed: Number(ui.speed.value) };
  /** @type {import("/static/diaproto.js").ChunkStream|null} */
  let stream = null;
  try {
    await ensureAudio();
    player?.port.postMessage({ type: "reset", prebuffer: Math.round((PREBUFFER_MS / 1000) * context.sampleRate) });
    stream =
      transport === "ws"
        ? (await getSocket()).open(text, { ...options, credit: CREDIT_WINDOW, grantOn: "consumed" })
        : speakSse(location.origin, text, options);
    current = stream;
    setState("waiting", "Waiting for the first chunk…");
    const rate = /** @type {AudioContext} */ (context).sampleRate;
    const resampler = rate === SOURCE_RATE ? null : new Resampler(SOURCE_RATE, rate);
    const pcm = new PcmDecoder();
    for await (const chunk of stream) {
      if (stream !== current) break;
      let samples = pcm.decode(chunk);
      if (resampler) samples = resampler.process(samples);
      stats.framesToWorklet += samples.length; // before the transfer empties `samples`
      player?.port.postMessage({ type: "push", samples }, [samples.buffer]);
      const s = stream.stats;
      stats.chunks = s.chunks;
      stats.bytes = s.bytes;
      stats.ttfbMs = s.ttfbMs;
      stats.jitterMs = s.jitterMs;
      if (s.lastGapMs !== null) pushHistory(gapHistory, s.lastGapMs);
      if (s.chunks === 1) {
        ui.ttfb.textContent = fmt(s.ttfbMs);
        setState("streaming", transport === "ws" ? "WebSocket" : "SSE");
      }
    }
    player?.port.postMessage({ type: "drain" }); // play what is left, however little
    if (stream === current) {
      setState("done", `${stats.chunks} chunks, ${(stats.bytes / (SOURCE_RATE * BYTES_PER_FRAME)).toFixed(2)} s of audio`);
    }
  } catch (error) {
    if (stream === current || stream === null) {
      const message = error instanceof Error ? `${error.code ? `${error.code}: ` : ""}${error.message}` : String(error);
      stats.error = message;
      setState("error", message);
    }
  } finally {
    if (stream === current) {
      current = null;
      ui.speak.disabled = false;
      ui.stop.disabled = true;
    }
    render();
  }
}

function stop(state = "stopped") {
  const stream = current;
  current = null;
  if (stream && !stream.done) {
    stream.cancel();
    player?.port.postMessage({ type: "reset" });
    setState(state, "Cancelled.");
  }
  ui.speak.disabled = false;
  ui.stop.disabled = true;
}

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
  ui.ttfb.textContent = fmt(stats.ttfbMs);
  ui.jitter.textContent = fmt(stats.jitterMs);
  ui.buffer.textContent = String(Math.round(stats.bufferMs));
  ui.chunks.textContent = String(stats.chunks);
  ui.kib.textContent = `${(stats.bytes / 1024).toFixed(0)} KiB`;
  drawChart();
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
  const styles = getComputedStyle(document.documentElement);
  const grid = styles.getPropertyValue("--grid").trim() || "#e5e7eb";
  const bufferColor = styles.getPropertyValue("--accent").trim() || "#4f46e5";
  const gapColor = styles.getPropertyValue("--gap").trim() || "#f59e0b";
  const muted = styles.getPropertyValue("--muted").trim() || "#6b7280";
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
  g.fillText(`buffer: last ${(HISTORY * 0.05).toFixed(0)} s · gaps: last ${HISTORY} chunks`, 6, height - 4);
}

setInterval(() => {
  if (current || stats.bufferMs > 0) pushHistory(bufferHistory, stats.bufferMs);
  render();
}, 50);

// --- wiring --------------------------------------------------------------------------------

ui.speed.addEventListener("input", () => {
  ui.speedValue.textContent = `${Number(ui.speed.value).toFixed(2)}×`;
});
ui.speak.addEventListener("click", () => void speak());
ui.stop.addEventListener("click", () => stop());
ui.text.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) void speak();
});
render();
