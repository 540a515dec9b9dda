// The local cloud's console: one page, a view per hash route. Everything it shows comes from the
// console's /api (the emulator's own models); nothing is loaded from outside this machine.
import { startWatch } from "/static/watch.js";

// --- small helpers ---------------------------------------------------------------------------------

// h("td", {class: "num"}, "text", child): an element; strings become text nodes (never HTML).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(path, options = {}) {
  const init = { ...options, headers: { ...(options.headers || {}) } };
  if (init.json !== undefined) {
    init.method = init.method || "POST";
    init.body = JSON.stringify(init.json);
    init.headers["Content-Type"] = "application/json";
    delete init.json;
  }
  const r = await fetch(path, init);
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) {
    const err = (body && body.error) || { code: `HTTP ${r.status}`, message: r.statusText };
    throw Object.assign(new Error(err.message), { code: err.code, status: r.status });
  }
  return body;
}

// An EventSource that the view closes when it is left.
function live(path, handlers) {
  const es = new EventSource(path);
  for (const [event, fn] of Object.entries(handlers)) {
    es.addEventListener(event, (e) => fn(JSON.parse(e.data)));
  }
  leaving(() => es.close());
  return es;
}

const fmtBytes = (n) => n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KB` : `${(n / (1 << 20)).toFixed(1)} MB`;
const fmtSeconds = (s) => s === null || s === undefined ? "–" : `${Number(s).toFixed(1)} s`;
// The runs' times are the emulator's local time, "YYYY-mm-dd HH:MM:SS.ffffff".
const parseTime = (t) => t ? new Date(t.replace(" ", "T").slice(0, 23)) : null;
function durationOf(run) {
  if (run.durationMs !== null && run.durationMs !== undefined) return run.durationMs / 1000;
  const start = parseTime(run.startTime);
  return start ? (Date.now() - start.getTime()) / 1000 : null;
}
const pretty = (v) => JSON.stringify(v, null, 2);
const statusEl = (s) => h("span", { class: `status ${s}` }, s);
const errorBox = (e) => h("div", { class: "error" }, `${e.code ? e.code + ": " : ""}${e.message}`);

// --- routing ---------------------------------------------------------------------------------------

let cleanups = [];
const leaving = (fn) => cleanups.push(fn);
const main = () => document.getElementById("main");

function route() {
  for (const fn of cleanups.splice(0)) { try { fn(); } catch (e) { /* a view going away */ } }
  const hash = location.hash || "#/runs";
  const [path, query] = hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === parts[0]));
  main().replaceChildren();
  const views = { runs: parts[1] ? () => runPage(parts[1]) : runsPage, rooms: roomsPage, watch: () => watchPage(params),
                  recordings: recordingsPage, start: startPage };
  (views[parts[0]] || runsPage)();
}
window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);

// --- runs ------------------------------------------------------------------------------------------

function runsPage() {
  const tbody = h("tbody", {});
  main().append(h("h1", {}, "Runs"), h("p", { class: "muted" }, "Every run of every function, newest first."),
    h("table", { id: "runs" }, h("thead", {}, h("tr", {}, ["function", "request id", "status", "code", "start",
      "duration", "result"].map((c) => h("th", {}, c)))), tbody));
  let runs = [];
  const render = () => {
    tbody.replaceChildren(...(runs.length ? runs.map((r) => h("tr", { dataset: { reqid: r.requestId, status: r.status } },
      h("td", {}, r.functionName),
      h("td", { class: "mono" }, h("a", { href: `#/runs/${encodeURIComponent(r.requestId)}` }, r.requestId)),
      h("td", {}, statusEl(r.status)), h("td", { class: "num" }, r.statusCode),
      h("td", {}, r.startTime ? r.startTime.slice(0, 19) : ""), h("td", { class: "num" }, fmtSeconds(durationOf(r))),
      h("td", {}, [r.result.status, r.result.reason].filter(Boolean).join(" / ") || (r.status === "RUNNING" ? "…" : "–")),
    )) : [h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No runs yet: start one from the Start page."))]));
  };
  live("/api/runs/events", { runs: (d) => { runs = d.runs; render(); } });
  const timer = setInterval(render, 1000); // running durations tick
  leaving(() => clearInterval(timer));
}

