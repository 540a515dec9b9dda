"""A videoSrc opened with PyAV: probe it, then yield room-ready frames interleaved by timestamp.

Kinds: a local path, file://, http(s) files (mp4 including moov-at-end, flv, mkv, webm, mov,
audio-only mp3/m4a), HLS (VOD and live), RTMP and HTTP-FLV. Every failure is a `SourceError`
whose message names the source (credentials and query stripped) and the reason.
"""
from __future__ import annotations

import collections
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator
from urllib.parse import unquote, urlsplit

import av

from shared.egress import DestinationRefused, check_local_path
from shared.media.convert import (
    AudioConverter,
    H264Passthrough,
    VideoConverter,
    to_ms,
)
from shared.media.frames import AudioFrame, H264Frame, PixelFrame
from shared.media.netio import SourceOpener, pinned_rtmp, safe_url
from shared.runtime import RunLogger, get_logger

SOURCE_TIMEOUT_ENV = "SOURCE_TIMEOUT_SECONDS"
DEFAULT_TIMEOUT_S = 15.0
# Undecodable packets in a row before the source is declared broken.
MAX_CONSECUTIVE_ERRORS = 25
# How far one stream may run ahead of the other in the interleaving buffer before it is released
# anyway (a stream that ended early, or a long gap in one of them).
MAX_INTERLEAVE_MS = 2000
# Packets read at open to look for B-frames (dts order != pts order) in the first GOP.
PROBE_PACKETS = 16
# A passthrough stream must show a key frame within this much media time, or it cannot be sent.
MAX_WAIT_FOR_KEY_MS = 20_000
# A non-live source that ends this far before its announced duration was cut short.
TRUNCATION_SLACK_MS = 500
# Containers whose duration FFmpeg estimates from the bitrate: too rough to call a file truncated.
ESTIMATED_DURATION_FORMATS = frozenset({"mp3", "aac", "mpegts", "h264", "hevc", "ac3", "eac3"})
# Forward timestamp jumps are the pacer's business; a backward one larger than this restarts the
# stream's timeline after the furthest timestamp yielded so that pts stay monotonic.
BACKWARD_JUMP_MS = 1000

Frame = AudioFrame | PixelFrame | H264Frame


class SourceError(Exception):
    """The source cannot be used; the message names it and says why."""


@dataclass
class SourceInfo:
    url: str
    is_live: bool
    duration_s: float | None
    has_audio: bool
    has_video: bool
    video_codec: str | None
    width: int | None
    height: int | None
    fps: float | None
    audio_rate: int | None
    audio_channels: int | None
    passthrough: bool  # True when video is sent as H.264 access units without re-encoding


@dataclass
class VideoPlan:
    """What the caller asked for; all None keeps source size and rate and allows passthrough."""

    width: int | None = None
    height: int | None = None
    fps: int | None = None
    bitrate_kbps: int | None = None
    gop_s: int | None = None

    @property
    def asked(self) -> bool:
        return any(v is not None for v in (self.width, self.height, self.fps, self.bitrate_kbps, self.gop_s))


@dataclass
class AudioPlan:
    volume: int = 100  # 0..100
    channels: int | None = None  # None: 1 for mono sources, 2 otherwise (more channels downmixed)


def _timeout_from_env() -> float:
    raw = os.environ.get(SOURCE_TIMEOUT_ENV)
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        value = DEFAULT_TIMEOUT_S
    return value if value > 0 else DEFAULT_TIMEOUT_S


def _reason(e: BaseException, timeout_s: float) -> str:
    """A person-readable reason from a PyAV/FFmpeg error."""
    if isinstance(e, av.error.ExitError):
        return f"no data within {timeout_s:g} s (timed out)"
    if isinstance(e, av.error.HTTPNotFoundError):
        return "HTTP 404 Not Found"
    if isinstance(e, (av.error.HTTPError, av.error.HTTPClientError)):
        return f"HTTP error: {getattr(e, 'strerror', None) or e}"
    if isinstance(e, av.error.ConnectionRefusedError):
        return "connection refused (host unreachable or nothing listening)"
    if isinstance(e, av.error.TimeoutError):
        return f"timed out after {timeout_s:g} s"
    if isinstance(e, av.error.FileNotFoundError):
        return "file not found"
    if isinstance(e, av.error.InvalidDataError):
        return "not a media file, or its data is corrupt (invalid data found when processing input)"
    if isinstance(e, av.error.ProtocolNotFoundError):
        return "unsupported protocol"
    text = getattr(e, "strerror", None) or str(e)
    return str(text)


