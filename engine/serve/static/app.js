// The live page of engine.serve: camera and microphone -> the documented WebSocket protocol (docs/serve.md)
// -> the engine's events, drawn as they come. No libraries, no build step, nothing but this server.
"use strict";

const $ = (id) => document.getElementById(id);
const NAMES = { ang: "angry", hap: "happy", neu: "neutral", sad: "sad" };
const FINAL_CODES = new Set([1000, 1001, 1003, 1007, 1008, 1009]); // no retry: the reason says why
const MAX_RETRIES = 5;
const page = (window.__emotion = { events: 0, ready: null, last: null, errors: [], closes: [] });

let run = null; // the capture and connection now running

function showError(text) {
  const el = $("error");
  el.textContent = text;
  el.hidden = !text;
  if (text) page.errors.push(text);
}
function status(text) {
  $("status").textContent = text;
}

function mediaError(what, e) {
  const name = (e && e.name) || "Error";
  if (name === "NotAllowedError" || name === "SecurityError") return `${what} access was denied`;
  if (name === "NotFoundError" || name === "OverconstrainedError") return `no ${what} was found`;
  if (name === "NotReadableError") return `the ${what} is in use by another program`;
  return `the ${what} could not be opened (${name}: ${e && e.message})`;
}

async function openDevices(wantAudio, wantVideo) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("this page needs https:// or http://localhost to use a camera or a microphone");
  }
  const video = { width: { ideal: 640 }, height: { ideal: 480 } };
  const notes = [];
  let stream = null;
  if (wantAudio && wantVideo) {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true, video });
    } catch (e) {
      // one of the two may still work alone
    }
  }
  if (!stream) {
    const tracks = [];
    if (wantVideo) {
      try {
        tracks.push(...(await navigator.mediaDevices.getUserMedia({ video })).getTracks());
      } catch (e) {
        notes.push(mediaError("camera", e));
      }
    }
    if (wantAudio) {
      try {
        tracks.push(...(await navigator.mediaDevices.getUserMedia({ audio: true })).getTracks());
      } catch (e) {
        notes.push(mediaError("microphone", e));
      }
    }
    if (!tracks.length) throw new Error(notes.join("; ") || "choose the camera, the microphone or both");
    stream = new MediaStream(tracks);
  }
  return { stream, notes };
}

function pack(kind, t, aux, payload) {
  const out = new Uint8Array(16 + payload.byteLength);
  const dv = new DataView(out.buffer);
  out[0] = 0x45; // "E"
  out[1] = 0x4d; // "M"
  out[2] = 1; // version
  out[3] = kind; // 1 audio, 2 video
  dv.setFloat64(4, t, true);
  dv.setUint32(12, aux, true);
  out.set(new Uint8Array(payload), 16);
  return out.buffer;
}

class Run {
  constructor(stream, token) {
    this.stream = stream;
    this.token = token;
    this.hasAudio = stream.getAudioTracks().length > 0;
    this.hasVideo = stream.getVideoTracks().length > 0;
    this.ws = null;
    this.audio = null;
    this.frameTimer = null;
    this.retries = 0;
    this.stopping = false;
    this.committed = [];
  }

  async start() {
    $("video").srcObject = this.hasVideo ? this.stream : null;
    if (this.hasAudio) await this.startAudio();
    this.connect();
  }

  async startAudio() {
    let ctx;
    try {
      ctx = new AudioContext({ sampleRate: 16000 });
    } catch (e) {
      ctx = new AudioContext(); // the server resamples whatever rate this is
    }
    await ctx.audioWorklet.addModule("/static/audio-worklet.js");
    const src = ctx.createMediaStreamSource(this.stream);
    const node = new AudioWorkletNode(ctx, "pcm-chunker");
    const mute = ctx.createGain();
    mute.gain.value = 0;
    src.connect(node).connect(mute).connect(ctx.destination); // pulled by the graph, heard by no one
    node.port.onmessage = (m) => this.onAudio(m.data);
    await ctx.resume();
    this.audio = { ctx, node, base: null };
  }

  connect() {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/v1/stream";
    const protocols = ["emotion.v1"];
    if (this.token) protocols.push("bearer." + this.token); // a header, never the URL
    status("connecting…");
    const ws = new WebSocket(url, protocols);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.ready = false;
    ws.onopen = () => {
      const modalities = [];
      if (this.hasAudio) modalities.push("audio");
      if (this.hasVideo) modalities.push("video");
      const start = { type: "start", version: 1, stream: "browser-" + Math.random().toString(36).slice(2, 8), modalities };
      if (this.hasAudio) start.audio = { format: "pcm16", sample_rate: this.audio.ctx.sampleRate, channels: 1 };
      ws.send(JSON.stringify(start));
    };
    ws.onmessage = (m) => this.onMessage(JSON.parse(m.data));
    ws.onclose = (e) => this.onClose(e);
  }

