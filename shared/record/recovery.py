"""Recordings nobody can lose: `recover` finishes a dead run from what it left in COS (state.py says
what a run keeps there: manifest, claims, the reported marker, the result).

A run is dead when its heartbeat is older than STALE_AFTER_S (or SCF reports its event as no
longer RUNNING, when the caller can ask). record_stream's timer trigger (every minute, in
serverless.yml) calls `on_timer`, which `sweep`s the store and `recover`s every dead run: each file
is assembled from what reached COS (assembly.finalize, as the live run's end does) and the result
is reported once.
"""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from shared.cos.client import CosBucket
from shared.cos.credentials import resolve_credentials
from shared.cos.errors import UploadError
from shared.runtime import RunLogger, get_logger
from shared.settings import settings

from .assembly import CONTENT_TYPES, finalize, segments_in
from .result import file_entry, run_result
from .segments import MODE_MP3, local_segments
from .slices import pieces_in_cos
from .state import STATE_BUCKET_ENV, FileRecord, Manifest, ManifestStore, store_from_env

RECOVERED_NOTE = ("recovered: the recording run ended without finishing; this file holds what reached COS, "
                  "the last seconds (up to SegmentDuration + 2 s) may be missing")




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

    Returns the result (the shape the run's own end has, result.py; Reason "recovered"), or None
    when another finisher has the run (a fresh claim) or it was already reported. `post(url,
    body)` sends the callback (default: shared.record.callback.post_result); `open_bucket(bucket,
    region)` opens the recording's bucket with the execution role (default: the role's keys).
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
    data, problem = _open_recordings(manifest, open_bucket or _role_bucket)
    files: list[dict[str, Any]] = []
    for f in manifest.files:
        files += _recover_file(data, manifest, f, problem, log)
    result = run_result(sdk_app_id=manifest.sdk_app_id, room_id=manifest.room_id, user_id=manifest.user_id,
                        str_room_id=manifest.str_room_id, files=files, reason="recovered",
                        message="the run ended without finishing (killed, out of memory, or its instance lost); "
                                "the project finished it from what reached COS" + (f": {problem}" if problem else ""),
                        request_id=rid)
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
    store.keep_result(rid, result, log)
    if manifest.callback and not (post or _poster(log))(manifest.callback, result):
        log.error("recovered result not delivered to the callback", request_id=rid)
    _send_events(manifest, result, log)
    store.forget(rid)
    return result


def _send_events(manifest: Manifest, result: dict[str, Any], log: RunLogger) -> None:
    """The run's events it had not delivered (same EventId and EventSeq), then `recovered`, its last."""
    if not manifest.event_callback:
        return
    from shared.events.emitter import RunEvents
    from shared.events.lifecycle import flush_deadline_s
    from shared.outbox import Outbox

    outbox = Outbox(log=log, name="recovery-outbox")
    outbox.start()
    events = RunEvents(outbox, manifest.event_callback, function="record_stream", request_id=manifest.request_id,
                       sdk_app_id=manifest.sdk_app_id, room=manifest.room_id or manifest.str_room_id,
                       user_id=manifest.user_id, log=log, first_seq=manifest.event_seq)
    for body in sorted(manifest.events, key=lambda b: int(b.get("EventSeq") or 0)):
        events.send_again(body)
    events.end("recovered", result)
    outbox.finish(time.monotonic() + flush_deadline_s())


def _poster(log: RunLogger) -> Callable[[str, dict[str, Any]], bool]:
    from .callback import post_result

    def post(url: str, body: dict[str, Any]) -> bool:
        return post_result(url, body, log=log)

    return post


def _open_recordings(manifest: Manifest, open_bucket: Callable[[str, str], CosBucket]) -> tuple[CosBucket | None, str]:
    """The recordings' bucket, opened with the execution role; or None and why it cannot be used."""
    try:
        data = open_bucket(manifest.bucket, manifest.region)
        data.list(manifest.path.strip("/") + "/" if manifest.path.strip("/") else "")  # can the role read it?
        return data, ""
    except UploadError as e:
        problem = (f"the execution role cannot use bucket {manifest.bucket} ({e.message}); "
                   f"grant it read and write on {manifest.bucket} so that recordings can be recovered")
        if manifest.credentials == "parameters":
            problem += " (the run used CosConfig keys, which are never stored)"
        return None, problem


def _recover_file(data: CosBucket | None, manifest: Manifest, f: FileRecord, problem: str,
                  log: RunLogger) -> list[dict[str, Any]]:
    """One file's entries, assembled from what reached COS (and what a shared CFS still holds)."""
    start_ms = int(f.start_time * 1000)
    if data is None:
        return [file_entry(f.user_id, 0.0, start_ms, {"RecordFile": "", "Status": 0,
                                                      "Message": f"{problem} ({RECOVERED_NOTE})"})]
    try:
        _upload_leftovers(data, f, log)
    except (UploadError, OSError) as e:
        log.error("segments left on CFS could not be uploaded", error=str(e))
    made = finalize(data, f.keys, manifest.output_format, channels=f.channels,
                    samples=f.samples if f.closed else None, segment_s=manifest.segment_s,
                    note=RECOVERED_NOTE, with_duration=True, log=log)
    if f.local_dir and all(e["Status"] == 1 for e in made):
        _tidy_local(f)
    if f.trim is not None:  # RemoveSilence: the trimmed copy, from the activity the run saved
        from . import trim

        duration = max((e.get("Duration", 0.0) for e in made), default=0.0)
        kept = trim.kept_of(f.trim, int(duration * 1000), has_video=manifest.mode != MODE_MP3)
        entry = trim.for_file(data, f.final_key, made, kept, f.channels, log)
        made = made + [{**entry, "Duration": duration}]
    # The note stays in a recovered file's Message: "success" would hide what may be missing.
    return [file_entry(f.user_id, e.pop("Duration", 0.0), start_ms, e, message_ok=e["Message"]) for e in made]


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
