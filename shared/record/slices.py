"""Audio slices (SliceAudio) and how every slice and snapshot reaches COS and SliceCallback.

    AudioSlicer (a tap, on the recording loop: keeps one slice's PCM)
    snapshots.Snapshotter (a tap: keeps the access units since the last key frame)
        --Piece(make=encode/decode later)--> SliceDelivery (worker: make, PUT, retry while COS is down)
        --landed--> SliceAnnouncer --> the run's outbox (shared.outbox: POST SliceCallback, signed and
                    retried as the result callback, in order)

Keys come from the recording file's own key (storage.object_key, the one place keys are made):
"{Path}/{SdkAppId}_{room}_{UserId}_{start}.mp4" -> "{...}_{start}/audio/{index}.wav" (or .mp3) and
"{...}_{start}/images/{index}.jpg" (beside the file's segments, which sit in the same folder as
"init.mp4" / "00001.m4s"; assembly only takes names of that shape, so the two never mix).

One delivery worker for the run keeps every anchor's pieces in the order they closed; the
announcer POSTs in the order they landed, so per anchor the callbacks arrive in order. Neither
blocks the recording loop: a tap only appends to a queue.
"""
from __future__ import annotations

import fractions
import io
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, cast

import av

from shared.cos.client import CosBucket
from shared.cos.errors import UploadError
from shared.outbox import Outbox, Ticket
from shared.runtime import RunLogger, get_logger
from shared.worker import Worker

from . import mp3

SAMPLE_RATE = mp3.SAMPLE_RATE
OUTAGE_WAIT_MAX_S = 8.0  # while COS refuses, a piece is tried again this often at most
# Slices are for speech APIs (moderation, recognition) and people reviewing them: 16 kHz 16-bit, the
# format Tencent's speech APIs recommend ("16kHz/16bit/单声道"; a 60 s mono slice is 1.9 MB, under
# their 5 MB). "wav" (the default) is that PCM as it is: lossless, and no encoder on the recording
# instance (FFmpeg's resampler only, ~0.15 ms per second of audio). "mp3" is 8x smaller, for keeping:
# LAME at 32 kbit/s per channel, -q 7 (~1.1 ms per second of audio).
SLICE_RATE = 16_000
SLICE_KBPS_PER_CHANNEL = 32
SLICE_QUALITY = 7
TYPE_AUDIO = "audio"
TYPE_IMAGE = "image"
FOLDERS = {TYPE_AUDIO: "audio", TYPE_IMAGE: "images"}
IMAGE_EXT = "jpg"
CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", IMAGE_EXT: "image/jpeg"}


def piece_key(file_key: str, kind: str, index: int, ext: str = IMAGE_EXT) -> str:
    """The COS key of slice/snapshot `index` of the file whose key is `file_key`."""
    return f"{file_key.rsplit('.', 1)[0]}/{FOLDERS[kind]}/{index}.{ext}"


@dataclass
class Piece:
    """One slice or snapshot: made (encoded / decoded) and uploaded on the delivery worker."""

    user_id: str
    kind: str  # TYPE_AUDIO / TYPE_IMAGE
    index: int
    start_ms: int  # in the recording file's time
    end_ms: int
    key: str
    make: Callable[[], bytes | None]  # None: nothing to upload (a picture that did not decode)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.key.rsplit(".", 1)[1]]


@dataclass
class SliceReport:
    """What became of the run's pieces (in the result as "Slices")."""

    uploaded: dict[str, int] = field(default_factory=lambda: {TYPE_AUDIO: 0, TYPE_IMAGE: 0})
    failed: list[dict[str, Any]] = field(default_factory=list)
    announced: int = 0
    not_announced: int = 0

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Audio": self.uploaded[TYPE_AUDIO], "Images": self.uploaded[TYPE_IMAGE]}
        if self.failed:
            out["Failed"] = self.failed
        if self.announced or self.not_announced:
            out["Announced"] = self.announced
            out["NotAnnounced"] = self.not_announced
        return out