class MediaSource:
    """Open, probe, and iterate a source. Not thread-safe; one `frames()` iteration at a time.

    After opening: `info` (what the probe found), `channels` (1 or 2: what every AudioFrame
    carries), `name` (the URL as it may be shown), `skipped` (undecodable packets skipped so far).
    `frames()` may be called again for another pass (a loop) or a different start.
    """

    def __init__(
        self,
        url: str,
        *,
        video: VideoPlan = VideoPlan(),
        audio: AudioPlan = AudioPlan(),
        timeout_s: float | None = None,
        log: RunLogger | None = None,
    ):
        if not isinstance(url, str) or not url.strip():
            raise SourceError("videoSrc is empty")
        self.url = url.strip()
        self.name = safe_url(self.url)
        self.video_plan = video
        self.audio_plan = audio
        self.timeout_s = float(timeout_s) if timeout_s and timeout_s > 0 else _timeout_from_env()
        self.log = log or get_logger()
        self.skipped = 0
        self._errors_in_row: dict[str, int] = {}
        self._container: av.container.InputContainer | None = None
        self._opener: SourceOpener | None = None  # holds the source's own file: FFmpeg does not close custom I/O
        self._primed: list[av.Packet] = []
        self._iterations = 0
        self._origin_us: int | None = None
        if not 0 <= audio.volume <= 100:
            raise SourceError(f"volume {audio.volume} is out of range 0..100")
        if audio.channels not in (None, 1, 2):
            raise SourceError(f"audio channels {audio.channels} not supported (1 or 2)")
        for name in ("width", "height", "fps", "bitrate_kbps", "gop_s"):
            value = getattr(video, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise SourceError(f"video {name} must be a positive integer, got {value!r}")
        self._open()

    # --- opening -------------------------------------------------------------------------------

    def _fail(self, reason: str) -> SourceError:
        return SourceError(f"videoSrc {self.name}: {reason}")

    def _kind(self) -> str:
        parts = urlsplit(self.url)
        scheme = parts.scheme.lower()
        if not scheme or len(scheme) == 1:
            return "file"
        if scheme in ("file", "http", "https", "rtmp", "rtmps"):
            return scheme
        raise self._fail(f"unsupported scheme {scheme!r} (use a path, file://, http(s):// or rtmp://)")

    def _open(self) -> None:
        kind = self._kind()
        self._kind_name = kind
        target = self.url
        us = str(int(self.timeout_s * 1_000_000))
        options: dict[str, str] = {}
        opener: SourceOpener | None = None
        try:
            if kind == "file":
                path = unquote(urlsplit(self.url).path) if self.url.startswith("file://") else self.url
                check_local_path(path)  # before looking: a refused path's existence is not told
                if not os.path.exists(path):
                    raise self._fail("file not found")
                if os.path.isdir(path):
                    raise self._fail("is a directory, not a media file")
                target = path
            elif kind in ("rtmp", "rtmps"):
                # FFmpeg's RTMP client owns its socket: it gets the checked address, not the name.
                target, options = pinned_rtmp(self.url)
        except DestinationRefused as e:
            reason = str(e).replace(self.url, self.name)
            raise self._fail(reason[len("videoSrc "):] if reason.startswith("videoSrc ") else reason) from None
        if kind in ("rtmp", "rtmps"):
            options.update({"rw_timeout": us, "protocol_whitelist": "rtmp,rtmps,tcp,tls"})
        else:
            # Every URL FFmpeg would open (the source, HLS playlists, keys, segments) is opened by
            # the opener instead, checked there (shared.media.netio): FFmpeg itself opens nothing.
            opener = self._opener = SourceOpener(local=kind == "file", timeout_s=self.timeout_s, log=self.log,
                                                 refuse=self._fail)
            options.update({
                "protocol_whitelist": "none",
                # FFmpeg's HLS keep-alive reuses its own HTTP connections, which a Python reader has not.
                "http_persistent": "0",
                "http_multiple": "0",
            })
        fmt: str | None = None
        try:
            try:
                if opener is not None:
                    target, fmt = opener.prepare(target)
                self._container = av.open(target, "r", format=fmt, options=options,
                                          timeout=(self.timeout_s, self.timeout_s), io_open=opener)
            except BaseException:
                if opener is not None:
                    opener.close()  # what it opened before the failure
                raise
        except SourceError:
            raise
        except av.FFmpegError as e:
            raise self._fail(_reason(e, self.timeout_s)) from None
        except OSError as e:
            raise self._fail(e.strerror or str(e)) from None
        try:
            self._probe()
        except SourceError:
            self.close()
            raise
        except av.FFmpegError as e:
            self.close()
            raise self._fail(_reason(e, self.timeout_s)) from None

    def _probe(self) -> None:
        c = self._container
        vstreams = [s for s in c.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
        astreams = list(c.streams.audio)
        # Several video streams (an HLS master playlist's variants): take the largest picture.
        # Streams not demuxed are discarded, so the other variants are never downloaded.
        def area(s: av.stream.Stream) -> tuple[int, int]:
            ctx = s.codec_context
            return ((ctx.width or 0) * (ctx.height or 0) if ctx is not None else 0, -s.index)

        self._vstream = max(vstreams, key=area) if vstreams else None
        if self._vstream is not None and "variant_bitrate" in self._vstream.metadata:
            # HLS: the audio of the same variant, so that one variant is downloaded, not two.
            same = [s for s in astreams
                    if s.metadata.get("variant_bitrate") == self._vstream.metadata["variant_bitrate"]]
            astreams = same or astreams
        self._astream = astreams[0] if astreams else None
        for s in c.streams:
            if s is not self._vstream and s is not self._astream:
                s.discard = av.stream.Discard.all  # the demuxer skips them (HLS: not downloaded)
        if self._vstream is None and self._astream is None:
            raise self._fail("has no audio or video stream")
        for s, what in ((self._vstream, "video"), (self._astream, "audio")):
            if s is None:
                continue
            ctx = s.codec_context
            name = s.codec_context.name if ctx is not None else None
            if ctx is None or not name or name == "none":
                raise self._fail(f"unsupported {what} codec (no decoder for it)")
            try:
                av.codec.Codec(name, "r")
            except Exception:
                raise self._fail(f"unsupported {what} codec {name!r}") from None
        v, a = self._vstream, self._astream
        if v is not None and (not v.codec_context.width or not v.codec_context.height):
            raise self._fail("video stream has no picture size (unsupported or corrupt)")
        if a is not None and not a.codec_context.sample_rate:
            raise self._fail("audio stream has no sample rate (unsupported or corrupt)")

        duration_s = c.duration / 1_000_000 if c.duration and c.duration > 0 else None
        live = self._kind_name in ("rtmp", "rtmps") or (self._kind_name in ("http", "https") and duration_s is None)
        if live:
            duration_s = None
        self._origin_us = c.start_time if c.start_time is not None and not live else None
        if v is not None:
            v.codec_context.thread_type = "AUTO"
        fps = None
        if v is not None:
            rate = v.average_rate or v.guessed_rate or v.base_rate
            fps = float(rate) if rate else None

        passthrough = False
        why = ""
        if v is not None:
            ctx = v.codec_context
            if self.video_plan.asked:
                why = "video parameters were asked for"
            elif ctx.name != "h264":
                why = f"source video is {ctx.name}, not H.264"
            elif ctx.format is not None and ctx.format.name not in ("yuv420p", "yuvj420p"):
                why = f"source H.264 is {ctx.format.name}, not 8-bit 4:2:0"
            elif ctx.has_b_frames:
                why = "source H.264 has B-frames"
            elif self._first_gop_reorders():
                why = "source H.264 has B-frames (frames out of order in the first GOP)"
            else:
                passthrough = True
        src_ch = a.codec_context.channels if a is not None else None
        self.channels = self.audio_plan.channels or (1 if src_ch == 1 else 2)
        if self.channels not in (1, 2):
            raise self._fail(f"audio channels {self.channels} not supported (1 or 2)")
        self.info = SourceInfo(
            url=self.name,
            is_live=live,
            duration_s=duration_s,
            has_audio=a is not None,
            has_video=v is not None,
            video_codec=v.codec_context.name if v is not None else None,
            width=v.codec_context.width if v is not None else None,
            height=v.codec_context.height if v is not None else None,
            fps=fps,
            audio_rate=a.codec_context.sample_rate if a is not None else None,
            audio_channels=src_ch,
            passthrough=passthrough,
        )
        if v is None:
            path = "no video"
        elif passthrough:
            path = "H.264 passthrough (no re-encoding)"
        else:
            path = f"decode to yuv420p ({why})"
        self.log.info(
            "source opened", source=self.name, live=live, duration=duration_s, video_path=path,
            video_codec=self.info.video_codec, width=self.info.width, height=self.info.height, fps=fps,
            audio_rate=self.info.audio_rate, audio_channels=src_ch, audio_out_channels=self.channels,
            format=c.format.name)

    def _first_gop_reorders(self) -> bool:
        """Read the first packets (kept for replay) and look for pts out of decode order."""
        v = self._vstream
        last_pts = None
        seen_video = 0
        keys = 0
        for packet in self._container.demux():
            if packet.size == 0 and packet.pts is None:
                continue
            self._primed.append(packet)
            if packet.stream is not v:
                if len(self._primed) > PROBE_PACKETS * 4:
                    break
                continue
            seen_video += 1
            if packet.is_keyframe:
                keys += 1
                if keys > 1:
                    break
            if packet.pts is not None:
                if last_pts is not None and packet.pts < last_pts:
                    return True
                last_pts = packet.pts
            if seen_video >= PROBE_PACKETS:
                break
        return False

    # --- reading -------------------------------------------------------------------------------

    def close(self) -> None:
        c, self._container = self._container, None
        self._primed = []
        if c is not None:
            try:
                c.close()
            except Exception:
                pass
        if self._opener is not None:
            self._opener.close()

    def __enter__(self) -> "MediaSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ms(self, ts: int | None, time_base: Fraction) -> int | None:
        if ts is None or time_base is None:
            return None
        if self._origin_us is None:
            # A live source: its timeline starts at the first timestamp we see.
            self._origin_us = int(ts * time_base * 1_000_000)
        return to_ms(ts, time_base) - self._origin_us // 1000

    def frames(self, start_s: float = 0.0) -> Iterator[Frame]:
        """Audio and video frames interleaved by pts (ms since the source's start).

        With start_s > 0 the source seeks to the key frame at or before it; decoded frames before
        start_s are dropped, so the first frame is within one frame of start_s. Passthrough video
        cannot start between key frames (the receiver needs an IDR to decode anything), so it
        starts at the key frame at or before start_s, and audio before that key frame is dropped:
        audio and video then start together and the position reported is the true one.
        """
        if self._container is None:
            raise self._fail("source is closed")
        self._iterations += 1
        start_ms = max(0, int(round(start_s * 1000)))
        c = self._container
        primed: list[av.Packet] = []
        if self.info.is_live:
            if start_ms:
                self.log.warning("live source cannot seek; starting at the live edge", source=self.name)
            start_ms = 0
            primed, self._primed = self._primed, []
        elif self._iterations == 1 and start_ms == 0 and self._primed:
            primed, self._primed = self._primed, []
        else:
            self._primed = []
            target = start_ms * 1000 + (self._origin_us or 0)
            try:
                c.seek(target, backward=True, any_frame=False)
            except av.FFmpegError as e:
                if start_ms:
                    raise self._fail(f"cannot seek to {start_s:g} s: {_reason(e, self.timeout_s)}") from None
                c.seek(self._origin_us or 0, backward=True)
            for s in (self._vstream, self._astream):
                if s is not None:
                    s.codec_context.flush_buffers()
        return self._guarded(self._iterate(primed, start_ms))

    def _guarded(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        """Whatever FFmpeg raises while converting becomes a SourceError naming the source."""
        try:
            yield from frames
        except av.FFmpegError as e:
            raise self._fail(f"cannot convert its media: {_reason(e, self.timeout_s)}") from None

    def _iterate(self, primed: list[av.Packet], start_ms: int) -> Iterator[Frame]:
        v, a = self._vstream, self._astream
        passthrough = self.info.passthrough
        aconv = AudioConverter(self.channels, self.audio_plan.volume) if a is not None else None
        vconv = None
        pt = None
        if v is not None:
            if passthrough:
                pt = H264Passthrough(v)
            else:
                plan = self.video_plan
                vconv = VideoConverter(plan.width, plan.height, plan.fps)
        if aconv is not None:
            # Passthrough: audio waits for the first key frame's pts (see frames()).
            aconv.reset(drop_before_ms=None if passthrough else start_ms)
        key_ms: int | None = None if passthrough else start_ms
        # Frames before the start are dropped only until the first one at or after it: a timestamp
        # reset later in the file must not make everything after it "before the start".
        gate = {"a": True, "v": True}
        aq: collections.deque[Frame] = collections.deque()
        vq: collections.deque[Frame] = collections.deque()
        last = {"a": None, "v": None}
        shift = {"a": 0, "v": 0}
        furthest = [None]
        self._errors_in_row = {}
        a_done = a is None
        v_done = v is None

        frame_ms = max(1, round(1000 / (self.info.fps or 25)))

        def monotonic(kind: str, f: Frame) -> int | None:
            """Keep pts rising per stream. A decoded picture that steps back a little is dropped
            (a duplicate); anything else that goes back (a timestamp reset, a broken file)
            continues right after the furthest pts yielded, so pts stay a position in the push."""
            p = f.pts_ms + shift[kind]
            prev = last[kind]
            if prev is not None and p <= prev:
                if kind == "v" and isinstance(f, PixelFrame) and prev - p < BACKWARD_JUMP_MS // 10:
                    return None
                step = 20 if kind == "a" else (frame_ms if prev - p >= BACKWARD_JUMP_MS // 10 else 1)
                target = max(prev, furthest[0] if prev - p >= BACKWARD_JUMP_MS // 10 else prev) + step
                shift[kind] += target - p
                p = target
            last[kind] = p
            if furthest[0] is None or p > furthest[0]:
                furthest[0] = p
            return p

        def emit(kind: str, frames: list) -> None:
            q = aq if kind == "a" else vq
            for f in frames:
                p = monotonic(kind, f)
                if p is None:
                    continue
                f.pts_ms = p
                q.append(f)

        def release(final: bool) -> Iterator[Frame]:
            while aq or vq:
                if passthrough and key_ms is None and not v_done:
                    # Audio is held until the first key frame fixes where playback starts.
                    if aq and aq[-1].pts_ms - aq[0].pts_ms > MAX_WAIT_FOR_KEY_MS:
                        raise self._fail(
                            f"no H.264 key frame within {MAX_WAIT_FOR_KEY_MS // 1000} s of media")
                    return
                if aq and vq:
                    q = aq if aq[0].pts_ms <= vq[0].pts_ms else vq
                elif final or (aq and v_done) or (vq and a_done):
                    q = aq or vq
                else:
                    q = aq or vq
                    if q[-1].pts_ms - q[0].pts_ms <= MAX_INTERLEAVE_MS:
                        return
                yield q.popleft()

        def packets() -> Iterator[av.Packet]:
            yield from primed
            streams = [s for s in (v, a) if s is not None]
            yield from self._container.demux(streams)

        demux = packets()
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except av.error.ExitError as e:
                raise self._fail(_reason(e, self.timeout_s)) from None
            except av.FFmpegError as e:
                if self.info.is_live and furthest[0] is not None:
                    # A live stream that closes (the broadcaster stopped) ends the push normally.
                    self.log.warning("live source ended", source=self.name, error=_reason(e, self.timeout_s))
                    break
                pos = furthest[0]
                at = f" after {pos / 1000:.1f} s" if pos is not None else ""
                what = "file truncated or corrupt" if self._kind_name == "file" else "connection lost, or file truncated or corrupt"
                raise self._fail(f"read failed{at} ({what}): {_reason(e, self.timeout_s)}") from None
            if packet.size == 0 and packet.pts is None and packet.dts is None:
                continue  # a demuxer's flush packet
            if packet.stream is v:
                if passthrough:
                    try:
                        units = pt.push(packet)
                        self._errors_in_row[v.type] = 0
                    except av.FFmpegError as e:
                        units = self._skip(v, e)
                    for data, key, p in units:
                        pts = self._ms(p.pts if p.pts is not None else p.dts, p.time_base)
                        if pts is None:
                            continue
                        if key_ms is None:
                            if not key:
                                continue  # nothing decodes before the first IDR
                            key_ms = pts
                            aq_keep = [f for f in aq if f.pts_ms >= key_ms]
                            aq.clear()
                            aq.extend(aq_keep)
                        dts = self._ms(p.dts, p.time_base)
                        emit("v", [H264Frame(data, pts, key, dts)])
                else:
                    decoded = self._decode(v, packet)
                    out = []
                    for frame in decoded:
                        pts = self._ms(frame.pts, frame.time_base or v.time_base)
                        if pts is None:
                            pts = (last["v"] + round(1000 / (self.info.fps or 25))) if last["v"] is not None else 0
                        if gate["v"] and pts < start_ms:
                            continue
                        gate["v"] = False
                        out += vconv.push(frame, pts)
                    emit("v", out)
            elif packet.stream is a:
                decoded = self._decode(a, packet)
                out = []
                for frame in decoded:
                    pts = self._ms(frame.pts, frame.time_base or a.time_base)
                    out += aconv.push(frame, pts)
                if passthrough and key_ms is not None and gate["a"]:
                    out = [f for f in out if f.pts_ms >= key_ms]
                    gate["a"] = not out
                emit("a", out)
            yield from release(False)

        # End of the source: flush decoders and the audio FIFO.
        if v is not None and not passthrough:
            decoded = self._decode(v, None)
            out = []
            for frame in decoded:
                pts = self._ms(frame.pts, frame.time_base or v.time_base)
                if pts is not None and (pts >= start_ms or not gate["v"]):
                    out += vconv.push(frame, pts)
            emit("v", out)
        if a is not None:
            decoded = self._decode(a, None)
            out = []
            for frame in decoded:
                out += aconv.push(frame, self._ms(frame.pts, frame.time_base or a.time_base))
            out += aconv.flush()
            if passthrough and key_ms is not None and gate["a"]:
                out = [f for f in out if f.pts_ms >= key_ms]
            emit("a", out)
        a_done = v_done = True
        yield from release(True)
        self._check_complete(furthest[0], start_ms)

    def _decode(self, stream, packet: av.Packet | None) -> list:
        try:
            frames = stream.codec_context.decode(packet)
        except av.FFmpegError as e:
            if packet is None:
                return []
            return self._skip(stream, e)
        if frames:
            self._errors_in_row[stream.type] = 0
        return frames

    def _skip(self, stream, e: Exception) -> list:
        """Count an undecodable packet; too many in a row on one stream means a broken source."""
        self.skipped += 1
        consecutive = self._errors_in_row.get(stream.type, 0) + 1
        self._errors_in_row[stream.type] = consecutive
        if self.skipped <= 3 or self.skipped % 100 == 0:
            self.log.warning("undecodable frame skipped", source=self.name, stream=stream.type,
                             skipped=self.skipped, error=str(getattr(e, "strerror", None) or e))
        if consecutive > MAX_CONSECUTIVE_ERRORS:
            raise self._fail(f"{consecutive} undecodable {stream.type} frames in a row (corrupt source)")
        return []

    def _check_complete(self, reached_ms: int | None, start_ms: int) -> None:
        d = self.info.duration_s
        if self.info.is_live or d is None or self._container is None:
            return
        if set(self._container.format.name.split(",")) & ESTIMATED_DURATION_FORMATS:
            return
        if reached_ms is None:
            if start_ms and start_ms >= d * 1000 - max(TRUNCATION_SLACK_MS, d * 30):
                return  # started at the very end: nothing was left to send
            raise self._fail("ended before any frame could be decoded (truncated or empty)")
        if reached_ms < d * 1000 - max(TRUNCATION_SLACK_MS, d * 30):
            raise self._fail(
                f"ended at {reached_ms / 1000:.1f} s of its {d:.1f} s duration (file truncated)")
