"""Recordings nobody can lose: the state a run leaves in COS, and `recover` that finishes a dead run.

State, per run, under a prefix of a bucket the execution role can always use (the deployment's
state bucket; `ManifestStore`):
  {prefix}{requestId}.json        the manifest: the callback URL, the room, where each recording
                                  file's segments go, a heartbeat. No secret ever: CosConfig's keys
                                  are not in it (recovery works with the execution role's own).
  {prefix}{requestId}.claim.N     create-once: whoever creates claim N finishes the run (N+1 may be
                                  created only when claim N is older than CLAIM_LEASE_S).
  {prefix}{requestId}.reported    create-once, written just before the callback is POSTed: of any
                                  number of finishers (two recoveries, the original run coming
                                  back) exactly one creates it, and only that one POSTs.
Create-once is COS's `x-cos-forbid-overwrite: true` (PUT answers 409 FileAlreadyExists when the key
exists; atomic in COS and in the emulator). It does not hold in a bucket that ever had versioning.

Segments themselves are the truth about what was recorded: recovery LISTs each file's segment
prefix, so the manifest is only written when a file opens or closes, and for the heartbeat.

A run is dead when its heartbeat is older than STALE_AFTER_S (or SCF reports its event as no
longer RUNNING, when the caller can ask). The trigger that looks for dead runs is described in
the phase-2 notes (a timer in serverless.yml, every minute).
"""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from shared.runtime import RunLogger, get_logger
from shared.settings import DEFAULT_RECORD_STATE_PREFIX, settings

from .segments import local_segments
from .slices import pieces_in_cos
from .storage import AlreadyExists, CosBucket, UploadError, resolve_credentials
from .uploader import CONTENT_TYPES, OutputKeys, finalize, segments_in

STATE_BUCKET_ENV = "RECORD_STATE_BUCKET"
STATE_PREFIX = DEFAULT_RECORD_STATE_PREFIX
HEARTBEAT_S = 15.0
STALE_AFTER_S = 45.0  # three heartbeats missed: the run is gone
CLAIM_LEASE_S = 600.0  # a finisher that claimed and went silent this long is replaced
MANIFEST_VERSION = 1
RECOVERED_NOTE = ("recovered: the recording run ended without finishing; this file holds what reached COS, "
                  "the last seconds (up to SegmentDuration + 2 s) may be missing")


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

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Manifest":
        raw = json.loads(data)
        files = [FileRecord(**f) for f in raw.pop("files", [])]
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
                   credentials="parameters" if cos.SecretId is not None else "role")

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
        return [k[len(self.prefix):-5] for k, _ in self.bucket.list(self.prefix) if k.endswith(".json")]

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

    def reported(self, request_id: str) -> bool:
        return self.bucket.head(self._key(request_id, ".reported")) is not None

    def forget(self, request_id: str) -> None:
        """After the report: the manifest and claims go; `.reported` stays (a late finisher reads it)."""
        base = self._key(request_id, ".claim.")
        self.bucket.delete([self._key(request_id)] + [k for k, _ in self.bucket.list(base)])