class SliceAnnouncer:
    """POSTs each landed piece to SliceCallback through the run's outbox (shared.outbox: the one
    sender of the run, signed and retried as the result callback, in order per URL, off this thread)."""

    def __init__(self, url: str, body: Callable[[Piece, str], dict[str, Any]], report: SliceReport,
                 log: RunLogger, deadline: Callable[[], float | None], outbox: Outbox | None = None):
        self.url = url
        self._body = body
        self._report = report
        self._log = log
        self._own = outbox is None  # a recording built without its run's outbox (a test) gets one of its own
        if outbox is None:
            outbox = Outbox(log=log, deadline=deadline(), name="slice-callback")
            outbox.start()
        self.outbox = outbox
        self._lock = threading.Lock()
        self._unsettled = 0
        self._closed = False

    def submit(self, piece: Piece, url: str) -> None:
        with self._lock:
            self._unsettled += 1
        ticket = self.outbox.put(self.url, self._body(piece, url), what="slice callback", param="SliceCallback",
                                 on_settled=self._settled)
        if ticket is None:  # the outbox is full or closed: counted, not lost silently
            with self._lock:
                self._unsettled -= 1
                self._report.not_announced += 1

    def _settled(self, ticket: Ticket) -> None:
        with self._lock:
            if self._closed:
                return
            self._unsettled -= 1
            if ticket.delivered:
                self._report.announced += 1
            else:
                self._report.not_announced += 1

    @property
    def idle(self) -> bool:
        with self._lock:
            return self._unsettled == 0

    def close(self, deadline: float) -> None:
        """The report is made: what is still on its way counts as not announced (the outbox may
        still deliver it before the run ends)."""
        if self._own:
            self.outbox.finish(deadline)
        with self._lock:
            self._closed = True
            self._report.not_announced += self._unsettled
            self._unsettled = 0


class SliceDelivery(Worker):
    """Makes and uploads pieces in the order they were submitted; a COS outage makes them wait
    (retried every OUTAGE_WAIT_MAX_S at most) rather than be dropped, for as long as the run goes on."""

    def __init__(self, bucket: CosBucket, *, announcer: SliceAnnouncer | None = None, log: RunLogger | None = None,
                 report: SliceReport | None = None):
        super().__init__("slice-delivery")
        self.bucket = bucket
        self.announcer = announcer
        self.log = log or get_logger()
        self.report = report or SliceReport()
        self._queue: queue.Queue[Piece] = queue.Queue()  # unbounded: submit() runs on the recording loop
        self._busy = False
        self._giving_up = threading.Event()  # finish() ran out of time: what waits fails

    def submit(self, piece: Piece) -> None:
        self._queue.put(piece)

    def start(self) -> "SliceDelivery":
        super().start()
        return self

    def run(self) -> None:
        while not self.closing.is_set():
            try:
                piece = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self._busy = True
            try:
                self._deliver(piece)
            finally:
                self._busy = False

    def _deliver(self, piece: Piece) -> None:
        try:
            data = piece.make()
        except Exception as e:  # one bad picture must not stop the others
            self._fail(piece, f"could not be made: {type(e).__name__}: {e}")
            return
        if data is None:
            return
        wait_s = max(0.1, self.bucket.policy.backoff)
        while True:
            try:
                self.bucket.put_bytes(piece.key, data, piece.content_type)
                break
            except UploadError as e:
                if not e.retryable or self._giving_up.is_set():
                    self._fail(piece, e.message)
                    return
                self.log.warning("slice waits: cos refused it", key=piece.key, error=e.message)
                if self._giving_up.wait(wait_s):
                    self._fail(piece, e.message)
                    return
                wait_s = min(OUTAGE_WAIT_MAX_S, wait_s * 2)
            except Exception as e:
                self._fail(piece, f"upload failed: {type(e).__name__}: {e}")
                return
        self.report.uploaded[piece.kind] += 1
        if self.announcer is not None:
            self.announcer.submit(piece, self.bucket.url(piece.key))

    def _fail(self, piece: Piece, why: str) -> None:
        self.log.error("slice not uploaded", key=piece.key, error=why)
        self.report.failed.append({"UserId": piece.user_id, "Type": piece.kind, "Index": piece.index,
                                   "Key": piece.key, "Message": why})

    def finish(self, deadline: float) -> SliceReport:
        """Deliver and announce what is queued until `deadline`, then stop; what is left is reported."""
        while time.monotonic() < deadline and not (self._queue.empty() and not self._busy):
            time.sleep(0.05)
        self._giving_up.set()
        self.close()
        self.join(max(0.0, deadline - time.monotonic()) + 2.0)
        while not self._queue.empty():
            self._fail(self._queue.get(), "not uploaded before the run ended")
        if self.announcer is not None:
            while time.monotonic() < deadline and not self.announcer.idle:
                time.sleep(0.05)
            self.announcer.close(deadline)
        return self.report


def pieces_in_cos(bucket: CosBucket, file_keys: list[str]) -> dict[str, Any] | None:
    """What of these files' slices and snapshots is in COS (the recovery's "Slices"); None when
    there is none (a run that asked for no slices)."""
    found = {TYPE_AUDIO: 0, TYPE_IMAGE: 0}
    for key in file_keys:
        for kind in (TYPE_AUDIO, TYPE_IMAGE):
            prefix = f"{key.rsplit('.', 1)[0]}/{FOLDERS[kind]}/"
            found[kind] += len(bucket.list(prefix))
    if not any(found.values()):
        return None
    return SliceReport(uploaded=found).as_json()