function progressView() {
  const bar = h("progress", { max: 1, value: 0 });
  const text = h("span", { class: "mono" }, "no progress yet");
  const el = h("div", { class: "progress", id: "progress", hidden: true }, bar, text);
  return {
    el,
    update(p) {
      el.hidden = false;
      el.dataset.position = p.position;
      if (p.duration) { bar.max = p.duration; bar.value = Math.min(p.position || 0, p.duration); }
      else bar.removeAttribute("value"); // a live source: no end to measure against
      const parts = [`${fmtSeconds(p.position)}${p.duration ? " of " + fmtSeconds(p.duration) : " (live)"}`];
      if (p.speed !== null && p.speed !== undefined) parts.push(`${Number(p.speed).toFixed(2)}×`);
      if (p.fps !== null && p.fps !== undefined) parts.push(`${p.fps} fps`);
      if (p.bitrateKbps) parts.push(`${p.bitrateKbps} kbit/s`);
      if (p.checkpoint) parts.push(`checkpoint ${p.checkpoint}`);
      text.textContent = parts.join(" · ");
    },
  };
}

async function runPage(requestId) {
  const root = main();
  root.append(h("h1", {}, "Run ", h("span", { class: "mono" }, requestId)));
  let run;
  try { run = await api(`/api/runs/${encodeURIComponent(requestId)}`); } catch (e) {
    root.append(h("div", { class: "notice", id: "stale" },
      e.status === 404 ? `There is no run with request id ${requestId}: it does not exist (any more).` : e.message),
      h("p", {}, h("a", { href: "#/runs" }, "← all runs")));
    return;
  }
  const head = h("dl", { class: "kv", id: "run-head" });
  const message = h("div", {});
  const progress = progressView();
  const logEl = h("pre", { class: "log", id: "log" });
  const resultEl = h("pre", { id: "result" }, "–");
  const graceBtn = h("button", { id: "terminate-grace", onclick: () => terminate(true) }, "Terminate gracefully (SIGTERM)");
  const killBtn = h("button", { id: "terminate-kill", class: "danger", onclick: () => terminate(false) }, "Terminate hard (kill)");
  const showHead = () => {
    head.replaceChildren(
      h("dt", {}, "function"), h("dd", {}, run.functionName),
      h("dt", {}, "status"), h("dd", { id: "run-status" }, statusEl(run.status), ` (status code ${run.statusCode})`,
        run.terminated ? ` · terminated: ${run.terminated}` : ""),
      h("dt", {}, "started"), h("dd", {}, run.startTime || "–"),
      h("dt", {}, "duration"), h("dd", {}, fmtSeconds(durationOf(run))),
      h("dt", {}, "result"), h("dd", { id: "run-outcome" }, [run.result.status, run.result.reason].filter(Boolean).join(" / ") || "–"),
    );
    const running = run.status === "RUNNING" && !run.terminated;
    graceBtn.disabled = killBtn.disabled = !running;
    resultEl.textContent = run.resultRaw !== null && run.resultRaw !== undefined ? pretty(run.resultBody)
      : run.error ? pretty(run.error) : run.status === "RUNNING" ? "(running)" : "–";
  };
  async function terminate(grace) {
    message.replaceChildren();
    graceBtn.disabled = killBtn.disabled = true;
    try {
      run = await api(`/api/runs/${encodeURIComponent(requestId)}/terminate`, { json: { grace } });
      showHead();
    } catch (e) { message.append(errorBox(e)); showHead(); }
  }
  let event = run.event;
  const body = event && typeof event.body === "string" ? (() => { try { return JSON.parse(event.body); } catch (e) { return null; } })() : null;
  const transcript = run.functionName === "recognize_stream" ? transcriptView(requestId) : null;
  root.append(head, h("p", {}, graceBtn, " ", killBtn), message, progress.el, transcript,
    h("div", { class: "row" },
      h("div", { class: "grow" }, h("h2", {}, "Log"), logEl),
      h("div", { class: "grow" }, h("h2", {}, "Result"), resultEl,
        h("h2", {}, "Event (secrets redacted)"), h("pre", { id: "event" }, pretty(body ? { ...event, body } : event)))));
  showHead();
  const timer = setInterval(() => { if (run.status === "RUNNING") showHead(); }, 1000);
  leaving(() => clearInterval(timer));
  const es = live(`/api/runs/${encodeURIComponent(requestId)}/log`, {
    message: (d) => {
      if (d.omitted) logEl.append("… (earlier lines omitted)\n");
      for (const item of d.lines || []) {
        logEl.append(item.line + "\n");
        if (item.progress) progress.update(item.progress);
      }
      logEl.scrollTop = logEl.scrollHeight;
    },
    end: (d) => { run = d; showHead(); es.close(); },
  });
  es.addEventListener("open", () => { logEl.textContent = ""; }); // a reconnect sends the log again
}

