"""What a recording run keeps in COS so that nobody can lose it: the manifest, the markers, the result.

State, per run, under a prefix of a bucket the execution role can always use (the deployment's
state bucket, RECORD_STATE_BUCKET; `ManifestStore`):
  {prefix}{requestId}.json        the manifest: the callback URL, the room, where each recording
                                  file's segments go, a heartbeat. No secret ever: CosConfig's keys
                                  are not in it (recovery works with the execution role's own).
  {prefix}{requestId}.claim.N     create-once: whoever creates claim N finishes the run (N+1 may be
                                  created only when claim N is older than CLAIM_LEASE_S).
  {prefix}{requestId}.reported    create-once, written just before the callback is POSTed: of any
                                  number of finishers (two recoveries, the original run coming
                                  back) exactly one creates it, and only that one POSTs.
  {prefix}{requestId}.result.json the result as POSTed to Callback (CallbackId included), written
                                  before the POST: a receiver that was down longer than the
                                  callback's retries fetches it from here.
Create-once is COS's `x-cos-forbid-overwrite: true` (PUT answers 409 FileAlreadyExists when the key
exists; atomic in COS and in the emulator). It does not hold in a bucket that ever had versioning.

Segments themselves are the truth about what was recorded: recovery LISTs each file's segment
prefix, so the manifest is only written when a file opens or closes, and for the heartbeat
(`RunState`'s Heartbeat worker). A run is dead when its heartbeat is older than STALE_AFTER_S.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from shared.cos.client import CosBucket
from shared.cos.credentials import resolve_credentials
from shared.cos.errors import AlreadyExists, UploadError
from shared.rules.record import OutputKeys
from shared.runtime import RetryPolicy, RunLogger, get_logger
from shared.settings import DEFAULT_RECORD_STATE_PREFIX, settings
from shared.worker import Worker

STATE_BUCKET_ENV = "RECORD_STATE_BUCKET"
STATE_PREFIX = DEFAULT_RECORD_STATE_PREFIX
HEARTBEAT_S = 15.0
STALE_AFTER_S = 45.0  # three heartbeats missed: the run is gone
CLAIM_LEASE_S = 600.0  # a finisher that claimed and went silent this long is replaced
MANIFEST_VERSION = 1
RESULT_SUFFIX = ".result.json"  # {prefix}{requestId}.result.json: the reported result, kept


@dataclass
class TrimState:
    """RemoveSilence's view of one file so far (trim.Trimmer keeps it; the heartbeat saves it with
    the manifest): the recovery makes the trimmed copy from it. Times in ms of the file."""

    gap_ms: int  # silences longer than this are cut
    active: list[Any] = field(default_factory=list)  # [from, to] where the anchor was active
    keys: list[int] = field(default_factory=list)  # key frames (Mode 01/02)
    seen_ms: int = 0  # how far the lists go: what came later is unknown, so the recovery keeps it


@dataclass
class FileRecord:
    """One recording file (an anchor's stay, or one part of it)."""

    user_id: str
    part: int
    start_time: float  # epoch seconds of its first media
    final_key: str  # what storage.object_key gives; the other keys derive from it (OutputKeys)
    channels: int = 1
    local_dir: str | None = None  # where its segments are written (a shared CFS mount survives the run)
    local_prefix: str = ""  # their names' start in local_dir ("anchor001_..._1.")
    closed: bool = False
    samples: int | None = None  # MP3: PCM samples encoded (known once closed)
    trim: TrimState | None = None  # RemoveSilence: the activity so far

    @property
    def keys(self) -> OutputKeys:
        return OutputKeys(self.final_key)


@dataclass
class Manifest:
    request_id: str
    sdk_app_id: int
    room_id: int
    str_room_id: str
    user_id: str  # the recorder's
    callback: str | None
    mode: str
    output_format: str
    segment_s: float
    bucket: str
    region: str
    path: str
    credentials: str = "role"  # "parameters" when the run had CosConfig keys (recovery cannot use them)
    started_at: float = field(default_factory=time.time)
    heartbeat_at: float = field(default_factory=time.time)
    files: list[FileRecord] = field(default_factory=list)
    version: int = MANIFEST_VERSION
    # Lifecycle events (shared.events): where they go, the last EventSeq taken, and the ones not yet
    # delivered, which the recovery sends again (same EventId and EventSeq) before `recovered`.
    event_callback: str | None = None
    event_seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Manifest":
        raw = json.loads(data)
        files = [FileRecord(**{**f, "trim": TrimState(**f["trim"]) if f.get("trim") else None})
                 for f in raw.pop("files", [])]
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(files=files, **known)

    @classmethod
    def for_run(cls, params: Any, request_id: str, output_format: str, segment_s: float) -> "Manifest":
        """From record_stream's RecordParams: every field but the secrets (UserSig, CosConfig keys)."""
        cos = params.CosConfig
        return cls(request_id=request_id, sdk_app_id=params.SdkAppId,
                   room_id=params.RoomId if params.RoomId is not None else 0,
                   str_room_id=params.StrRoomId or "", user_id=params.UserId, callback=params.Callback,
                   mode=params.Mode, output_format=output_format, segment_s=segment_s, bucket=cos.Bucket,
                   region=cos.Region, path=cos.Path,
                   credentials="parameters" if cos.SecretId is not None else "role",
                   event_callback=getattr(params, "EventCallback", None))

    def stale(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) - self.heartbeat_at > STALE_AFTER_S


class ManifestStore:
    """The manifests and markers of every run, in one bucket under `prefix`."""

    def __init__(self, bucket: CosBucket, prefix: str = STATE_PREFIX):
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"

    def _key(self, request_id: str, suffix: str = ".json") -> str:
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in request_id)[:128]
        return f"{self.prefix}{safe}{suffix}"

    def save(self, manifest: Manifest) -> None:
        self.save_bytes(manifest.request_id, manifest.to_json())

    def save_bytes(self, request_id: str, body: bytes) -> None:
        self.bucket.put_bytes(self._key(request_id), body, "application/json")

    def load(self, request_id: str) -> Manifest | None:
        if self.bucket.head(self._key(request_id)) is None:
            return None
        return Manifest.from_json(self.bucket.get_bytes(self._key(request_id)))

    def runs(self) -> list[str]:
        """Request ids with a manifest (runs not yet finished and cleaned up)."""
        return [k[len(self.prefix):-5] for k, _ in self.bucket.list(self.prefix)
                if k.endswith(".json") and not k.endswith(RESULT_SUFFIX)]

    def claim(self, request_id: str, owner: str, now: float | None = None) -> bool:
        """Become the one that finishes this run; False while another holds a fresh claim."""
        now = time.time() if now is None else now
        if self.reported(request_id):
            return False  # finished and reported: claims are gone, the marker stays
        base = self._key(request_id, ".claim.")
        taken = sorted(int(k[len(base):]) for k, _ in self.bucket.list(base) if k[len(base):].isdigit())
        if taken:
            last = json.loads(self.bucket.get_bytes(f"{base}{taken[-1]}"))
            if last.get("owner") == owner:
                return True
            if now - float(last.get("at", 0)) < CLAIM_LEASE_S:
                return False
        number = (taken[-1] if taken else 0) + 1
        body = json.dumps({"owner": owner, "at": now}).encode()
        try:
            self.bucket.put_bytes(f"{base}{number}", body, "application/json", create_only=True)
        except AlreadyExists:
            return False
        return True

    def mark_reported(self, request_id: str, owner: str) -> bool:
        """True for exactly one caller per run: the one that may POST the callback."""
        body = json.dumps({"owner": owner, "at": time.time()}).encode()
        try:
            self.bucket.put_bytes(self._key(request_id, ".reported"), body, "application/json", create_only=True)
        except AlreadyExists:
            return False
        return True

    def result_key(self, request_id: str) -> str:
        return self._key(request_id, RESULT_SUFFIX)

    def keep_result(self, request_id: str, result: dict[str, Any], log: RunLogger) -> None:
        """The result as it is POSTed, kept for a caller whose receiver never got it (best effort:
        the callback goes out whether or not this could be written)."""
        body = json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            self.bucket.put_bytes(self.result_key(request_id), body, "application/json")
        except UploadError as e:
            log.warning("the result could not be kept in the state bucket", error=e.message)

    def load_result(self, request_id: str) -> dict[str, Any] | None:
        if self.bucket.head(self.result_key(request_id)) is None:
            return None
        loaded: dict[str, Any] = json.loads(self.bucket.get_bytes(self.result_key(request_id)))
        return loaded

    def reported(self, request_id: str) -> bool:
        return self.bucket.head(self._key(request_id, ".reported")) is not None

    def forget(self, request_id: str) -> None:
        """After the report: the manifest and claims go; `.reported` stays (a late finisher reads it),
        and so does the result."""
        base = self._key(request_id, ".claim.")
        self.bucket.delete([self._key(request_id)] + [k for k, _ in self.bucket.list(base)])