def to_slice_rate(pcm: bytes, channels: int) -> bytes:
    """`pcm` (48 kHz s16, interleaved) at SLICE_RATE: FFmpeg's resampler working in s16 (a third of
    its cost in float), as long as the PCM to the sample."""
    from av.filter import Graph

    layout = "mono" if channels == 1 else "stereo"
    graph = Graph()
    source = graph.add_abuffer(format="s16", sample_rate=SAMPLE_RATE, layout=layout, time_base=fractions.Fraction(1, SAMPLE_RATE))
    chain = [source, graph.add("aresample", f"{SLICE_RATE}:internal_sample_fmt=s16p"),
             graph.add("aformat", f"sample_fmts=s16:sample_rates={SLICE_RATE}:channel_layouts={layout}"),
             graph.add("abuffersink")]
    for a, b in zip(chain, chain[1:]):
        a.link_to(b)
    graph.configure()
    frame_bytes = 2 * channels
    frame = av.AudioFrame(format="s16", layout=layout, samples=len(pcm) // frame_bytes)
    frame.planes[0].update(pcm[:len(pcm) - len(pcm) % frame_bytes])
    frame.sample_rate, frame.pts = SAMPLE_RATE, 0
    graph.push(frame)
    graph.push(None)
    out: list[bytes] = []
    while True:
        try:
            got = cast(av.AudioFrame, graph.pull())
        except (av.EOFError, av.BlockingIOError):
            return b"".join(out)
        out.append(bytes(got.planes[0])[:got.samples * frame_bytes])


def encode_wav(pcm: bytes, channels: int) -> bytes:
    """A WAV of `pcm` (48 kHz s16) at SLICE_RATE, 16-bit."""
    import wave

    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(SLICE_RATE)
        w.writeframes(to_slice_rate(pcm, channels))
    return out.getvalue()


def encode_mp3(pcm: bytes, channels: int) -> bytes:
    """A standalone MP3 of `pcm` (48 kHz s16), at SLICE_RATE: plain CBR frames, which every player
    and speech API reads as they are (its length is the bitrate's; LAME's delay adds ~70 ms).
    Resampled first by to_slice_rate: a fifth cheaper than LAME's own resampler."""
    import lameenc

    enc = lameenc.Encoder()
    enc.set_in_sample_rate(SLICE_RATE)
    enc.set_out_sample_rate(SLICE_RATE)
    enc.set_channels(channels)
    enc.set_bit_rate(SLICE_KBPS_PER_CHANNEL * channels)
    enc.set_quality(SLICE_QUALITY)
    return bytes(enc.encode(to_slice_rate(pcm, channels))) + bytes(enc.flush())


ENCODERS: dict[str, Callable[[bytes, int], bytes]] = {"wav": encode_wav, "mp3": encode_mp3}


class AudioSlicer:
    """A tap cutting the file's audio into `seconds`-long slices (the last one shorter), each
    handed to the delivery as it closes, as PCM: it is encoded (`fmt`: "wav", "mp3") on the delivery worker."""

    def __init__(self, seconds: int, file_key: str, user_id: str, submit: Callable[[Piece], None], fmt: str = "wav"):
        self.samples_per_slice = seconds * SAMPLE_RATE
        self.fmt = fmt
        self._encode = ENCODERS[fmt]
        self.file_key = file_key
        self.user_id = user_id
        self._submit = submit
        self._chunks: list[bytes] = []
        self._index = 0
        self._in_slice = 0  # samples in the open slice
        self._channels = 1

    def audio(self, pcm: bytes, first_sample: int, channels: int) -> None:
        self._channels = channels
        frame_bytes = 2 * channels
        while pcm:
            room = (self.samples_per_slice - self._in_slice) * frame_bytes
            head, pcm = pcm[:room], pcm[room:]
            self._chunks.append(head)
            self._in_slice += len(head) // frame_bytes
            if self._in_slice >= self.samples_per_slice:
                self._cut()

    def video(self, data: bytes, pts_ms: int, duration_ms: int, key: bool, codec: str) -> None:
        pass

    def close(self, end_ms: int) -> None:
        if self._in_slice:
            self._cut()

    def _cut(self) -> None:
        pcm, channels, encode = b"".join(self._chunks), self._channels, self._encode
        start = self._index * self.samples_per_slice * 1000 // SAMPLE_RATE
        end = start + self._in_slice * 1000 // SAMPLE_RATE
        self._submit(Piece(self.user_id, TYPE_AUDIO, self._index, start, end,
                           piece_key(self.file_key, TYPE_AUDIO, self._index, self.fmt),
                           lambda: encode(pcm, channels)))
        self._chunks, self._in_slice = [], 0
        self._index += 1
