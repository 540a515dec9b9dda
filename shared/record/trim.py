"""RemoveSilence: each recording file also without the stretches where its anchor was silent.

    Trimmer (a tap, on the recording loop): an activity list in the file's time, nothing else
        audio: a 20 ms frame whose peak reaches LEVEL is speech
        video: a frame that is not a key frame and carries more than a static picture's bytes is a
               picture that changed (no decoding: x264/hardware encoders spend a few bytes on a
               picture that did not change); key frames are remembered as places a cut may start
    kept_ranges(): silences longer than N s cut to MARGIN_MS on each side; in Mode 01/02 each kept
        stretch starts at the key frame at or before it (no speech lost, the copy starts decodable)
    build() (in the finalize pool, after the file is in COS): when nothing is cut, a copy made
        inside COS (nothing read back, nothing remuxed); else the file read back from COS, the kept
        stretches copied one after the other (MP4: packets copied, no re-encoding; MP3: decoded and
        encoded again, so that no frame leans on a bit reservoir that was cut away) and uploaded as
        "{file key without extension}_trimmed.{ext}"

Silence is decided with the audio and the picture together: a stretch is silent when the audio
stays below LEVEL and (with video) the picture does not change. While a silence that will be cut
goes on, the recorder asks the anchor for a key frame (at most once a second, as for segments), so
the next kept stretch starts close to its speech.

An anchor silent throughout gets no trimmed file: its entry says Status 0, "silent throughout".
Crash safety: the activity list is a TrimState in the file's place in the run's manifest, saved with
each heartbeat; the recovery makes the trimmed copy from it (for_file), keeping whatever came after
the last saved heartbeat whole (no speech is lost, less may be cut).
"""
from __future__ import annotations

import bisect
import fractions
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import av

from shared.cos.client import CosBucket
from shared.cos.errors import UploadError
from shared.media.h264 import key_frame_dimensions
from shared.runtime import RunLogger

from . import mp3
from .state import TrimState

MARGIN_MS = 300  # kept around speech on both sides of a cut
LEVEL = 1024  # s16 peak (-30 dBFS): quieter than this is silence
FRAME_MS = 20
# LEVEL is a multiple of 256, so a sample's high byte alone says whether it reaches it: the bytes a
# quiet sample can have there (signed -4..3: samples -1024..1023). Every sample is looked at, in C.
_QUIET_HIGH_BYTES = bytes(h for h in range(256) if -(LEVEL >> 8) <= (h if h < 128 else h - 256) < LEVEL >> 8)
READ_CHUNK = 8 << 20  # the original is read back from COS this much at a time
COS_COPY_MAX = 5 << 30  # COS copies an object this large in one request
SILENT_THROUGHOUT = "silent throughout"


def static_picture_bytes(width: int, height: int) -> int:
    """The most an encoded picture that did not change takes (skip macroblocks and headers)."""
    return 48 + width * height // 2048


def trimmed_key(file_key: str) -> str:
    stem, ext = file_key.rsplit(".", 1)
    return f"{stem}_trimmed.{ext}"


def kept_ranges(active: list[tuple[int, int]], end_ms: int, gap_ms: int, margin_ms: int = MARGIN_MS,
                keys: list[int] | None = None) -> list[list[int]]:
    """The stretches of a file `end_ms` long kept when silences longer than `gap_ms` are cut to
    `margin_ms` around `active` (sorted (from, to) ms); `keys` (key frame times, sorted): each
    kept stretch starts at the one at or before it. [] when nothing is active."""
    if not active:
        return []
    spans: list[list[int]] = []
    for a, b in active:
        if spans and a - spans[-1][1] <= gap_ms:  # a short silence is kept whole
            spans[-1][1] = max(spans[-1][1], b)
        else:
            spans.append([a, b])
    if spans[0][0] <= gap_ms:
        spans[0][0] = 0  # a short silence at the start is kept too
    if end_ms - spans[-1][1] <= gap_ms:
        spans[-1][1] = end_ms
    kept: list[list[int]] = []
    for a, b in spans:
        a, b = max(0, a - margin_ms), min(end_ms, b + margin_ms)
        if keys is not None:
            i = bisect.bisect_right(keys, a) - 1
            a = keys[i] if i >= 0 else 0
        if kept and a <= kept[-1][1]:
            kept[-1][1] = max(kept[-1][1], b)
        else:
            kept.append([a, b])
    return kept


