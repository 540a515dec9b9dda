"""The console's tap on the room server's relay: live figures per published stream, and the streams
the watch page plays.

`MediaTap.on_media` is registered in `Rooms.taps`, so it sees every packet exactly as the room
relays it to the members, on the room server's thread and under the rooms' lock: it only counts
and appends. Everything slower (decoding audio for its level, writing to a browser) happens on the
console's own threads.
"""
from __future__ import annotations

import array
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from shared.room import wire
from shared.room.wire import Message

from .codecs import VideoFacts, opus_channels, video_facts

StreamKey = tuple[int, str, str]  # (sdkAppId, room key "i:123" / "s:abc", userId)
WINDOW_S = 1.0
LEVEL_PACKETS = 25  # 0.5 s of 20 ms Opus packets kept for the audio level
LEVEL_WARMUP = 10  # decoded but not measured: a fresh decoder's first output is not the signal
# A watcher that falls this far behind (a stalled tab) is cut back to the next key frame.
WATCH_QUEUE_MAX = 400


@dataclass
class _Window:
    """(time, bytes) of the packets in the last WINDOW_S seconds."""

    items: deque[tuple[float, int]] = field(default_factory=deque)

    def add(self, now: float, size: int) -> None:
        self.items.append((now, size))
        while self.items and now - self.items[0][0] > WINDOW_S:
            self.items.popleft()

    def rate(self, now: float) -> tuple[int, int]:
        """(packets, bytes) in the window ending now."""
        recent = [s for t, s in self.items if now - t <= WINDOW_S]
        return len(recent), sum(recent)


@dataclass
class StreamFigures:
    video: _Window = field(default_factory=_Window)
    audio: _Window = field(default_factory=_Window)
    facts: VideoFacts | None = None
    channels: int = 0
    video_pts: int | None = None
    audio_pts: int | None = None
    last_seen: float = 0.0
    opus: deque[bytes] = field(default_factory=lambda: deque(maxlen=LEVEL_PACKETS))


