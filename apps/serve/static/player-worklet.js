// An AudioWorklet that plays float samples pushed from the page through a ring buffer.
//
// Messages in:  {type: "push", samples: Float32Array}   (mono, at the context's rate)
//               {type: "reset", prebuffer?: frames, epoch?: number}
//                                                        (drop everything buffered; then
//                                                         wait for `prebuffer` frames; later
//                                                         messages carry `epoch`)
//               {type: "drain"}                          (no more input: play what is left)
// Messages out, each with the `epoch` of the latest reset:
//   {type: "status", buffered, high, consumed, underruns}
//        about every 11.6 ms while anything changes (often enough for credit to follow
//        playback chunk by chunk): frames buffered, the most buffered since the
//        reset, frames played in total (never reset), blocks that ran dry mid-stream.
//   {type: "started", time}   the first audio after a reset went out: the context time of
//        its first sample.
//   {type: "drained"}         after "drain", everything buffered has been played.

// Report about once per source chunk (512 frames at 44.1 kHz, ~11.6 ms), in whole 128-frame
// blocks: 4 blocks at 44.1 kHz, 5 at 48 kHz. The page grants credit on each report.
const REPORT_FRAMES = Math.ceil((512 / 44100) * sampleRate / 128) * 128;

class PcmPlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ring = new Float32Array(sampleRate * 60); // a minute of audio, at most
    this.read = 0;
    this.write = 0;
    this.buffered = 0;
    this.high = 0;
    this.consumed = 0;
    this.underruns = 0;
    this.epoch = 0;
    this.playing = false; // playing (not waiting to fill the prebuffer)
    this.prebuffer = 0;
    this.draining = false;
    this.started = false; // the first audio of this epoch went out
    this.drained = false; // "drained" was posted for this epoch
    this.sinceReport = 0;
    this.last = [-1, -1, -1, -1]; // what the latest report said: buffered, high, consumed, underruns
    this.port.onmessage = ({ data }) => {
      if (data.type === "push") this.push(data.samples);
      else if (data.type === "drain") this.draining = true;
      else if (data.type === "reset") {
        this.read = this.write = this.buffered = this.high = this.underruns = 0;
        this.playing = this.draining = this.started = this.drained = false;
        this.prebuffer = data.prebuffer ?? 0;
        this.epoch = data.epoch ?? this.epoch;
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
    if (this.buffered > this.high) this.high = this.buffered;
  }

  report() {
    this.sinceReport = 0;
    const last = this.last;
    last[0] = this.buffered;
    last[1] = this.high;
    last[2] = this.consumed;
    last[3] = this.underruns;
    this.port.postMessage({
      type: "status", epoch: this.epoch, buffered: this.buffered, high: this.high,
      consumed: this.consumed, underruns: this.underruns,
    });
  }

  changed() {
    const last = this.last;
    return last[0] !== this.buffered || last[1] !== this.high || last[2] !== this.consumed || last[3] !== this.underruns;
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
    if (n > 0 && !this.started) {
      // Playback starts at a block's first frame, so its first sample is at currentTime.
      this.started = true;
      this.port.postMessage({ type: "started", epoch: this.epoch, time: currentTime });
    }
    this.buffered -= n;
    this.consumed += n;
    if (this.playing && n < out.length) {
      if (!this.draining) this.underruns += 1; // ran dry mid-stream: refill the prebuffer
      this.playing = false;
    }
    this.sinceReport += out.length;
    const due = this.sinceReport >= REPORT_FRAMES || (n > 0 && this.buffered === 0);
    if (due && this.changed()) this.report(); // quiet while idle
    if (this.draining && this.buffered === 0 && !this.drained) {
      this.drained = true;
      this.report();
      this.port.postMessage({ type: "drained", epoch: this.epoch });
    }
    return true;
  }
}

registerProcessor("pcm-player", PcmPlayer);