  onMessage(msg) {
    if (msg.type === "ready") {
      this.ready = true;
      this.retries = 0;
      page.ready = msg;
      this.t0 = performance.now();
      if (this.audio) {
        this.audio.base = null; // the next chunk is media time 0
        this.audio.t0ctx = this.audio.ctx.currentTime;
      }
      this.lastFrameT = -1;
      $("model").textContent = `${msg.model}${msg.trained ? "" : " (untrained)"}, ${msg.backend}`;
      status(`streaming ${[this.hasAudio && "microphone", this.hasVideo && "camera"].filter(Boolean).join(" and ")}`);
      showError(this.notes || "");
      if (this.hasVideo) this.startFrames(msg.video_fps || 10);
    } else if (msg.type === "event") {
      render(msg.event, this);
    } else if (msg.type === "error") {
      this.lastError = msg;
    } else if (msg.type === "summary") {
      status(`stream ended: ${msg.events} events` + (msg.ended !== "end" ? ` (${msg.ended})` : ""));
    }
  }

  mediaTime() {
    // one capture clock for both: the audio context's when there is audio
    if (this.audio && this.audio.t0ctx !== undefined) return this.audio.ctx.currentTime - this.audio.t0ctx;
    return (performance.now() - this.t0) / 1000;
  }

  onAudio({ index, pcm }) {
    const ws = this.ws;
    if (!this.ready || !ws || ws.readyState !== WebSocket.OPEN) return;
    if (this.audio.base === null) this.audio.base = index;
    const t = (index - this.audio.base) / this.audio.ctx.sampleRate;
    ws.send(pack(1, t, this.audio.ctx.sampleRate, pcm));
  }

  startFrames(fps) {
    const video = $("video");
    const canvas = document.createElement("canvas");
    const g = canvas.getContext("2d");
    let busy = false;
    this.frameTimer = setInterval(() => {
      const ws = this.ws;
      if (busy || !this.ready || !ws || ws.readyState !== WebSocket.OPEN || !video.videoWidth) return;
      if (ws.bufferedAmount > 1 << 20) return; // the network is behind: skip this frame
      const scale = Math.min(1, 640 / video.videoWidth);
      canvas.width = Math.round(video.videoWidth * scale);
      canvas.height = Math.round(video.videoHeight * scale);
      const t = this.mediaTime();
      if (t <= this.lastFrameT) return;
      this.lastFrameT = t;
      g.drawImage(video, 0, 0, canvas.width, canvas.height);
      this.frameSize = [canvas.width, canvas.height];
      busy = true;
      canvas.toBlob(async (blob) => {
        try {
          if (blob && ws.readyState === WebSocket.OPEN) ws.send(pack(2, t, 0, await blob.arrayBuffer()));
        } finally {
          busy = false;
        }
      }, "image/jpeg", 0.8);
    }, 1000 / fps);
  }

  stopFrames() {
    clearInterval(this.frameTimer);
    this.frameTimer = null;
  }

  onClose(e) {
    this.stopFrames();
    this.ready = false;
    page.closes.push({ code: e.code, reason: e.reason });
    const reason = (this.lastError && this.lastError.message) || e.reason || "";
    this.lastError = null;
    if (this.stopping) {
      status("stopped");
      return;
    }
    if (e.code === 1000) {
      status("the server ended the stream: " + (reason || "done"));
      this.finish();
      return;
    }
    if (e.code === 1008) {
      showError(`refused: ${reason} (check the token)`);
      this.finish();
      return;
    }
    if (FINAL_CODES.has(e.code)) {
      showError(`the server ended the stream (${e.code}): ${reason}`);
      this.finish();
      return;
    }
    const what = e.code === 1013 ? `the server is busy: ${reason}` : `connection lost (${e.code}${reason ? ": " + reason : ""})`;
    if (this.retries >= MAX_RETRIES) {
      showError(`${what}. Gave up after ${MAX_RETRIES} retries: press Start to try again.`);
      this.finish();
      return;
    }
    const wait = Math.min(30, 2 ** this.retries);
    this.retries += 1;
    showError(`${what}. Retrying in ${wait} s…`);
    setTimeout(() => !this.stopping && this.connect(), wait * 1000);
  }