class RunState:
    """The live run's side: its manifest saved when a file opens or closes, and a heartbeat worker.

        state = RunState(store, Manifest.for_run(params, rid, fmt, seg_s)).start()
        state.add_file(FileRecord(...)); ...; state.close_file(record, samples)
        if state.claim(): ...finalize, then state.report(post, result) sends the callback once

    add_file / close_file only change the manifest in memory and wake the heartbeat, which saves
    it: they are called from the recording loop, which must never wait for COS.
    """

    def __init__(self, store: ManifestStore, manifest: Manifest, log: RunLogger | None = None):
        self.store = store
        self.manifest = manifest
        self.log = log or get_logger(manifest.request_id)
        self.owner = f"run-{manifest.request_id}"
        self._lock = threading.Lock()
        self._saving = threading.Lock()
        self._heartbeat = Heartbeat(self)

    def start(self) -> "RunState":
        """Start the heartbeat; it saves the manifest at once (never on the caller's thread)."""
        self._heartbeat.dirty.set()
        self._heartbeat.start()
        return self

    def save(self) -> None:
        with self._saving:  # one PUT at a time, so an older manifest never lands after a newer one
            with self._lock:
                self._heartbeat.dirty.clear()
                self.manifest.heartbeat_at = time.time()
                body = self.manifest.to_json()
            try:
                self.store.save_bytes(self.manifest.request_id, body)
            except UploadError as e:  # the next beat tries again; the recording goes on
                self.log.warning("recovery state not saved", error=e.message)

    def add_file(self, record: FileRecord) -> None:
        with self._lock:
            self.manifest.files.append(record)
        self._heartbeat.dirty.set()

    def close_file(self, record: FileRecord, samples: int | None = None) -> None:
        with self._lock:
            record.closed, record.samples = True, samples
        self._heartbeat.dirty.set()

    def events_changed(self, seq: int, pending: list[dict[str, Any]]) -> None:
        """The run's events moved on (shared.events.RunEvents.on_change): kept for its recovery."""
        with self._lock:
            self.manifest.event_seq, self.manifest.events = seq, pending
        self._heartbeat.dirty.set()

    def stop(self) -> None:
        self._heartbeat.close()
        self._heartbeat.join(timeout=5)

    def claim(self) -> bool:
        """Before the run finishes its files: False when a recovery already took the run over."""
        return self.store.claim(self.manifest.request_id, self.owner)

    def report(self, post: Callable[[], Any], result: dict[str, Any] | None = None) -> bool:
        """Send the callback (`post()`) only if nobody reported this run yet; then clean up.
        False when someone else did. `result` is kept in the store first (where a caller whose
        receiver was down fetches it). A state store that cannot be reached does not stop the
        callback: a result delivered twice beats one never delivered."""
        self.stop()
        rid = self.manifest.request_id
        try:
            first = self.store.mark_reported(rid, self.owner)
        except UploadError as e:
            self.log.error("recovery state unreachable at the end; the callback is sent anyway", error=e.message)
            post()
            return True
        if not first:
            return False
        if result is not None:
            self.store.keep_result(rid, result, self.log)
        post()
        try:
            self.store.forget(rid)
        except UploadError as e:  # the .reported marker tells a later sweep this run is done
            self.log.warning("recovery state not cleaned up", error=e.message)
        return True