class RunState:
    """The live run's side: its manifest saved when a file opens or closes, and a heartbeat thread.

        state = RunState(store, Manifest.for_run(params, rid, fmt, seg_s)).start()
        state.add_file(FileRecord(...)); ...; state.close_file(record, samples)
        if state.claim(): ...finalize, then state.report(post) sends the callback once

    add_file / close_file only change the manifest in memory and wake the heartbeat thread, which
    saves it: they are called from the recording loop, which must never wait for COS.
    """

    def __init__(self, store: ManifestStore, manifest: Manifest, log: RunLogger | None = None):
        import threading

        self.store = store
        self.manifest = manifest
        self.log = log or get_logger(manifest.request_id)
        self.owner = f"run-{manifest.request_id}"
        self._lock = threading.Lock()
        self._saving = threading.Lock()
        self._stop = threading.Event()
        self._dirty = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def start(self) -> "RunState":
        """Start the heartbeat thread; it saves the manifest at once (never on the caller's thread)."""
        self._dirty.set()
        self._thread.start()
        return self

    def save(self) -> None:
        with self._saving:  # one PUT at a time, so an older manifest never lands after a newer one
            with self._lock:
                self._dirty.clear()
                self.manifest.heartbeat_at = time.time()
                body = self.manifest.to_json()
            try:
                self.store.save_bytes(self.manifest.request_id, body)
            except UploadError as e:  # the next beat tries again; the recording goes on
                self.log.warning("recovery state not saved", error=e.message)

    def add_file(self, record: FileRecord) -> None:
        with self._lock:
            self.manifest.files.append(record)
        self._dirty.set()

    def close_file(self, record: FileRecord, samples: int | None = None) -> None:
        with self._lock:
            record.closed, record.samples = True, samples
        self._dirty.set()

    def _beat(self) -> None:
        next_beat = time.monotonic() + HEARTBEAT_S
        while not self._stop.is_set():
            self._dirty.wait(max(0.0, next_beat - time.monotonic()))
            if self._stop.is_set():
                return
            self.save()
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + HEARTBEAT_S

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def claim(self) -> bool:
        """Before the run finishes its files: False when a recovery already took the run over."""
        return self.store.claim(self.manifest.request_id, self.owner)

    def report(self, post: Callable[[], Any]) -> bool:
        """Send the callback (`post()`) only if nobody reported this run yet; then clean up.
        False when someone else did. A state store that cannot be reached does not stop the
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
        post()
        try:
            self.store.forget(rid)
        except UploadError as e:  # the .reported marker tells a later sweep this run is done
            self.log.warning("recovery state not cleaned up", error=e.message)
        return True


# --- recovering one run ------------------------------------------------------------------------


def _upload_leftovers(data: CosBucket, f: FileRecord, log: RunLogger) -> None:
    """Segments a shared CFS still holds (closed, never uploaded) go up before the assembly."""
    if not f.local_dir or not os.path.isdir(f.local_dir):
        return
    keys = f.keys
    there = {i for i, _, _ in segments_in(data.list(keys.segment_prefix), keys)}
    for index, path in local_segments(Path(f.local_dir), f.local_prefix):
        name = path.name[len(f.local_prefix):]
        key = keys.segment_prefix + name
        if index in there:
            continue
        # The segment being written when the run died is taken too: an MP3 one is whole frames up
        # to the crash; an fMP4 one is written in one go when its fragment ends, so rarely partial.
        data.put_file(key, path, CONTENT_TYPES.get(name.rsplit(".", 1)[-1], "application/octet-stream"))
        log.info("uploaded a segment left on CFS", key=key)


def _tidy_local(f: FileRecord) -> None:
    """What the dead run left on a shared CFS for this file is in COS now: remove it."""
    assert f.local_dir is not None
    for _, path in local_segments(Path(f.local_dir), f.local_prefix):
        path.unlink(missing_ok=True)
    try:
        os.rmdir(f.local_dir)  # the run's folder, once its last file is gone
    except OSError:
        pass


def recover(store: ManifestStore, manifest: Manifest, *, owner: str | None = None,
            post: Callable[[str, dict[str, Any]], bool] | None = None,
            open_bucket: Callable[[str, str], CosBucket] | None = None,
            log: RunLogger | None = None) -> dict[str, Any] | None:
    """Finish a dead run: assemble every file from what reached COS, report once.

    Returns the result (the seed's shape, Reason "recovered"), or None when another finisher has
    the run (a fresh claim) or it was already reported. `post(url, body)` sends the callback
    (default: shared.record.callback.post_result); `open_bucket(bucket, region)` opens the
    recording's bucket with the execution role (default: CosBucket.open without keys).
    """
    log = log or get_logger(manifest.request_id)
    owner = owner or f"recovery-{uuid.uuid4()}"
    rid = manifest.request_id
    if store.reported(rid):
        store.forget(rid)
        return None
    if not store.claim(rid, owner):
        log.info("another finisher holds this run", request_id=rid)
        return None
    log.warning("recovering a run that ended without finishing", request_id=rid, files=len(manifest.files))
    files: list[dict[str, Any]] = []
    data: CosBucket | None = None
    problem = ""
    try:
        data = (open_bucket or _role_bucket)(manifest.bucket, manifest.region)
        data.list(manifest.path.strip("/") + "/" if manifest.path.strip("/") else "")  # can the role read it?
    except UploadError as e:
        problem = (f"the execution role cannot use bucket {manifest.bucket} ({e.message}); "
                   f"grant it read and write on {manifest.bucket} so that recordings can be recovered")
        if manifest.credentials == "parameters":
            problem += " (the run used CosConfig keys, which are never stored)"
        data = None
    for f in manifest.files:
        base = {"UserId": f.user_id, "StartTime": int(f.start_time * 1000)}
        if data is None:
            files.append({**base, "RecordFile": "", "Status": 0, "Message": f"{problem} ({RECOVERED_NOTE})"})
            continue
        try:
            _upload_leftovers(data, f, log)
        except (UploadError, OSError) as e:
            log.error("segments left on CFS could not be uploaded", error=str(e))
        made = finalize(data, f.keys, manifest.output_format, channels=f.channels,
                        samples=f.samples if f.closed else None, segment_s=manifest.segment_s,
                        note=RECOVERED_NOTE, log=log)
        files += [{**base, **entry} for entry in made]
        if f.local_dir and all(e["Status"] == 1 for e in made):
            _tidy_local(f)
    result = {
        "SdkAppId": manifest.sdk_app_id,
        "RoomId": manifest.room_id,
        "UserId": manifest.user_id,
        "StrRoomId": manifest.str_room_id,
        "Files": files,
        "Reason": "recovered",
        "Message": "the run ended without finishing (killed, out of memory, or its instance lost); "
                   "the project finished it from what reached COS" + (f": {problem}" if problem else ""),
        "RequestId": rid,
    }
    if data is not None:  # issue 21: slices and snapshots are in COS as each closed
        try:
            slices = pieces_in_cos(data, [f.final_key for f in manifest.files])
        except UploadError as e:
            log.error("slices in COS could not be listed", error=e.message)
            slices = None
        if slices is not None:
            result["Slices"] = slices
    if not store.mark_reported(rid, owner):
        return None  # someone else reported in the meantime: never twice
    if manifest.callback:
        if post is None:
            from .callback import post_result

            def post(url: str, body: dict[str, Any]) -> bool:
                return post_result(url, body, log=log)
        if not post(manifest.callback, result):
            log.error("recovered result not delivered to the callback", request_id=rid)
    store.forget(rid)
    return result


def _role_bucket(bucket: str, region: str) -> CosBucket:
    # Never CosConfig's keys: they were not stored. The execution role's, from the environment.
    return CosBucket(bucket, region, resolve_credentials())


def sweep(store: ManifestStore, *, now: float | None = None, is_running: Callable[[str], bool | None] | None = None,
          **kwargs: Any) -> list[dict[str, Any]]:
    """Recover every dead run in the store (what the timer trigger calls). `is_running(request_id)`
    may ask SCF (GetAsyncEventStatus): False finishes a run at once, None falls back to the heartbeat."""
    out = []
    log = kwargs.get("log") or get_logger()
    for rid in store.runs():
        try:
            manifest = store.load(rid)
            if manifest is None:
                continue
            running = is_running(rid) if is_running is not None else None
            if running is True or (running is None and not manifest.stale(now)):
                continue
            result = recover(store, manifest, **kwargs)
        except (UploadError, ValueError, TypeError) as e:  # one bad run must not stop the others
            log.error("a run could not be recovered; the next sweep tries again", request_id=rid,
                      error=getattr(e, "message", None) or f"{type(e).__name__}: {e}")
            continue
        if result is not None:
            out.append(result)
    return out


# --- the deployment's side: where the state is, and the timer that finishes dead runs -------------


def store_from_env(log: RunLogger | None = None, default_region: str = "") -> ManifestStore | None:
    """The state store RECORD_STATE_BUCKET names, with the execution role's credentials (the ones
    recovery has); None when it is not set (recovery off). UploadError when the role has none."""
    s = settings()
    bucket = s.record_state_bucket
    if not bucket:
        return None
    region = s.record_state_region or s.tencentcloud_region or default_region
    prefix = s.record_state_prefix
    from shared.runtime import RetryPolicy

    # Claims and reports are what keep a recording from being reported twice: they try for longer.
    policy = RetryPolicy(tries=6, backoff=0.5, max_backoff=8.0)
    return ManifestStore(CosBucket(bucket, region, resolve_credentials(), policy=policy, log=log), prefix)


def scf_event_status(log: RunLogger) -> Callable[[str], bool | None]:
    """is_running(request_id) for sweep: SCF's GetAsyncEventStatus with the execution role's
    keys; None (use the heartbeat) when SCF cannot say (no such event, no permission, no network)."""
    from tencentcloud.common import credential
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile
    from tencentcloud.scf.v20180416 import models, scf_client

    creds = resolve_credentials()
    endpoint = settings().scf_api_endpoint or ""
    scheme, _, host = endpoint.rpartition("://")
    http = HttpProfile(protocol=scheme or "https", endpoint=host or None, reqTimeout=10)
    client = scf_client.ScfClient(credential.Credential(creds.secret_id, creds.secret_key, creds.token),
                                  settings().tencentcloud_region or "ap-guangzhou",
                                  ClientProfile(httpProfile=http))
    warned: set[str] = set()

    def is_running(request_id: str) -> bool | None:
        req = models.GetAsyncEventStatusRequest()
        req.InvokeRequestId = request_id
        try:
            return client.GetAsyncEventStatus(req).Result.Status == "RUNNING"
        except (TencentCloudSDKException, OSError) as e:
            code = getattr(e, "code", None) or type(e).__name__
            if code not in warned:  # once per kind of failure: the heartbeat decides meanwhile
                warned.add(code)
                log.warning("SCF did not say whether a run is alive; its heartbeat decides", code=code,
                            error=str(getattr(e, "message", e)))
            return None

    return is_running


def is_timer_event(event: Any) -> bool:
    """SCF's timer trigger event: {"Type": "Timer", "TriggerName", "Time", "Message"}."""
    return isinstance(event, dict) and event.get("Type") == "Timer" and "TriggerName" in event


def on_timer(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """record_stream's timer trigger: finish every run that died (sweep), report what was done."""
    from shared.runtime import Invocation

    inv = Invocation.from_context(context, "record_stream")
    log = get_logger(inv.request_id, inv.function_name)
    try:
        store = store_from_env(log)
    except UploadError as e:
        log.error("recovery state cannot be read", error=e.message)
        return {"status": "failed", "reason": "configuration_error", "message": e.message}
    if store is None:
        message = f"{STATE_BUCKET_ENV} is not set: runs leave no recovery state, nothing to sweep"
        log.warning(message)
        return {"status": "finished", "recovered": [], "message": message}
    try:
        results = sweep(store, is_running=scf_event_status(log), log=log)
    except UploadError as e:
        log.error("sweep failed; the next timer tries again", error=e.message)
        return {"status": "failed", "reason": "state_unreachable", "message": e.message}
    recovered = [r["RequestId"] for r in results]
    if recovered:
        log.info("recovered runs", request_ids=recovered, trigger=event.get("TriggerName"))
    return {"status": "finished", "recovered": recovered}