class Trimmer:
    """A tap noting where the anchor was active and where key frames are, in `state` (what the
    heartbeat saves: the file's FileRecord.trim)."""

    def __init__(self, seconds: int, has_audio: bool, has_video: bool, ask_key_frame: Callable[[], None]):
        self.has_audio = has_audio
        self.has_video = has_video
        self.state = TrimState(seconds * 1000)
        self._ask = ask_key_frame
        self._static = static_picture_bytes(1920, 1080)

    def _activity(self, a: int, b: int) -> None:
        active = self.state.active
        if active and a <= active[-1][1]:
            if b > active[-1][1]:
                active[-1] = (active[-1][0], b)
        else:
            active.append((a, b))

    def _quiet_since(self, now_ms: int) -> None:
        # A silence that will be cut: ask for a key frame so the next kept stretch starts near its speech.
        active = self.state.active
        last = active[-1][1] if active else 0
        if self.has_video and now_ms - last > self.state.gap_ms - MARGIN_MS:
            self._ask()

    def _seen(self, until_ms: int) -> None:
        self.state.seen_ms = max(self.state.seen_ms, until_ms)

    def audio(self, pcm: bytes, first_sample: int, channels: int) -> None:
        at = first_sample * 1000 // mp3.SAMPLE_RATE
        end = at + len(pcm) // (2 * channels) * 1000 // mp3.SAMPLE_RATE
        # The samples' high bytes (s16 little-endian) with the quiet ones taken out: what is left is loud.
        if pcm[1:len(pcm) - len(pcm) % 2:2].translate(None, _QUIET_HIGH_BYTES):
            self._activity(at, end)
        else:
            self._quiet_since(end)
        self._seen(end)

    def video(self, data: bytes, pts_ms: int, duration_ms: int, key: bool, codec: str) -> None:
        if key:
            self.state.keys.append(pts_ms)
            size = key_frame_dimensions(data, codec)
            if size:
                self._static = static_picture_bytes(*size)
        elif len(data) > self._static:
            self._activity(pts_ms, pts_ms + duration_ms)
        else:
            self._quiet_since(pts_ms)
        self._seen(pts_ms + duration_ms)

    def close(self, end_ms: int) -> None:
        self._seen(end_ms)

    def kept(self) -> list[list[int]]:
        return kept_of(self.state, self.state.seen_ms, self.has_video)


def kept_of(state: TrimState, end_ms: int, has_video: bool) -> list[list[int]]:
    """The kept stretches of a file `end_ms` long from its activity (the run's end, and the recovery
    from what the run saved): what came after `state.seen_ms` is unknown, so it is kept whole."""
    active = [(a, min(b, end_ms)) for a, b in state.active if a < end_ms]  # a recovered file may end sooner
    if end_ms > state.seen_ms:
        active.append((state.seen_ms, end_ms))
    return kept_ranges(active, end_ms, state.gap_ms, keys=list(state.keys) if has_video else None)


# --- the trimmed file ---------------------------------------------------------------------------------


def _read_original(bucket: CosBucket, key: str, into: Path) -> None:
    head = bucket.head(key)
    size = int((head or {}).get("Content-Length", 0))
    with open(into, "wb") as f:
        if not size:
            f.write(bucket.get_bytes(key))
            return
        for first in range(0, size, READ_CHUNK):
            f.write(bucket.get_bytes(key, first, min(size, first + READ_CHUNK) - 1))


