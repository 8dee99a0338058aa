// Microphone samples -> 100 ms chunks of 16-bit PCM, posted to the page with their first sample's index.
// The sample index is the capture clock: media time = index / sampleRate.
class PcmChunker extends AudioWorkletProcessor {
  constructor() {
    super();
    this.chunk = Math.round(sampleRate / 10);
    this.buf = new Int16Array(this.chunk);
    this.fill = 0;
    this.index = 0; // samples captured before this chunk
  }
  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const ch0 = input[0];
    const n = ch0.length;
    for (let i = 0; i < n; i++) {
      let x = 0;
      for (let c = 0; c < input.length; c++) x += input[c][i];
      x /= input.length; // mixed to mono
      x = Math.max(-1, Math.min(1, x));
      this.buf[this.fill++] = x < 0 ? x * 32768 : x * 32767;
      if (this.fill === this.chunk) {
        this.port.postMessage({ index: this.index, pcm: this.buf.buffer }, [this.buf.buffer]);
        this.index += this.chunk;
        this.buf = new Int16Array(this.chunk);
        this.fill = 0;
      }
    }
    return true;
  }
}
registerProcessor("pcm-chunker", PcmChunker);