// A recognize_stream run's transcript: every sentence with its speaker and times, live while the run
// goes (from its log), then the result's (with the COS clip of each sentence and the transcript files).
function transcriptView(requestId) {
  const tbody = h("tbody", {});
  const files = h("p", { id: "transcript-files" });
  const note = h("p", { class: "muted" });
  const el = h("section", { id: "transcript" }, h("h2", {}, "Transcript"), note,
    h("table", {}, h("thead", {}, h("tr", {}, ["speaker", "#", "start", "end", "text", "clip"].map((c) => h("th", {}, c)))), tbody),
    files);
  const render = (t) => {
    note.textContent = t.running ? "Live: each sentence appears as it is recognised." : t.source === "result"
      ? "From the run's result." : "From the run's log.";
    tbody.replaceChildren(...(t.sentences.length ? t.sentences.map((s) => h("tr", { dataset: { user: s.userId, index: s.index } },
      h("td", { class: "mono" }, s.userId), h("td", { class: "num" }, s.index),
      h("td", { class: "num" }, fmtSeconds(s.startMs / 1000)), h("td", { class: "num" }, fmtSeconds(s.endMs / 1000)),
      h("td", { class: "said" }, s.text || h("span", { class: "muted" }, "(nothing recognised)")),
      h("td", {}, s.clip ? h("a", { class: "clip", href: s.clip, target: "_blank" }, "clip") : "")))
      : [h("tr", {}, h("td", { colspan: 6, class: "muted" }, t.running ? "Nothing recognised yet." : "No sentence was recognised."))]));
    files.replaceChildren(...t.files.map((f) => f.url
      ? h("span", { class: "file" }, h("a", { href: f.url, target: "_blank", dataset: { kind: f.kind, user: f.userId } },
          `${f.userId} · transcript ${f.kind}`), " ")
      : h("div", { class: "error" }, `${f.userId}: ${f.message}`)));
  };
  live(`/api/runs/${encodeURIComponent(requestId)}/transcript/events`, { transcript: render });
  return el;
}

// --- rooms -----------------------------------------------------------------------------------------

// What a recognize_stream run heard an anchor say: its last sentences, the newest last, then (while
// it speaks) the words heard so far, which the final sentence replaces.
function captionLines(captions) {
  return captions.map((c, i) => h("div", {
    class: `caption ${c.partial ? "partial" : "final"}${i === captions.length - 1 ? " latest" : ""}`,
    dataset: c.partial ? {} : { index: c.index } }, h("span", { class: "said" }, c.text || "…"),
    c.partial ? h("span", { class: "when" }, " speaking…")
      : h("span", { class: "when mono", title: "since the recogniser entered the room" },
        ` ${fmtSeconds(c.startMs / 1000)}–${fmtSeconds(c.endMs / 1000)}`)));
}

function figuresText(f) {
  if (!f) return h("span", { class: "muted" }, "no media relayed in the last seconds");
  const out = [];
  if (f.video) out.push(h("div", { class: "mono", dataset: { kind: "video" } },
    `video ${f.video.width || "?"}×${f.video.height || "?"} · ${f.video.fps} fps · ${f.video.bitrateKbps} kbit/s`));
  if (f.audio) {
    const vol = f.audio.level ? f.audio.level.volume : 0;
    out.push(h("div", { class: "mono", dataset: { kind: "audio" } },
      `audio ${f.audio.channels} ch · ${f.audio.bitrateKbps} kbit/s · level `,
      h("span", { class: "meter", title: f.audio.level ? `${f.audio.level.dbfs} dBFS` : "" }, h("span", { style: `width:${vol}%` })),
      f.audio.level ? ` ${f.audio.level.dbfs} dBFS` : ""));
  }
  return out;
}