class Watcher:
    """One watch page's share of a stream: what was relayed since it came, from a key frame on."""

    def __init__(self, key: StreamKey):
        self.key = key
        self._items: deque[tuple[int, Message]] = deque()  # (relayed at, wall ms; the packet)
        self._cond = threading.Condition()
        self._need_key = True
        self._facts: VideoFacts | None = None
        self.dropped = 0

    def push(self, message: Message) -> None:
        with self._cond:
            if len(self._items) >= WATCH_QUEUE_MAX:
                # Too far behind to be live: drop what is queued and start again at a key frame,
                # rather than feed the decoder a picture whose references are gone.
                self.dropped += len(self._items)
                self._items.clear()
                self._need_key = True
            self._items.append((int(time.time() * 1000), message))
            self._cond.notify()

    def take(self, timeout: float) -> list[Message]:
        """What is to be sent now, in the browser's framing (may be empty after `timeout`)."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            items = list(self._items)
            self._items.clear()
        out: list[Message] = []
        for relayed_at, m in items:
            stamp = {"w": relayed_at}  # the page measures how far behind the room it is with it
            if m.type == wire.VIDEO:
                key = bool(m.header.get("k"))
                if self._need_key and not key:
                    continue  # joining mid-stream: nothing before the next key frame can be decoded
                if key:
                    facts = video_facts(m.payload)
                    if facts is None and self._need_key:
                        continue  # a key frame without its SPS cannot start a decoder either
                    if facts is not None and facts != self._facts:
                        self._facts = facts
                        out.append(Message({"t": "vconfig", "codec": facts.codec, "width": facts.width,
                                            "height": facts.height}))
                    self._need_key = False
                out.append(Message({"t": "v", "pts": m.header.get("pts"), "k": 1 if key else 0, **stamp}, m.payload))
            elif m.type == wire.AUDIO:
                out.append(Message({"t": "a", "pts": m.header.get("pts"), "ch": opus_channels(m.payload), **stamp},
                                   m.payload))
        return out


class MediaTap:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._figures: dict[StreamKey, StreamFigures] = {}
        self._watchers: dict[StreamKey, set[Watcher]] = {}

    # --- the tap (room server thread, rooms' lock held) --------------------------------------

    def on_media(self, room: Any, user_id: str, message: Message) -> None:
        key: StreamKey = (int(room.sdk_app_id), str(room.ref.key), user_id)
        now = self._clock()
        size = len(message.payload)
        with self._lock:
            fig = self._figures.get(key)
            if fig is None:
                fig = self._figures[key] = StreamFigures()
            fig.last_seen = now
            if message.type == wire.VIDEO:
                fig.video.add(now, size)
                fig.video_pts = message.header.get("pts")
                if message.header.get("k"):
                    fig.facts = video_facts(message.payload) or fig.facts
            elif message.type == wire.AUDIO:
                fig.audio.add(now, size)
                fig.audio_pts = message.header.get("pts")
                fig.channels = opus_channels(message.payload)
                fig.opus.append(message.payload)
            watchers = list(self._watchers.get(key, ()))
        for w in watchers:
            w.push(message)

    # --- what the console reads ----------------------------------------------------------------

    def figures(self, key: StreamKey) -> dict[str, Any] | None:
        """The stream's live figures, or None when nothing of it was relayed in the last seconds."""
        now = self._clock()
        with self._lock:
            fig = self._figures.get(key)
            if fig is None or now - fig.last_seen > 3 * WINDOW_S:
                return None
            frames, vbytes = fig.video.rate(now)
            packets, abytes = fig.audio.rate(now)
            facts, channels, opus = fig.facts, fig.channels, list(fig.opus)
            video_pts, audio_pts = fig.video_pts, fig.audio_pts
        level = audio_level(opus, channels) if packets else None
        return {
            "video": None if not frames and facts is None else {
                "fps": round(frames / WINDOW_S, 1), "bitrateKbps": round(vbytes * 8 / WINDOW_S / 1000, 1),
                "width": facts.width if facts else None, "height": facts.height if facts else None,
                "codec": facts.codec if facts else None, "pts": video_pts},
            "audio": None if not packets else {
                "packetsPerSecond": round(packets / WINDOW_S, 1), "bitrateKbps": round(abytes * 8 / WINDOW_S / 1000, 1),
                "channels": channels, "level": level, "pts": audio_pts},
        }

    def forget_except(self, keys: set[StreamKey]) -> None:
        """Drop the figures of streams that are no longer in any room."""
        with self._lock:
            for key in [k for k in self._figures if k not in keys and k not in self._watchers]:
                del self._figures[key]

    # --- watchers --------------------------------------------------------------------------------

    def watch(self, key: StreamKey) -> Watcher:
        w = Watcher(key)
        with self._lock:
            self._watchers.setdefault(key, set()).add(w)
        return w

    def unwatch(self, w: Watcher) -> None:
        with self._lock:
            group = self._watchers.get(w.key)
            if group is not None:
                group.discard(w)
                if not group:
                    del self._watchers[w.key]

    def watching(self) -> int:
        with self._lock:
            return sum(len(g) for g in self._watchers.values())


def audio_level(packets: list[bytes], channels: int) -> dict[str, float] | None:
    """The level of the last few Opus packets: RMS in dBFS and TRTC's 0..100 volume scale."""
    if len(packets) <= LEVEL_WARMUP:
        return None
    import av  # only when a page asks: the tap itself never decodes

    layout = "stereo" if channels == 2 else "mono"
    try:
        ctx = av.CodecContext.create("opus", "r")
        ctx.sample_rate = 48000
        ctx.layout = layout
        resampler = av.AudioResampler(format="s16", layout=layout, rate=48000)
        total, count = 0, 0
        for i, packet in enumerate(packets):
            for frame in ctx.decode(av.Packet(packet)):
                if i < LEVEL_WARMUP:
                    continue
                for out in resampler.resample(frame):
                    samples = array.array("h", bytes(out.planes[0])[:out.samples * 2 * len(out.layout.channels)])
                    total += sum(s * s for s in samples)
                    count += len(samples)
    except (av.error.FFmpegError, ValueError):
        return None
    if not count:
        return None
    rms = math.sqrt(total / count) / 32768.0
    dbfs = 20 * math.log10(rms) if rms > 0 else -120.0
    return {"dbfs": round(max(dbfs, -120.0), 1), "volume": round(min(100.0, max(0.0, (dbfs + 60) / 60 * 100)), 0)}
