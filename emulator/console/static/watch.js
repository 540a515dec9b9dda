// The watch page's player: the room's H.264 and Opus, as the room server relays them, decoded with
// WebCodecs. The stream (GET /api/watch) is the room's own framing: u32 length, u16 header length,
// JSON header, payload. "vconfig" comes before the first key frame (the server starts there), then
// "v" (an Annex B access unit) and "a" (an Opus packet); "w" in each is when the room relayed it.

export function startWatch(box, { app, room, str, user }) {
  const canvas = document.createElement("canvas");
  canvas.className = "watch";
  canvas.width = 640; canvas.height = 360;
  const ctx2d = canvas.getContext("2d");
  const status = document.createElement("p");
  status.id = "watch-status";
  const figures = document.createElement("p");
  figures.className = "mono";
  figures.id = "watch-figures";
  const soundBtn = document.createElement("button");
  soundBtn.textContent = "Sound on";
  box.replaceChildren(canvas, figures, status, soundBtn);

  const stats = { state: "connecting", videoFrames: 0, keyFrames: 0, audioFrames: 0, errors: 0, firstChunk: null,
                  delayMs: null, audioLevel: null, codec: null, width: 0, height: 0, message: "" };
  window.consoleWatch = { stats, canvas }; // what a test (or a curious person) reads back
  const say = (state, message = "") => { stats.state = state; stats.message = message; status.textContent = message || state; status.dataset.state = state; };
  say("connecting", "connecting…");

  const abort = new AbortController();
  let stopped = false;
  let decoder = null, config = null, needKey = true;
  const relayedAt = new Map(); // video timestamp (µs) -> "w"
  let audioDecoder = null, audioChannels = 0;
  const actx = window.AudioContext ? new AudioContext({ latencyHint: "interactive", sampleRate: 48000 }) : null;
  let nextAudioTime = 0;
  const soundState = () => { soundBtn.hidden = !actx || actx.state === "running"; };
  soundBtn.onclick = () => actx && actx.resume().then(soundState);
  if (actx) actx.onstatechange = soundState;
  soundState();

  function newVideoDecoder() {
    if (decoder && decoder.state !== "closed") decoder.close();
    decoder = new VideoDecoder({
      output: (frame) => {
        if (canvas.width !== frame.displayWidth || canvas.height !== frame.displayHeight) {
          canvas.width = frame.displayWidth; canvas.height = frame.displayHeight;
        }
        ctx2d.drawImage(frame, 0, 0, canvas.width, canvas.height);
        const w = relayedAt.get(frame.timestamp);
        relayedAt.delete(frame.timestamp);
        if (w !== undefined) stats.delayMs = Date.now() - w;
        frame.close();
        stats.videoFrames++;
        if (stats.state !== "playing") say("playing");
      },
      error: (e) => { stats.errors++; needKey = true; say("recovering", `decoder error (${e.message}); waiting for the next key frame`); },
    });
    decoder.configure({ codec: config.codec, optimizeForLatency: true });
    needKey = true;
  }

  function onVideo(h, payload) {
    if (!config) return;
    const key = h.k === 1;
    if (!decoder || decoder.state === "closed") { if (!key) return; newVideoDecoder(); }
    if (needKey && !key) return;
    // A decoder that cannot keep up drops to the next key frame rather than fall behind the room.
    if (decoder.decodeQueueSize > 30 && !key) { needKey = true; return; }
    needKey = false;
    const timestamp = h.pts * 1000;
    relayedAt.set(timestamp, h.w);
    if (relayedAt.size > 300) relayedAt.delete(relayedAt.keys().next().value);
    if (stats.firstChunk === null) stats.firstChunk = key ? "key" : "delta";
    if (key) stats.keyFrames++;
    decoder.decode(new EncodedVideoChunk({ type: key ? "key" : "delta", timestamp, data: payload }));
  }

  function playAudio(data) {
    const n = data.numberOfFrames, ch = data.numberOfChannels;
    let sum = 0;
    const planes = [];
    for (let c = 0; c < ch; c++) {
      const plane = new Float32Array(n);
      data.copyTo(plane, { planeIndex: c, format: "f32-planar" });
      for (let i = 0; i < n; i++) sum += plane[i] * plane[i];
      planes.push(plane);
    }
    const rms = Math.sqrt(sum / Math.max(1, n * ch));
    stats.audioLevel = rms > 0 ? Math.round(20 * Math.log10(rms) * 10) / 10 : -120;
    stats.audioFrames++;
    if (!actx || actx.state !== "running") return;
    const buffer = actx.createBuffer(ch, n, data.sampleRate);
    planes.forEach((p, c) => buffer.copyToChannel(p, c));
    const src = actx.createBufferSource();
    src.buffer = buffer;
    src.connect(actx.destination);
    const now = actx.currentTime;
    // Play as soon as possible; a queue that grew past 0.3 s is dropped to stay live.
    if (nextAudioTime < now + 0.02 || nextAudioTime > now + 0.3) nextAudioTime = now + 0.05;
    src.start(nextAudioTime);
    nextAudioTime += buffer.duration;
  }

  function onAudio(h, payload) {
    if (!window.AudioDecoder) return;
    if (!audioDecoder || audioDecoder.state === "closed" || audioChannels !== h.ch) {
      if (audioDecoder && audioDecoder.state !== "closed") audioDecoder.close();
      audioChannels = h.ch;
      audioDecoder = new AudioDecoder({
        output: (data) => { try { playAudio(data); } finally { data.close(); } },
        error: () => { stats.errors++; },
      });
      audioDecoder.configure({ codec: "opus", sampleRate: 48000, numberOfChannels: h.ch });
    }
    audioDecoder.decode(new EncodedAudioChunk({ type: "key", timestamp: h.pts * 1000, data: payload }));
  }

  function onMessage(h, payload) {
    switch (h.t) {
      case "hello":
        // An anchor publishing audio only (a student's microphone): no black picture waiting for a key frame.
        canvas.hidden = h.video === false;
        say("waiting", h.video === false ? "in the room; audio only (no picture published)" : "in the room; waiting for the next key frame…");
        break;
      case "vconfig":
        canvas.hidden = false;
        config = { codec: h.codec, width: h.width, height: h.height };
        Object.assign(stats, { codec: h.codec, width: h.width, height: h.height });
        decoder = null; // a new decoder for the new stream, from this key frame
        break;
      case "v": onVideo(h, payload); break;
      case "a": onAudio(h, payload); break;
      case "closed": say("ended", `the stream ended: ${h.msg}`); break;
      default: break; // "idle": nothing relayed for a while
    }
  }

  async function run() {
    if (!window.VideoDecoder) { say("unsupported", "this browser has no WebCodecs (VideoDecoder); use a recent Chromium"); return; }
    const url = `/api/watch?${new URLSearchParams({ app, room, str, user })}`;
    let r;
    try { r = await fetch(url, { signal: abort.signal, cache: "no-store" }); } catch (e) {
      if (!stopped) say("error", `cannot reach the console: ${e.message}`); return;
    }
    if (!r.ok) {
      let msg = `HTTP ${r.status}`;
      try { msg = (await r.json()).error.message; } catch (e) { /* keep the status */ }
      say("gone", `nothing to watch: ${msg}`);
      return;
    }
    const reader = r.body.getReader();
    let buf = new Uint8Array(0);
    const decoderText = new TextDecoder();
    while (!stopped) {
      let chunk;
      try { chunk = await reader.read(); } catch (e) { if (!stopped) say("error", `the stream broke: ${e.message}`); return; }
      if (chunk.done) { if (stats.state !== "ended") say("ended", "the stream ended"); return; }
      const joined = new Uint8Array(buf.length + chunk.value.length);
      joined.set(buf); joined.set(chunk.value, buf.length);
      buf = joined;
      let pos = 0;
      const view = new DataView(buf.buffer);
      while (buf.length - pos >= 6) {
        const total = view.getUint32(pos);
        if (buf.length - pos - 4 < total) break;
        const hlen = view.getUint16(pos + 4);
        const header = JSON.parse(decoderText.decode(buf.subarray(pos + 6, pos + 6 + hlen)));
        const payload = buf.slice(pos + 6 + hlen, pos + 4 + total);
        pos += 4 + total;
        try { onMessage(header, payload); } catch (e) { stats.errors++; needKey = true; }
      }
      buf = buf.slice(pos);
    }
  }

  const timer = setInterval(() => {
    figures.textContent = [
      stats.codec ? `${stats.width}×${stats.height} ${stats.codec}` : "no picture yet",
      `${stats.videoFrames} frames`, stats.delayMs !== null ? `${stats.delayMs} ms behind the room` : null,
      stats.audioLevel !== null ? `audio ${stats.audioLevel} dBFS${actx && actx.state === "running" ? "" : " (muted: press Sound on)"}` : "no audio",
    ].filter(Boolean).join(" · ");
  }, 250);

  run();
  return () => {
    stopped = true;
    abort.abort();
    clearInterval(timer);
    if (decoder && decoder.state !== "closed") decoder.close();
    if (audioDecoder && audioDecoder.state !== "closed") audioDecoder.close();
    if (actx) actx.close();
  };
}