function roomsPage() {
  const list = h("div", { id: "rooms" });
  const message = h("div", {});
  main().append(h("h1", {}, "Rooms"), h("p", { class: "muted" }, "Every room, its members, and what each anchor publishes."),
    message, list);
  const act = async (path, json) => {
    message.replaceChildren();
    try { await api(path, { json }); } catch (e) { message.append(errorBox(e)); }
  };
  const render = (rooms) => {
    if (!rooms.length) { list.replaceChildren(h("p", { class: "muted" }, "No rooms: nobody is in a room right now.")); return; }
    list.replaceChildren(...rooms.map((room) => {
      const ids = { sdkAppId: room.sdkAppId, roomId: room.roomId, strRoom: room.strRoom };
      return h("div", { class: "card", dataset: { room: room.key } },
        h("div", { class: "row" }, h("h2", { class: "grow" }, `${room.strRoom ? "string room" : "room"} ${room.roomId}`,
          h("span", { class: "muted" }, ` · app ${room.sdkAppId} · ${room.members.length} member(s) · up ${fmtSeconds(room.ageS)}`,
            room.anchorlessS !== null ? ` · no anchor for ${fmtSeconds(room.anchorlessS)}` : "")),
          h("button", { class: "danger dismiss", onclick: () => act("/api/rooms/dismiss", ids) }, "DismissRoom")),
        h("table", {}, h("thead", {}, h("tr", {}, ["user", "role", "publishes", "live figures", ""].map((c) => h("th", {}, c)))),
          h("tbody", {}, room.members.flatMap((m) => [h("tr", { dataset: { user: m.userId, role: m.role } },
            h("td", { class: "mono" }, m.userId), h("td", {}, m.role),
            h("td", {}, m.publishes.join(" + ") || "–"), h("td", {}, m.publishes.length ? figuresText(m.figures) : ""),
            h("td", {}, m.publishes.length ? h("a", { class: "watch", href: `#/watch?${new URLSearchParams({
              app: room.sdkAppId, room: room.roomId, str: room.strRoom ? 1 : 0, user: m.userId })}` }, "Watch") : "", " ",
              h("button", { class: "danger remove", onclick: () => act("/api/rooms/remove-user", { ...ids, userIds: [m.userId] }) },
                "RemoveUser"))),
            m.captions && m.captions.length ? h("tr", { class: "captions", dataset: { captionsOf: m.userId } },
              h("td", {}, h("span", { class: "muted" }, "says")), h("td", { colspan: 4 }, captionLines(m.captions))) : null]))));
    }));
  };
  live("/api/rooms/events", { rooms: (d) => render(d.rooms) });
}

function watchPage(params) {
  const root = main();
  const who = `${params.get("user")} in ${params.get("str") === "1" ? "string room" : "room"} ${params.get("room")}`;
  root.append(h("h1", {}, "Watch ", who), h("p", {}, h("a", { href: "#/rooms" }, "← rooms")));
  const box = h("div", { id: "watch" });
  const captions = h("div", { id: "captions", class: "captions-box" }, h("div", { class: "muted" }, "No speech recognised yet."));
  root.append(box, h("h2", {}, "Captions"), captions);
  const query = { app: params.get("app"), room: params.get("room"), str: params.get("str") || "0", user: params.get("user") };
  leaving(startWatch(box, query));
  // Captions: what a recognize_stream run in this room hears this member say.
  live(`/api/captions/events?${new URLSearchParams(query)}`, {
    captions: (d) => captions.replaceChildren(...(d.captions.length ? captionLines(d.captions)
      : [h("div", { class: "muted" }, "No speech recognised yet.")])),
  });
}

// --- recordings ------------------------------------------------------------------------------------

function objectUrl(bucket, key) {
  return `/api/cos/${encodeURIComponent(bucket)}/${key.split("/").map(encodeURIComponent).join("/")}`;
}

