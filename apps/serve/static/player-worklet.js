// An AudioWorklet that plays float samples pushed from the page through a ring buffer.
//
// Messages in:  {type: "push", samples: Float32Array}   (mono, at the context's rate)
//               {type: "reset", prebuffer?: frames}      (drop everything buffered; then
//                                                         wait for `prebuffer` frames)
//               {type: "drain"}                          (no more input: play what is left)
// Messages out: {type: "status", buffered, consumed, underruns}   about every 20 ms:
//               frames buffered, frames played in total, and blocks that ran dry.

class PcmPlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ring = new Float32Array(sampleRate * 60); // a minute of audio, at most
    this.read = 0;
    this.write = 0;
    this.buffered = 0;
    this.consumed = 0;
    this.underruns = 0;
    this.playing = false; // playing (not waiting to fill the prebuffer)
    this.prebuffer = 0;
    this.draining = false;
    this.sinceReport = 0;
    this.port.onmessage = ({ data }) => {
      if (data.type === "push") this.push(data.samples);
      else if (data.type === "drain") this.draining = true;
      else if (data.type === "reset") {
        this.read = this.write = this.buffered = 0;
        this.playing = false;
        this.draining = false;
        this.prebuffer = data.prebuffer ?? 0;
        this.report();
      }
    };
  }

  push(samples) {
    const ring = this.ring;
    const n = Math.min(samples.length, ring.length - this.buffered); // drop what cannot fit
    const first = Math.min(n, ring.length - this.write);
    ring.set(samples.subarray(0, first), this.write);
    ring.set(samples.subarray(first, n), 0);
    this.write = (this.write + n) % ring.length;
    this.buffered += n;
  }

  report() {
    this.sinceReport = 0;
    this.port.postMessage({ type: "status", buffered: this.buffered, consumed: this.consumed, underruns: this.underruns });
  }

  process(_inputs, outputs) {
    const channels = outputs[0];
    const out = channels[0];
    if (!this.playing && (this.buffered >= this.prebuffer || this.draining) && this.buffered > 0) this.playing = true;
    const n = this.playing ? Math.min(out.length, this.buffered) : 0;
    const ring = this.ring;
    for (let i = 0; i < n; i++) {
      out[i] = ring[this.read];
      this.read = this.read + 1 === ring.length ? 0 : this.read + 1;
    }
    out.fill(0, n);
    for (let c = 1; c < channels.length; c++) channels[c].set(out);
    this.buffered -= n;
    this.consumed += n;
    if (this.playing && n < out.length) {
      if (!this.draining) this.underruns += 1; // ran dry mid-stream: refill the prebuffer
      this.playing = false;
    }
    this.sinceReport += out.length;
    if (this.sinceReport >= sampleRate / 50 || (n > 0 && this.buffered === 0)) this.report();
    return true;
  }
}

registerProcessor("pcm-player", PcmPlayer);
