"""Issue 21's outputs beside each recording file, for one run: which taps a file gets (audio slices,
snapshots, the trimmed copy), the delivery that takes their pieces to COS and SliceCallback, and
what the result says about them.

    RunOutputs.tap_for --tap(user, file key)--> Taps[AudioSlicer, Snapshotter, Trimmer] --> writer._Part
    RunOutputs._finalize_file --trimmed--> trim.build (in the finalize pool) --> Files entry
    RunOutputs.collect --finish(deadline)--> "Slices" in the result

The run's outputs (record/outputs.py) only call these three; everything else about slices, snapshots and trimming is in
slices.py, snapshots.py and trim.py.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from shared.contracts.record import RecordParams
from shared.cos.client import CosBucket
from shared.outbox import Outbox
from shared.runtime import RunLogger

from . import trim
from .segments import MODE_MP3, MODE_MP4_VIDEO
from .slices import AudioSlicer, Piece, SliceAnnouncer, SliceDelivery, SliceReport
from .snapshots import Snapshotter
from .state import FileRecord
from .taps import MediaTap, Taps
from .trim import Trimmer


class _Guarded:
    """A tap whose failure costs only its own outputs, never the recording it looks at."""

    def __init__(self, tap: MediaTap, log: RunLogger):
        self.tap = tap
        self.log = log
        self.broken = False

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        if self.broken:
            return
        try:
            fn(*args)
        except Exception as e:
            self.broken = True
            self.log.error("slices/snapshots of a file stopped", tap=type(self.tap).__name__,
                           error=f"{type(e).__name__}: {e}")

    def audio(self, pcm: bytes, first_sample: int, channels: int) -> None:
        self._call(self.tap.audio, pcm, first_sample, channels)

    def video(self, data: bytes, pts_ms: int, duration_ms: int, key: bool, codec: str) -> None:
        self._call(self.tap.video, data, pts_ms, duration_ms, key, codec)

    def close(self, end_ms: int) -> None:
        self._call(self.tap.close, end_ms)


class DerivedOutputs:
    """One run's slices, snapshots and trimmed copies; `wanted` says whether the params ask for any."""

    def __init__(self, params: RecordParams, bucket: CosBucket, request_id: str, log: RunLogger,
                 deadline: Callable[[], float | None], outbox: Outbox | None = None):
        self.params = params
        self.log = log
        self.request_id = request_id
        report = SliceReport()  # one report for uploads and announcements
        announcer = None
        if params.SliceCallback:
            announcer = SliceAnnouncer(params.SliceCallback, self._body, report, log, deadline, outbox)
        self.delivery = SliceDelivery(bucket, announcer=announcer, log=log, report=report)
        self.delivery.start()
        self.bucket = bucket
        self._trimmers: dict[Path, tuple[Trimmer, str]] = {}  # by the file's local path

    @staticmethod
    def wanted(params: RecordParams) -> bool:
        return bool(params.SliceAudio or params.SliceVideo or params.RemoveSilence)

    def tap(self, user_id: str, file_key: str, path: Path, ask_key_frame: Callable[[], None],
            record: FileRecord | None = None) -> MediaTap | None:
        """The file's taps; `record` (its place in the run's manifest) keeps RemoveSilence's activity
        for the recovery."""
        p = self.params
        taps: list[MediaTap] = []
        submit = self.delivery.submit
        if p.SliceAudio and p.Mode != MODE_MP4_VIDEO:
            taps.append(_Guarded(AudioSlicer(p.SliceAudio, file_key, user_id, submit, p.SliceAudioFormat), self.log))
        if p.SliceVideo and p.Mode != MODE_MP3:
            taps.append(_Guarded(Snapshotter(p.SliceVideo, file_key, user_id, submit), self.log))
        if p.RemoveSilence:
            trimmer = Trimmer(p.RemoveSilence, p.Mode != MODE_MP4_VIDEO, p.Mode != MODE_MP3, ask_key_frame)
            self._trimmers[path] = (trimmer, file_key)
            if record is not None:
                record.trim = trimmer.state
            taps.append(_Guarded(trimmer, self.log))
        return Taps(taps) if taps else None

    def trimmed(self, path: Path, made: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The trimmed copy of the file at `path` (in the finalize pool, once `made` are its
        outputs): its made-entry for Files, or none when RemoveSilence is off."""
        found = self._trimmers.pop(path, None)
        if found is None:
            return []
        trimmer, file_key = found
        return [trim.for_file(self.bucket, file_key, made, trimmer.kept(), self.params.AudioChannels, self.log,
                              local_dir=path.parent)]

    def _body(self, piece: Piece, url: str) -> dict[str, Any]:
        p = self.params
        return {"RequestId": self.request_id, "SdkAppId": p.SdkAppId,
                "RoomId": p.RoomId if p.RoomId is not None else 0, "StrRoomId": p.StrRoomId or "",
                "UserId": piece.user_id, "Type": piece.kind, "Index": piece.index,
                "StartMs": piece.start_ms, "EndMs": piece.end_ms, "Url": url}

    def finish(self, deadline: float) -> dict[str, Any]:
        """Deliver what is left until `deadline`; the result's "Slices"."""
        return self.delivery.finish(deadline).as_json()