def trim_mp3(src: Path, dst: Path, kept: list[list[int]], channels: int) -> float:
    enc = mp3.Mp3Encoder(channels)
    layout = "mono" if channels == 1 else "stereo"
    to_s16 = av.AudioResampler(format="s16", layout=layout, rate=mp3.SAMPLE_RATE)
    frames: list[bytes] = []
    ranges = [(a * mp3.SAMPLE_RATE // 1000, b * mp3.SAMPLE_RATE // 1000) for a, b in kept]
    position = 0  # samples decoded so far (the original's time)
    with av.open(str(src)) as c:
        for frame in c.decode(audio=0):
            for pcm in to_s16.resample(frame):
                data = bytes(pcm.planes[0])[:pcm.samples * 2 * channels]
                start, end = position, position + pcm.samples
                for a, b in ranges:
                    lo, hi = max(a, start), min(b, end)
                    if lo < hi:
                        frames += enc.encode(data[(lo - start) * 2 * channels:(hi - start) * 2 * channels])
                position = end
    frames += enc.flush()
    audio = b"".join(frames)
    dst.write_bytes(mp3.final_header(len(frames), len(audio), channels, enc.samples_in) + audio)
    return enc.samples_in / mp3.SAMPLE_RATE


def trim_mp4(src: Path, dst: Path, kept: list[list[int]]) -> float:
    """Copy the packets of each kept stretch, shifted back by what was cut before it.

    All in each stream's own ticks, integers only: a Fraction per packet cost more than the copy."""
    end_s = 0.0
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        sources = [s for s in inp.streams if s.type in ("audio", "video")]
        streams = {s.index: out.add_stream_from_template(s) for s in sources}
        # per stream: (from, to, ticks cut before `from`) in its ticks; a packet at t (ms) is kept
        # when from <= t + 0.5 ms and t < to, as the ranges are in ms
        shifts: dict[int, list[tuple[int, int, int]]] = {}
        bases: dict[int, tuple[int, int]] = {}
        for s in sources:
            base = s.time_base or fractions.Fraction(1, 1000)  # an MP4's streams always have one
            num, den = base.numerator, base.denominator
            cut = previous_end = 0
            spans = []
            for a, b in kept:
                cut += a - previous_end
                first = -(-(2 * a - 1) * den // (2000 * num))  # the first tick at or after a - 0.5 ms
                after = -(-b * den // (1000 * num))  # the first tick at or after b
                spans.append((first, after, round(cut * den / (1000 * num))))
                previous_end = b
            shifts[s.index] = spans
            bases[s.index] = (num, den)
        last_tick = {s.index: 0 for s in sources}
        for packet in inp.demux(sources):
            pts, dts = packet.pts, packet.dts
            if pts is None or dts is None:
                continue
            index = packet.stream_index
            for a, b, shift in shifts[index]:
                if a <= pts < b:
                    packet.pts = pts - shift
                    packet.dts = dts - shift
                    packet.stream = streams[index]
                    last_tick[index] = max(last_tick[index], pts - shift + (packet.duration or 0))
                    out.mux(packet)
                    break
        for index, tick in last_tick.items():
            num, den = bases[index]
            end_s = max(end_s, tick * num / den)
    return end_s


def _copied_whole(bucket: CosBucket, file_key: str, key: str, log: RunLogger) -> bool:
    """Nothing is cut: the trimmed copy is the original, copied inside COS. False when COS could not
    (too large for one copy, or it refused): the copy is then made the long way."""
    try:
        head = bucket.head(file_key)
        if head is None or int(head.get("Content-Length", 0)) > COS_COPY_MAX:
            return False
        bucket.copy(file_key, key)
        return True
    except UploadError as e:
        log.warning("trimmed copy: cos did not copy the whole file, remuxing it", key=key, error=e.message)
        return False


def for_file(bucket: CosBucket, file_key: str, made: list[dict[str, Any]], kept: list[list[int]], channels: int,
             log: RunLogger, local_dir: Path | None = None) -> dict[str, Any]:
    """The trimmed copy's entry for a file whose outputs are `made` (the run's end and the recovery
    alike): made by build() when the file is whole in COS, else an entry saying why there is none."""
    if not any(e["Status"] == 1 and e["RecordFile"] == bucket.url(file_key) for e in made):
        return {"RecordFile": "", "Status": 0, "OriginalFile": bucket.url(file_key), "Trimmed": True,
                "Message": "no trimmed copy: the file is not whole in COS (RemoveSilence trims the "
                           "MP4/MP3, OutputFormat \"mp4\" or \"hls+mp4\")"}
    return build(bucket, file_key, kept, channels, log, local_dir=local_dir)


def build(bucket: CosBucket, file_key: str, kept: list[list[int]], channels: int, log: RunLogger,
          local_dir: Path | None = None) -> dict[str, Any]:
    """Make and upload the trimmed copy of the file at `file_key`; its made-entry for Files."""
    key = trimmed_key(file_key)
    ext = file_key.rsplit(".", 1)[1]
    entry: dict[str, Any] = {"RecordFile": "", "Status": 0, "Message": "", "OriginalFile": bucket.url(file_key),
                             "KeptMs": kept, "Trimmed": True}
    if not kept:
        entry["Message"] = SILENT_THROUGHOUT
        return entry
    if kept == [[0, kept[-1][1]]] and _copied_whole(bucket, file_key, key, log):
        entry.update({"RecordFile": bucket.url(key), "Status": 1, "Message": "success",
                      "TrimmedDuration": round(kept[-1][1] / 1000, 3)})
        return entry
    fd, name = tempfile.mkstemp(suffix="." + ext, dir=local_dir)
    os.close(fd)
    src = Path(name)
    dst = src.with_name(src.stem + "_trimmed." + ext)
    try:
        _read_original(bucket, file_key, src)
        seconds = trim_mp3(src, dst, kept, channels) if ext == "mp3" else trim_mp4(src, dst, kept)
        bucket.put_file(key, dst, "audio/mpeg" if ext == "mp3" else "video/mp4")
    except (UploadError, OSError, av.FFmpegError) as e:
        why = e.message if isinstance(e, UploadError) else f"{type(e).__name__}: {e}"
        log.error("trimmed copy not made", key=key, error=why)
        entry["Message"] = f"the trimmed copy could not be made: {why}"
        return entry
    finally:
        src.unlink(missing_ok=True)
        dst.unlink(missing_ok=True)
    entry.update({"RecordFile": bucket.url(key), "Status": 1, "Message": "success",
                  "TrimmedDuration": round(seconds, 3)})
    return entry