function recordingsPage() {
  const root = main();
  const player = h("div", { id: "player" });
  const list = h("div", { id: "buckets" });
  root.append(h("h1", {}, "Recordings"), h("p", { class: "muted" }, "The local COS's objects; MP4, MP3 and HLS play here."),
    player, list);
  const play = (bucket, o) => {
    const src = `/api/cos/${encodeURIComponent(bucket)}/${o.key.split("/").map(encodeURIComponent).join("/")}`;
    if (o.play === "image") { // a snapshot (SliceVideo): shown, not played
      player.replaceChildren(h("div", { class: "card" }, h("div", { class: "mono" }, o.key),
        h("img", { src, id: "playing", class: "snapshot", alt: o.key, dataset: { key: o.key } })));
      return;
    }
    const kind = o.play === "audio" ? "audio" : "video";
    const media = h(kind, { controls: true, autoplay: true, src, id: "playing", dataset: { key: o.key } });
    const note = h("div", {});
    if (o.play === "hls" && !media.canPlayType("application/vnd.apple.mpegurl")) {
      note.append(h("div", { class: "notice" }, "This browser does not play HLS itself; open the playlist in one that does (Safari, a recent Chromium)."));
    }
    media.addEventListener("error", () => note.replaceChildren(h("div", { class: "error" },
      `cannot play ${o.key}: ${media.error ? media.error.message || "error " + media.error.code : "error"}`)));
    player.replaceChildren(h("div", { class: "card" }, h("div", { class: "mono" }, o.key), media, note));
  };
  const render = (buckets) => list.replaceChildren(...buckets.map((b) => h("div", { class: "card", dataset: { bucket: b.bucket } },
    h("h2", {}, `${b.bucket} `, h("span", { class: "muted" }, `(${b.region}) · ${b.objects.length} object(s)`)),
    b.objects.length ? h("table", {}, h("thead", {}, h("tr", {}, ["key", "size", "modified", ""].map((c) => h("th", {}, c)))),
      h("tbody", {}, b.objects.map((o) => h("tr", { dataset: { key: o.key } },
        h("td", { class: "mono" }, o.key, o.kind ? h("span", { class: "muted kind" }, ` ${o.kind}`) : "",
          o.play === "image" ? h("img", { class: "thumb", loading: "lazy", alt: "", src: objectUrl(b.bucket, o.key) }) : ""),
        h("td", { class: "num" }, fmtBytes(o.size)), h("td", {}, o.lastModified),
        h("td", {}, o.play ? h("button", { class: "play", onclick: () => play(b.bucket, o) }, o.play === "image" ? "Show" : "Play") : "",
          " ", h("a", { href: `/api/cos/${encodeURIComponent(b.bucket)}/${o.key.split("/").map(encodeURIComponent).join("/")}`,
                        download: o.key.split("/").pop() }, "download"))))))
      : h("p", { class: "muted" }, "empty"))));
  const load = async () => {
    try { render((await api("/api/recordings")).buckets); } catch (e) { list.replaceChildren(errorBox(e)); }
  };
  load();
  const timer = setInterval(load, 3000); // new recordings and growing playlists show up
  leaving(() => clearInterval(timer));
}

// --- start -----------------------------------------------------------------------------------------

const PLACEHOLDERS = {
  "push_stream.videoSrc": "/path/to/clip.mp4, or an HTTP(S), HLS or RTMP URL",
  "recognize_stream.HotwordList": "words to favour, comma-separated: triangle, square",
  "recognize_stream.Path": "a COS path for transcripts and clips (empty: none)",
};