  stop() {
    this.stopping = true;
    this.stopFrames();
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "end" }));
    this.finish();
  }

  finish() {
    this.stopFrames();
    for (const tr of this.stream.getTracks()) tr.stop();
    if (this.audio) this.audio.ctx.close();
    $("start").disabled = false;
    $("stop").disabled = true;
    if (run === this) run = null;
  }
}

function bars(el, probs, small) {
  el.className = small ? "bars small" : "bars";
  el.replaceChildren(
    ...Object.entries(probs).map(([k, p]) => {
      const row = document.createElement("div");
      row.className = "row";
      row.dataset.cls = k;
      const name = document.createElement("span");
      name.textContent = NAMES[k] || k;
      const bar = document.createElement("div");
      bar.className = "bar";
      const fill = document.createElement("div");
      fill.className = "fill";
      fill.style.width = `${(100 * p).toFixed(1)}%`;
      bar.append(fill);
      const v = document.createElement("span");
      v.textContent = `${(100 * p).toFixed(0)}%`;
      row.append(name, bar, v);
      return row;
    })
  );
}

function render(ev, r) {
  page.events += 1;
  page.last = ev;
  $("events").textContent = String(page.events);
  $("latency").textContent = `${Math.round(ev.e2e_latency_ms)} ms`;
  $("label").textContent = ev.label ? `: ${NAMES[ev.label] || ev.label}` : ": no reading";
  if (ev.probs) bars($("bars"), ev.probs, false);
  $("modalities").replaceChildren(
    ...Object.entries(ev.modalities).map(([m, h]) => {
      const li = document.createElement("li");
      li.className = `state-${h.state}`;
      li.dataset.modality = m;
      li.textContent = `${m}: ${h.state}${h.reason ? " (" + h.reason + ")" : ""}`;
      return li;
    })
  );
  $("experts").replaceChildren(
    ...Object.entries(ev.experts || {}).map(([name, x]) => {
      const box = document.createElement("div");
      const h = document.createElement("h3");
      h.textContent = `${name}: ${NAMES[x.label] || x.label}`;
      const b = document.createElement("div");
      bars(b, x.probs, true);
      box.append(h, b);
      return box;
    })
  );
  for (const w of ev.new_words || []) r.committed.push(w.text.trim());
  $("committed").textContent = r.committed.join(" ");
  $("tentative").textContent = ev.tentative || "";
  drawFace(ev.face, r.frameSize);
}

function drawFace(face, frameSize) {
  const canvas = $("overlay");
  const video = $("video");
  canvas.width = canvas.clientWidth;
  canvas.height = canvas.clientHeight;
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (!face || !face.box || !frameSize || !video.videoWidth) return;
  // the video is drawn "contain": scale and letterbox like it
  const s = Math.min(canvas.width / frameSize[0], canvas.height / frameSize[1]);
  const ox = (canvas.width - frameSize[0] * s) / 2;
  const oy = (canvas.height - frameSize[1] * s) / 2;
  const [x0, y0, x1, y1] = face.box;
  g.strokeStyle = "#4fd26b";
  g.lineWidth = 2;
  g.strokeRect(ox + x0 * s, oy + y0 * s, (x1 - x0) * s, (y1 - y0) * s);
}

async function start() {
  showError("");
  $("start").disabled = true;
  const token = $("token").value.trim();
  if (token && !/^[A-Za-z0-9\-._~+]+$/.test(token)) {
    showError("the token may hold only letters, digits and -._~+ (it is sent as a WebSocket subprotocol)");
    $("start").disabled = false;
    return;
  }
  if (token) sessionStorage.setItem("emotion-token", token);
  status("opening the camera and the microphone…");
  try {
    const { stream, notes } = await openDevices($("use-mic").checked, $("use-camera").checked);
    run = new Run(stream, token);
    run.notes = notes.length ? notes.join("; ") + ": streaming what is left." : "";
    if (run.notes) showError(run.notes);
    $("stop").disabled = false;
    await run.start();
  } catch (e) {
    showError(e.message || String(e));
    status("not started");
    $("start").disabled = false;
  }
}

$("token").value = sessionStorage.getItem("emotion-token") || "";
$("controls").addEventListener("submit", (e) => {
  e.preventDefault();
  start();
});
$("stop").addEventListener("click", () => run && run.stop());
if (new URLSearchParams(location.search).get("autostart") === "1") start();
