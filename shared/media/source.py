"""A videoSrc opened with PyAV: probe it, then yield room-ready frames interleaved by timestamp.

Kinds: a local path, file://, http(s) files (mp4 including moov-at-end, flv, mkv, webm, mov,
audio-only mp3/m4a), HLS (VOD and live), RTMP and HTTP-FLV. Every failure is a `SourceError`
whose message names the source (credentials and query stripped) and the reason.

Opening (here): `_open` reaches the source, `_probe` picks the streams and asks
shared.media.plan whether the video passes through. Reading: `play()` runs passes over the source
(shared.media.decode's decode loop or shared.media.demux's passthrough loop, sharing
shared.media.reading) on one shared.media.timeline.Timeline, the one place timestamps are decided;
between two passes of a loop shared.media.rewind gets back to the very first packets.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator, cast
from urllib.parse import unquote, urlsplit

import av

from shared.egress import DestinationRefused, check_local_path
from shared.media.convert import AudioConverter, VideoConverter, display_rotation
from shared.media.decode import decode_pass
from shared.media.demux import passthrough_pass
from shared.media.frames import Frame
from shared.media.netio import SourceOpener, pinned_rtmp, safe_url
from shared.media.plan import AudioPlan, VideoLimits, VideoPath, VideoPlan, VideoSource, choose_video_path
from shared.media.reading import Health, Opened, Pass, PassSpec
from shared.media.rewind import Head, flush, read_head, rewind_to_head
from shared.media.timeline import Timeline
from shared.runtime import RunLogger, get_logger
from shared.settings import settings

__all__ = ["AudioPlan", "Frame", "MediaSource", "PassEnd", "SourceError", "SourceInfo", "VideoLimits", "VideoPlan",
           "safe_url"]

# Packets read at open to look for B-frames (dts order != pts order) in the first GOP.
PROBE_PACKETS = 16
# Sources up to this many pixels a second (1080p30) are decoded on one thread (see _video_path).
ONE_THREAD_DECODE_MAX_PIXELS_PER_S = 1920 * 1080 * 30
# A non-live source that ends this far before its announced duration was cut short.
TRUNCATION_SLACK_MS = 500
# Containers whose duration FFmpeg estimates from the bitrate: too rough to call a file truncated,
# or to cut audio at.
ESTIMATED_DURATION_FORMATS = frozenset({"mp3", "aac", "mpegts", "h264", "hevc", "ac3", "eac3"})


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
    # What the room gets (passthrough: the source's own): picture size and frame rate.
    out_width: int | None = None
    out_height: int | None = None
    out_fps: float | None = None
    rotation: int = 0  # degrees clockwise the pictures are turned upright (known at open for H.264)


@dataclass(frozen=True)
class PassEnd:
    """Yielded by `play()` between two passes of a loop: `passes` have ended, and the next one's
    source time 0 is at `offset_ms` on the push's timeline."""

    passes: int
    offset_ms: int


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
    """Open, probe, and iterate a source. Not thread-safe; one `frames()`/`play()` at a time.

    After opening: `info` (what the probe found), `channels` (1 or 2: what every AudioFrame
    carries), `name` (the URL as it may be shown), `skipped` (undecodable packets skipped so far).
    `frames()` may be called again for another pass or a different start; `play()` loops.
    """

    def __init__(
        self,
        url: str,
        *,
        video: VideoPlan = VideoPlan(),
        audio: AudioPlan = AudioPlan(),
        timeout_s: float | None = None,
        log: RunLogger | None = None,
        limits: VideoLimits | None = None,
    ):
        if not isinstance(url, str) or not url.strip():
            raise SourceError("videoSrc is empty")
        self.url = url.strip()
        self.name = safe_url(self.url)
        self.video_plan = video
        self.audio_plan = audio
        self.timeout_s = float(timeout_s) if timeout_s and timeout_s > 0 else settings().source_timeout_seconds
        self.log = log or get_logger()
        self.limits = limits or VideoLimits.from_settings()
        # SOURCE_TIMEOUT_SECONDS bounds a silent connection and, as media time, a corrupt stretch.
        self._health = Health(int(self.timeout_s * 1000), self._fail, self.log, self.name)
        self._container: av.container.InputContainer | None = None
        self._opener: SourceOpener | None = None  # holds the source's own file: FFmpeg does not close custom I/O
        self._vstream: Any = None  # the video stream pushed (None: no video)
        self._astream: Any = None  # the audio stream pushed
        self._primed: list[av.Packet] = []
        self._head: Head = {}  # each pushed stream's first packet at open (shared.media.rewind)
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
        assert c is not None
        self._pick_streams(c)
        v, a = self._vstream, self._astream
        duration_s = c.duration / 1_000_000 if c.duration and c.duration > 0 else None
        live = self._kind_name in ("rtmp", "rtmps") or (self._kind_name in ("http", "https") and duration_s is None)
        if live:
            duration_s = None
        self._origin_us = c.start_time if c.start_time is not None and not live else None
        fps, path = self._video_path(v)
        src_ch = a.codec_context.channels if a is not None else None
        self.channels = self.audio_plan.channels or (1 if src_ch == 1 else 2)
        if self.channels not in (1, 2):
            raise self._fail(f"audio channels {self.channels} not supported (1 or 2)")
        self.path = path
        vctx = v.codec_context if v is not None else None
        self.info = SourceInfo(
            url=self.name,
            is_live=live,
            duration_s=duration_s,
            has_audio=a is not None,
            has_video=v is not None,
            video_codec=getattr(vctx, "name", None),
            width=getattr(vctx, "width", None),
            height=getattr(vctx, "height", None),
            fps=fps,
            audio_rate=a.codec_context.sample_rate if a is not None else None,
            audio_channels=src_ch,
            passthrough=bool(path and path.passthrough),
            out_width=getattr(path, "width", None),
            out_height=getattr(path, "height", None),
            out_fps=(path.fps or fps) if path else None,
            rotation=getattr(path, "rotation", 0),
        )
        if not live:
            # What a loop's rewind must land on again (shared.media.rewind).
            self._head = read_head(c, [v, a], self._primed)
        self._log_opened(c, path)

    def _video_path(self, v: Any) -> tuple[float | None, VideoPath | None]:
        """The video stream's frame rate, and how its pictures reach the room (None: no video)."""
        if v is None:
            return None, None
        rate = v.average_rate or v.guessed_rate or v.base_rate
        fps = float(rate) if rate else None
        ctx = v.codec_context
        # One decoding thread up to 1080p30: it decodes such a source (B-frames too) about 7x faster
        # than the real time a push needs, where FFmpeg's frame threads cost ~11 % more CPU in their
        # hand-offs (CPU is what SCF bills, and what a small instance is short of). Larger or faster
        # sources get FFmpeg's threads.
        ctx.thread_type = "AUTO"
        if (ctx.width or 0) * (ctx.height or 0) * (fps or 30.0) <= ONE_THREAD_DECODE_MAX_PIXELS_PER_S:
            ctx.thread_count = 1
        path = choose_video_path(
            VideoSource(ctx.name, ctx.format.name if ctx.format is not None else None, bool(ctx.has_b_frames),
                        ctx.width, ctx.height, fps),
            self.video_plan, self.limits, self._first_gop_reorders, self._first_picture_rotation)
        return fps, path

    def _pick_streams(self, c: av.container.InputContainer) -> None:
        """The video and audio stream to push (the rest is discarded); fails on what cannot be used."""
        vstreams = [s for s in c.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
        astreams = list(c.streams.audio)
        # Several video streams (an HLS master playlist's variants): take the largest picture.
        # Streams not demuxed are discarded, so the other variants are never downloaded.
        def area(s: av.VideoStream) -> tuple[int, int]:
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
        self._check_decodable()

    def _check_decodable(self) -> None:
        """Fails naming what cannot be used: a codec without a decoder, a picture without a size,
        audio without a sample rate."""
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

    def _log_opened(self, c: av.container.InputContainer, path: VideoPath | None) -> None:
        info = self.info
        if path is None:
            video_path = "no video"
        elif path.passthrough:
            video_path = "H.264 passthrough (no re-encoding)"
        else:
            video_path = f"decode to yuv420p ({path.why})"
        self.log.info(
            "source opened", source=self.name, live=info.is_live, duration=info.duration_s, video_path=video_path,
            video_codec=info.video_codec, width=info.width, height=info.height, fps=info.fps,
            out_width=info.out_width, out_height=info.out_height, out_fps=info.out_fps,
            audio_rate=info.audio_rate, audio_channels=info.audio_channels, audio_out_channels=self.channels,
            format=c.format.name)

    def _first_gop_reorders(self) -> bool:
        """Read the first packets (kept for replay) and look for pts out of decode order."""
        v, c = self._vstream, self._container
        assert c is not None  # asked while probing an open container
        last_pts = None
        seen_video = 0
        keys = 0
        for packet in c.demux():
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

    def _first_picture_rotation(self) -> int:
        """Decode the first picture of the packets read so far for its display matrix (only the
        decoder sees it; PyAV has no stream side data), then reset the decoder for the replay."""
        v = self._vstream
        assert v is not None
        turn = 0
        try:
            for packet in (p for p in self._primed if p.stream is v):
                pictures = v.codec_context.decode(packet)
                if pictures:
                    turn = display_rotation(pictures[0])
                    break
        except av.FFmpegError:
            pass  # an undecodable start is the reading loop's business
        v.codec_context.flush_buffers()
        return turn

    # --- reading -------------------------------------------------------------------------------

    @property
    def skipped(self) -> int:
        """Undecodable packets skipped (and pictures dropped waiting for a key frame) so far."""
        return self._health.skipped

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

    def _reason(self, e: BaseException) -> str:
        return _reason(e, self.timeout_s)

    def frames(self, start_s: float = 0.0) -> Iterator[Frame]:
        """Audio and video frames interleaved by pts (ms since the source's start): one pass.

        With start_s > 0 the source seeks to the key frame at or before it; decoded frames before
        start_s are dropped, so the first frame is within one frame of start_s. Passthrough video
        cannot start between key frames (the receiver needs an IDR to decode anything), so it
        starts at the key frame at or before start_s, and audio before that key frame is dropped:
        audio and video then start together and the position reported is the true one.
        """
        return cast(Iterator[Frame], self.play(start_s))  # one pass yields no PassEnd

    def play(self, start_s: float = 0.0, *, passes: int | None = 1,
             audio_from_key: bool = True) -> Iterator[Frame | PassEnd]:
        """`passes` passes over the source (None: until stopped) on one timeline: pass n+1 follows
        pass n without a gap (shared.media.timeline), a `PassEnd` between them. The first pass
        starts at start_s as `frames()` does; `audio_from_key=False` starts passthrough audio at
        start_s instead of at the key frame before it (a caller that bridges the video there)."""
        if self._container is None:
            raise self._fail("source is closed")
        return self._guarded(self._play(max(0, int(round(start_s * 1000))), passes, audio_from_key))

    def _guarded(self, frames: Iterator[Frame | PassEnd]) -> Iterator[Frame | PassEnd]:
        """Whatever FFmpeg raises while converting becomes a SourceError naming the source."""
        try:
            yield from frames
        except av.FFmpegError as e:
            raise self._fail(f"cannot convert its media: {self._reason(e)}") from None

    def _play(self, start_ms: int, passes: int | None, audio_from_key: bool) -> Iterator[Frame | PassEnd]:
        v, a = self._vstream, self._astream
        fps = self.info.fps or 25
        timeline = Timeline(max(1, round(1000 / fps)), self._origin_us, self._declared_end_ms())
        aconv = AudioConverter(self.channels, self.audio_plan.volume) if a is not None else None
        vconv = None
        if v is not None and not self.info.passthrough and self.path is not None:
            plan = self.video_plan
            vconv = VideoConverter(plan.width, plan.height, self.path.fps, self.limits.max_area)
        loop = passthrough_pass if self.info.passthrough else decode_pass
        n = 0
        while True:
            spec = PassSpec(start_ms=start_ms if n == 0 else 0, first=n == 0,
                            last=passes is not None and n + 1 >= passes, audio_from_key=audio_from_key)
            primed = self._rewind(spec.start_ms)
            count = 0
            for frame in loop(Pass(self._opened(), spec, timeline, aconv, vconv, self._health, primed)):
                count += 1
                yield frame
            self._check_complete(timeline.reached_ms, spec.start_ms)
            if spec.last or count == 0:
                if not spec.last and aconv is not None:
                    yield from aconv.flush()  # the last frame, carried for a pass that brought nothing
                return
            n += 1
            yield PassEnd(n, timeline.end_pass())

    def _opened(self) -> Opened:
        """What a pass reads, handed to the loop explicitly (made for each pass, after its rewind)."""
        assert self._container is not None  # play() checked; a pass reads an open source
        return Opened(self._container, self._vstream, self._astream, self.info.passthrough, self.info.is_live,
                      self._kind_name == "file", self.name, self.log, self._fail, self._reason)

    def _rewind(self, start_ms: int) -> list[av.Packet]:
        """Get the container to `start_ms` (the key frame at or before it); the packets already read
        at open that are to be replayed first."""
        self._iterations += 1
        c = self._container
        assert c is not None
        if self.info.is_live:
            if start_ms:
                self.log.warning("live source cannot seek; starting at the live edge", source=self.name)
            primed, self._primed = self._primed, []
            return primed
        if self._iterations == 1 and start_ms == 0 and self._primed:
            primed, self._primed = self._primed, []
            return primed
        self._primed = []
        if start_ms == 0:
            return self._rewind_to_head()
        target = start_ms * 1000 + (self._origin_us or 0)
        try:
            c.seek(target, backward=True, any_frame=False)
        except av.FFmpegError as e:
            raise self._fail(f"cannot seek to {start_ms / 1000:g} s: {self._reason(e)}") from None
        flush(self._vstream, self._astream)
        return []

    def _rewind_to_head(self) -> list[av.Packet]:
        """Back to the very first packets, as the source began at open (a loop's next pass); the
        packets read to check that are replayed first."""
        c = self._container
        assert c is not None
        read = rewind_to_head(c, self._vstream, self._astream, self._origin_us, self._head)
        if read is not None:
            return read
        # No seek gets there (HLS whose first packet is audio before a B-frame GOP): open it again.
        self.log.info("the source cannot seek back to its first frame; opening it again to loop", source=self.name)
        return self._reopen()

    def _reopen(self) -> list[av.Packet]:
        """The source opened afresh, at its first packet (returned, to replay), as it was at open."""
        info, path, channels = self.info, self.path, self.channels
        self.close()
        self._head = {}
        self._open()
        if (self.info.has_video, self.info.has_audio, self.info.passthrough) != (
                info.has_video, info.has_audio, info.passthrough):
            raise self._fail("changed between two passes of the loop (its streams are not the same)")
        self.info, self.path, self.channels = info, path, channels
        primed, self._primed = self._primed, []
        return primed

    def _declared_end_ms(self) -> int | None:
        """Where the audio ends by the container's word, when that word is exact (not estimated):
        decoders hand out codec padding past it (AAC's last frame), which is not media."""
        c, a = self._container, self._astream
        if a is None or c is None or self.info.is_live or self.info.duration_s is None:
            return None
        if set(c.format.name.split(",")) & ESTIMATED_DURATION_FORMATS:
            return None
        if a.duration and a.time_base:
            return round(((a.start_time or 0) + a.duration) * a.time_base * 1000) - (self._origin_us or 0) // 1000
        return round(self.info.duration_s * 1000)

    def _check_complete(self, reached_ms: int | None, start_ms: int) -> None:
        d = self.info.duration_s
        if self.info.is_live or d is None or self._container is None:
            return
        if set(self._container.format.name.split(",")) & ESTIMATED_DURATION_FORMATS:
            return
        broken = [f"{n} undecodable {kind} frames in a row (corrupt source)"
                  for kind, n in sorted(self._health.in_a_row.items()) if n]
        why = f": {', '.join(broken)}" if broken else " (file truncated)"
        if reached_ms is None:
            if start_ms and start_ms >= d * 1000 - max(TRUNCATION_SLACK_MS, d * 30):
                return  # started at the very end: nothing was left to send
            if broken:
                raise self._fail(f"ended before any frame could be decoded{why}")
            raise self._fail("ended before any frame could be decoded (truncated or empty)")
        if reached_ms < d * 1000 - max(TRUNCATION_SLACK_MS, d * 30):
            raise self._fail(f"ended at {reached_ms / 1000:.1f} s of its {d:.1f} s duration{why}")