class Heartbeat(Worker):
    """Saves the run's manifest when it changed (`dirty`) and every HEARTBEAT_S anyway."""

    def __init__(self, state: RunState):
        super().__init__("heartbeat")
        self.state = state
        self.dirty = threading.Event()

    def close(self) -> None:
        super().close()
        self.dirty.set()  # wakes run() at once

    def run(self) -> None:
        next_beat = time.monotonic() + HEARTBEAT_S
        while not self.closing.is_set():
            self.dirty.wait(max(0.0, next_beat - time.monotonic()))
            if self.closing.is_set():
                return
            self.state.save()
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + HEARTBEAT_S


def store_from_env(log: RunLogger | None = None, default_region: str = "") -> ManifestStore | None:
    """The state store RECORD_STATE_BUCKET names, with the execution role's credentials (the ones
    recovery has); None when it is not set (recovery off). UploadError when the role has none."""
    s = settings()
    bucket = s.record_state_bucket
    if not bucket:
        return None
    region = s.record_state_region or s.tencentcloud_region or default_region
    prefix = s.record_state_prefix
    # Claims and reports are what keep a recording from being reported twice: they try for longer.
    policy = RetryPolicy(tries=6, backoff=0.5, max_backoff=8.0)
    return ManifestStore(CosBucket(bucket, region, resolve_credentials(), policy=policy, log=log), prefix)