async function startPage() {
  const root = main();
  root.append(h("h1", {}, "Start a run"),
    h("p", { class: "muted" }, "POSTs the body to the gateway, as a client does; the UserSig is made for the emulator's application."));
  let info;
  try { info = await api("/api/info"); } catch (e) { root.append(errorBox(e)); return; }
  const cos = info.cos[0] || { region: "", bucket: "" };
  const forms = {
    push_stream: {
      fields: [["videoSrc", "text", ""], ["roomId", "text", "1234"], ["userId", "text", "pusher"], ["redis", "checkbox", false],
               ["repeatNum", "number", "0"]],
      body: (v, sig) => ({ videoSrc: v.videoSrc, sdkAppId: info.sdkAppId, roomId: v.roomId, userId: v.userId, userSig: sig,
        ...(v.repeatNum && v.repeatNum !== "0" ? { repeatNum: Number(v.repeatNum) } : {}),
        ...(v.redis && info.redis ? { redis: true, redisHost: info.redis.host, redisPort: info.redis.port } : {}) }),
    },
    record_stream: {
      fields: [["RoomId", "text", "1234"], ["UserId", "text", "recorder"], ["Mode", "select", ["02", "01", "00"]],
               ["Path", "text", "/recordings"], ["Callback", "text", ""]],
      body: (v, sig) => {
        const room = /^\d+$/.test(v.RoomId) ? { RoomId: Number(v.RoomId) } : { StrRoomId: v.RoomId };
        return { SdkAppId: info.sdkAppId, ...room, UserId: v.UserId, UserSig: sig, Mode: v.Mode,
          CosConfig: { Region: cos.region, Bucket: cos.bucket, Path: v.Path }, ...(v.Callback ? { Callback: v.Callback } : {}) };
      },
    },
    recognize_stream: {
      fields: [["RoomId", "text", "1234"], ["UserId", "text", "recognizer"],
               ["EngineModelType", "select", ["16k_en", "16k_zh", "16k_zh_edu", "16k_en_edu"]],
               ["HotwordList", "text", ""], ["VadSilenceTime", "number", "800"], ["Partial", "checkbox", false],
               ["Path", "text", ""], ["Callback", "text", ""]],
      body: (v, sig) => {
        const room = /^\d+$/.test(v.RoomId) ? { RoomId: Number(v.RoomId) } : { StrRoomId: v.RoomId };
        const hotwords = v.HotwordList.split(",").map((w) => w.trim()).filter(Boolean);
        return { SdkAppId: info.sdkAppId, ...room, UserId: v.UserId, UserSig: sig, EngineModelType: v.EngineModelType,
          VadSilenceTime: Number(v.VadSilenceTime), ...(hotwords.length ? { HotwordList: hotwords } : {}),
          ...(v.Partial ? { Partial: true } : {}),
          // A COS path keeps each anchor's transcript (JSON, WebVTT) and each sentence's clip.
          ...(v.Path ? { CosConfig: { Region: cos.region, Bucket: cos.bucket, Path: v.Path } } : {}),
          ...(v.Callback ? { Callback: v.Callback } : {}) };
      },
    },
  };
  for (const [fn, spec] of Object.entries(forms)) {
    if (!info.functions.includes(fn)) continue;
    const inputs = {};
    const textarea = h("textarea", { id: `${fn}-body`, spellcheck: "false" });
    const answer = h("div", { id: `${fn}-answer` });
    const userField = fn === "push_stream" ? "userId" : "UserId";
    let sig = "";
    const values = () => Object.fromEntries(Object.entries(inputs).map(([k, el]) => [k, el.type === "checkbox" ? el.checked : el.value]));
    const refresh = async (withSig) => {
      if (withSig) {
        const user = inputs[userField].value;
        try {
          const made = await api(`/api/usersig?userId=${encodeURIComponent(user)}`);
          // Answers may come back out of order while someone types: keep the one for what is there now.
          if (made.userId !== inputs[userField].value) return;
          sig = made.userSig;
        } catch (e) {
          if (user !== inputs[userField].value) return;
          sig = ""; answer.replaceChildren(errorBox(e));
        }
      }
      textarea.value = pretty(spec.body(values(), sig));
    };
    const labels = spec.fields.map(([name, type, dflt]) => {
      let el;
      if (type === "select") el = h("select", { name }, dflt.map((o) => h("option", { value: o }, o)));
      else if (type === "checkbox") el = h("input", { type, name });
      else el = h("input", { type, name, value: dflt, placeholder: PLACEHOLDERS[`${fn}.${name}`] || null });
      el.id = `${fn}-${name}`;
      inputs[name] = el;
      el.addEventListener("input", () => refresh(name === userField));
      el.addEventListener("change", () => refresh(name === userField));
      return h("label", {}, h("span", {}, name), el);
    });
    const send = async () => {
      answer.replaceChildren();
      let body;
      try { body = JSON.parse(textarea.value); } catch (e) { answer.append(errorBox({ message: `the body is not JSON: ${e.message}` })); return; }
      try {
        const r = await api(`/api/start/${fn}`, { json: body });
        answer.append(h("div", { class: r.statusCode === 200 ? "notice" : "error" },
          `HTTP ${r.statusCode} · `, r.requestId ? h("span", {}, "x-scf-reqid ",
            h("a", { class: "reqid mono", href: `#/runs/${encodeURIComponent(r.requestId)}` }, r.requestId), " · ") : "",
          h("span", { class: "mono" }, r.body)));
      } catch (e) { answer.append(errorBox(e)); }
    };
    root.append(h("div", { class: "card", id: `form-${fn}` }, h("h2", {}, `POST /${fn}`),
      h("div", { class: "row" }, h("div", {}, labels), h("div", { class: "grow" }, textarea)),
      h("p", {}, h("button", { class: "primary send", onclick: send }, "Send")), answer));
    await refresh(true);
  }
}
