"""Recording files to COS: object keys, credentials, and an upload that survives a flaky network.

- `object_key(...)`    a unique, sortable key: "{Path}/{SdkAppId}_{room}_{UserId}_{start}[_{part}].{ext}"
- `upload_file(...)`   put (or multipart for large files) with cos-python-sdk-v5, retrying 5xx and
                       network errors with exponential backoff; returns the object's COS URL
- `check_access(...)`  HEAD the bucket with the credentials before a recording starts: wrong keys,
                       a missing bucket or a refusal fail then, not an hour later at the upload
- `cos_url(...)`       "https://{bucket}.cos.{region}.myqcloud.com/{key}"
- `UploadError`        "upload failed: <COS error code>: <what to check>"

Credentials: the ones given (CosConfig.SecretId/SecretKey), else the execution role's temporary
credentials SCF puts in the environment (TENCENTCLOUD_SECRETID, TENCENTCLOUD_SECRETKEY,
TENCENTCLOUD_SESSIONTOKEN).

Endpoint: COS_ENDPOINT ("http://127.0.0.1:9000") sends every request to that address instead of
{bucket}.cos.{region}.myqcloud.com; the SDK still names the bucket in the Host header, so one
endpoint serves any bucket. The URL returned is always the canonical COS URL above, so a result
reads the same against the emulator as in production; `parse_cos_url` gives the bucket, region and
key back (what a test or the demo needs to fetch the object through the emulator).
"""
from __future__ import annotations

import builtins  # CosBucket.list hides the builtin inside the class
import functools
import hashlib
import logging
import os
import re
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar
from urllib.parse import quote, unquote, urlsplit

from shared.runtime import GaveUp, RetryPolicy, RunLogger, get_logger, redact_value
from shared.settings import settings

T = TypeVar("T")


MB = 1024 * 1024
# Files above this go up in parts (COS's simple upload takes up to 5 GB, but a part that fails is
# cheaper to retry than a whole recording). Both can be set in the environment.
MIN_PART_SIZE = 1 * MB  # COS's smallest part (all but the last)
MAX_PARTS = 10_000

# What to check, per COS error code, said in the terms of the function's parameters.
_HINTS = {
    "SignatureDoesNotMatch": "check CosConfig.SecretKey",
    "InvalidAccessKeyId": "check CosConfig.SecretId (temporary credentials also need their session token)",
    "AccessDenied": "the credentials may not use this bucket and path: a recording needs cos:HeadBucket, "
                    "cos:PutObject and the multipart upload actions on it",
    "NoSuchBucket": "check CosConfig.Bucket (name-APPID) and CosConfig.Region",
    "RequestTimeTooSkewed": "the machine's clock is off",
    "InvalidToken": "the temporary credentials' session token is invalid or expired",
    "ExpiredToken": "the temporary credentials have expired",
}


UPLOAD_FAILED = "upload failed"
CHECK_FAILED = "CosConfig cannot be used"  # the start check's prefix (check_access)


class UploadError(Exception):
    """An upload that did not succeed. `str(e)` starts with "upload failed: " and a COS error code."""

    def __init__(self, message: str, code: str, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.retryable = retryable

    @property
    def detail(self) -> str:
        """The message without its "upload failed: " (or "CosConfig cannot be used: ") prefix."""
        return self.message.split(": ", 1)[-1]


@dataclass(frozen=True)
class Credentials:
    secret_id: str
    secret_key: str
    token: str | None = None
    source: str = "parameters"  # or "environment" (the execution role)


# --- keys and URLs -------------------------------------------------------------------------------

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_COMPONENT = 64  # characters of an id kept in a key


def _component(value: object, allow_underscore: bool = True) -> str:
    """A key component from an id: safe characters kept; anything else replaced, with a short
    hash of the original appended so two ids that differ only there still get different keys."""
    text = str(value)
    pattern = _SAFE if allow_underscore else re.compile(r"[^A-Za-z0-9.-]")
    cleaned = pattern.sub("-", text)
    if cleaned != text or not cleaned or cleaned in (".", "..") or len(cleaned) > _MAX_COMPONENT:
        # Long ids are cut (the full id is in the result's UserId): a key stays readable and far
        # below COS's 850 bytes, and every tool that maps keys to file names copes with it.
        digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:6]
        cleaned = f"{cleaned[:_MAX_COMPONENT]}-{digest}"
    return cleaned


def _timestamp(start_time: float | datetime) -> str:
    if isinstance(start_time, datetime):
        dt = start_time if start_time.tzinfo else start_time.replace(tzinfo=timezone.utc)
    else:
        dt = datetime.fromtimestamp(float(start_time), tz=timezone.utc)
    dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y%m%dT%H%M%S") + f"{dt.microsecond // 1000:03d}Z"


# Room left in COS's 850-byte key for the file name object_key appends (about 150 bytes at most).
MAX_PREFIX_BYTES = 600
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def path_problem(path_prefix: str | None) -> str | None:
    """What is wrong with CosConfig.Path as a key prefix, or None. The one rule for Path:
    record_stream's parameter model asks this too, so a Path refused here is refused before the
    recording starts, not at its upload."""
    text = path_prefix or ""
    if "\\" in text:
        return "must be a folder in the bucket such as /trtc, with '/' between folders (no backslash)"
    if _CONTROL.search(text):
        return "must not contain control characters (NUL, newline, ...)"
    if len(text.encode("utf-8")) > MAX_PREFIX_BYTES:
        return f"must be at most {MAX_PREFIX_BYTES} bytes (COS keys are at most 850)"
    if any(p in (".", "..") for p in text.split("/")):
        return "must not contain '.' or '..' segments"
    return None


def normalize_prefix(path_prefix: str | None) -> str:
    """CosConfig.Path as a key prefix: "" for the bucket root, else "a/b/" (no leading slash,
    no empty segments); ValueError when `path_problem` finds something wrong."""
    problem = path_problem(path_prefix)
    if problem:
        raise ValueError(f"CosConfig.Path {path_prefix!r} {problem}")
    return "".join(p + "/" for p in (path_prefix or "").split("/") if p)


def object_key(
    path_prefix: str | None,
    sdk_app_id: int | str,
    room: int | str,
    user_id: str,
    start_time: float | datetime,
    ext: str,
    part: int | str | None = None,
) -> str:
    """"{Path}/{SdkAppId}_{room}_{UserId}_{YYYYmmddTHHMMSSmmmZ}[_{part}].{ext}".

    Sorted by name, one user's files in one room come in time order (UTC, milliseconds); `part`
    (an int is zero-padded to 3 digits) numbers the files of a split recording. A string room
    has "_" replaced so that the key still splits back into its fields from the left.
    """
    ext = str(ext).lstrip(".").lower()
    if not ext or _SAFE.search(ext):
        raise ValueError(f"file extension {ext!r} is not a plain extension like 'mp4'")
    name = f"{_component(sdk_app_id)}_{_component(room, allow_underscore=False)}_{_component(user_id)}_{_timestamp(start_time)}"
    if part is not None:
        name += f"_{part:03d}" if isinstance(part, int) else f"_{_component(part)}"
    return f"{normalize_prefix(path_prefix)}{name}.{ext}"


def cos_url(bucket: str, region: str, key: str) -> str:
    return f"https://{cos_host(bucket, region)}/{quote(key.lstrip('/'), safe='/-_.~')}"


# One COS host pattern for the whole project: RecordFile URLs here, the emulator's Host routing.
_COS_HOST = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9-]*)\.cos\.(?P<region>[a-z0-9-]+)\.myqcloud\.com$")


def cos_host(bucket: str, region: str) -> str:
    """The host COS serves a bucket at: "{bucket}.cos.{region}.myqcloud.com"."""
    return f"{bucket}.cos.{region}.myqcloud.com"


def parse_cos_host(host: str) -> tuple[str, str] | None:
    """(bucket, region) from a host made by `cos_host` (lower case, no port), else None."""
    m = _COS_HOST.match(host)
    return (m.group("bucket"), m.group("region")) if m else None


def parse_cos_url(url: str) -> tuple[str, str, str]:
    """(bucket, region, key) from a URL made by `cos_url`."""
    parts = urlsplit(url)
    named = parse_cos_host(parts.hostname or "")
    if not named or not parts.path.strip("/"):
        raise ValueError(f"{url!r} is not a COS object URL like https://bucket-1250000000.cos.ap-guangzhou.myqcloud.com/key")
    return named[0], named[1], unquote(parts.path[1:])


# --- credentials and client ----------------------------------------------------------------------


def resolve_credentials(secret_id: str | None = None, secret_key: str | None = None,
                        token: str | None = None) -> Credentials:
    """The credentials given, else the execution role's from the environment, else UploadError."""
    if secret_id or secret_key:
        if not (secret_id and secret_key):
            missing = "SecretKey" if secret_id else "SecretId"
            raise UploadError(f"upload failed: MissingCredentials: CosConfig.{missing} is missing "
                              "(give both SecretId and SecretKey, or neither to use the execution role)",
                              "MissingCredentials")
        creds = Credentials(secret_id, secret_key, token or None, "parameters")
    else:
        s = settings()
        env_id, env_key, env_token = s.tencentcloud_secretid, s.tencentcloud_secretkey, s.tencentcloud_sessiontoken
        if not (env_id and env_key):
            raise UploadError(
                "upload failed: MissingCredentials: no COS credentials; give CosConfig.SecretId and SecretKey, "
                "or run the function with an execution role that may write to the bucket "
                "(SCF then sets TENCENTCLOUD_SECRETID, TENCENTCLOUD_SECRETKEY, TENCENTCLOUD_SESSIONTOKEN)",
                "MissingCredentials")
        creds = Credentials(env_id, env_key, env_token, "environment")
    for v in (creds.secret_id, creds.secret_key, creds.token):
        redact_value(v)
    return creds


def endpoint_override() -> tuple[str, str, int | None] | None:
    """(scheme, host, port) from COS_ENDPOINT, or None to use {bucket}.cos.{region}.myqcloud.com."""
    value = settings().cos_endpoint  # validated by the preflight: http(s)://host[:port]
    if not value:
        return None
    parts = urlsplit(value)
    return parts.scheme, parts.hostname or "", parts.port


def make_client(region: str, creds: Credentials, timeout: float = 30.0) -> Any:
    """A CosS3Client with the SDK's own retries off (we retry, with backoff, per request)."""
    from qcloud_cos import CosConfig, CosS3Client

    # The SDK logs request headers (the session token among them) at DEBUG and every failure at
    # ERROR; we log one line per outcome ourselves.
    logging.getLogger("qcloud_cos").setLevel(logging.CRITICAL)
    kwargs: dict[str, Any] = dict(Region=region, SecretId=creds.secret_id, SecretKey=creds.secret_key,
                                  Token=creds.token, Timeout=timeout)
    override = endpoint_override()
    if override:
        scheme, host, port = override
        kwargs.update(IP=host, Port=port, Scheme=scheme)
    else:
        kwargs.update(Scheme="https")
    return CosS3Client(CosConfig(**kwargs), retry=0)


# --- retries -------------------------------------------------------------------------------------


def _error_code(exc: Any, status: int | None) -> str:
    try:  # a HEAD answer has no body: the SDK then holds the headers, which have no code
        code = exc.get_error_code()
    except (KeyError, TypeError):
        code = None
    if code == "Unknown":  # what the SDK says when it found no code
        code = None
    if code == "NoSuchResource":  # the SDK's name for a HEAD 404
        code = "NoSuchKey"
    return code or (f"HTTP{status}" if status else "Unknown")


def _classify(exc: Exception, what: str, prefix: str = UPLOAD_FAILED) -> UploadError:
    from qcloud_cos.cos_exception import CosClientError, CosServiceError

    if isinstance(exc, UploadError):
        return exc
    if isinstance(exc, CosServiceError):
        status = exc.get_status_code()
        code = _error_code(exc, status)
        try:
            msg = (exc.get_error_msg() or "").strip()
        except (KeyError, TypeError):
            msg = ""
        if msg == "Unknown":
            msg = ""
        hint = _HINTS.get(code)
        text = f"{prefix}: {code}"
        if msg:
            text += f": {msg}"
        text += f" (HTTP {status} on {what}" + (f"; {hint})" if hint else ")")
        retryable = status is None or status >= 500 or status in (408, 429)
        return UploadError(text, code, status, retryable)
    if isinstance(exc, CosClientError):
        return UploadError(f"{prefix}: network error on {what}: {exc}", "NetworkError", None, True)
    if isinstance(exc, OSError):
        return UploadError(f"{prefix}: cannot read the file: {exc}", "FileError", None, False)
    return UploadError(f"{prefix}: {type(exc).__name__}: {exc}", "InternalError", None, False)


def _with_retries(call: Callable[[], T], what: str, policy: RetryPolicy, log: RunLogger,
                  cancelled: threading.Event | None = None, prefix: str = UPLOAD_FAILED) -> T:
    """`call` under `policy`: 5xx, 408, 429 and network errors are retried, the rest raised at once
    as UploadError."""
    def attempt() -> T:
        try:
            return call()
        except Exception as e:  # classified here, so that the policy only asks "retryable?"
            raise _classify(e, what, prefix) from None

    def on_retry(attempt: int, err: BaseException, wait_s: float) -> None:
        log.warning("cos request failed, retrying", what=what, attempt=attempt,
                    code=getattr(err, "code", None), retry_in_s=round(wait_s, 2))

    try:
        return policy.run(attempt, retryable=lambda e: isinstance(e, UploadError) and e.retryable,
                          on_retry=on_retry, sleep=cancelled.wait if cancelled is not None else time.sleep)
    except GaveUp as g:
        err = g.error if isinstance(g.error, UploadError) else UploadError(f"{prefix}: {g.error}", "InternalError")
        if g.why == "tries" and g.attempts > 1:
            err = UploadError(f"{err.message} after {g.attempts} tries", err.code, err.status, True)
        elif g.why == "deadline":
            err = UploadError(f"{err.message}; no time left to retry", err.code, err.status, True)
        raise err from None


# --- upload --------------------------------------------------------------------------------------


def upload_file(
    path: str | os.PathLike,
    *,
    bucket: str,
    region: str,
    key: str,
    secret_id: str | None = None,
    secret_key: str | None = None,
    token: str | None = None,
    content_type: str | None = None,
    multipart_threshold: int | None = None,
    part_size: int | None = None,
    max_workers: int = 4,
    tries: int = 4,
    backoff: float = 0.5,
    max_backoff: float = 8.0,
    deadline: float | None = None,
    timeout: float = 30.0,
    log: RunLogger | None = None,
) -> str:
    """Upload `path` to bucket/key and return its COS URL, or raise UploadError.

    Files above `multipart_threshold` bytes go up in parts of `part_size` bytes (at least 1 MB),
    `max_workers` at a time. Each request is tried up to `tries` times, waiting `backoff`,
    2×`backoff`, ... (capped at `max_backoff`) between tries, for 5xx answers and network errors
    only; no retry starts after `deadline` (a time.monotonic() value).
    """
    log = log or get_logger()
    path = os.fspath(path)
    key = (key or "").lstrip("/")
    for name, value in (("CosConfig.Bucket", bucket), ("CosConfig.Region", region), ("the object key", key)):
        if not value or not str(value).strip():
            raise UploadError(f"upload failed: InvalidArgument: {name} is empty", "InvalidArgument")
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise UploadError(f"upload failed: cannot read the file {path}: {e.strerror}", "FileError") from None
    creds = resolve_credentials(secret_id, secret_key, token)
    client = make_client(region, creds, timeout)
    policy = RetryPolicy(tries=tries, backoff=backoff, max_backoff=max_backoff, deadline=deadline)
    threshold = settings().cos_multipart_threshold if multipart_threshold is None else multipart_threshold
    started = time.monotonic()
    extra = {"ContentType": content_type} if content_type else {}

    if size <= threshold:
        def put() -> Any:
            with open(path, "rb") as f:
                return client.put_object(Bucket=bucket, Key=key, Body=f, **extra)

        _with_retries(put, f"PUT {bucket}/{key}", policy, log)
        parts = 1
    else:
        parts = _multipart(client, path, size, bucket, key, part_size, max_workers, policy, log, extra)
    url = cos_url(bucket, region, key)
    log.info("uploaded to cos", url=url, bytes=size, parts=parts, credentials=creds.source,
             seconds=round(time.monotonic() - started, 3))
    return url


def _multipart(client: Any, path: str, size: int, bucket: str, key: str, part_size: int | None,
               max_workers: int, policy: RetryPolicy, log: RunLogger, extra: dict[str, Any]) -> int:
    part_size = max(MIN_PART_SIZE, settings().cos_part_size if part_size is None else int(part_size))
    part_size = max(part_size, -(-size // MAX_PARTS))  # at most 10,000 parts
    count = -(-size // part_size)
    where = f"{bucket}/{key}"
    upload_id = _with_retries(lambda: client.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"],
                              f"initiate multipart upload of {where}", policy, log)
    cancelled = threading.Event()

    def send(number: int) -> dict[str, Any]:
        offset = (number - 1) * part_size
        length = min(part_size, size - offset)

        def put_part() -> Any:
            with open(path, "rb") as f:  # read per try: memory holds one part per worker
                f.seek(offset)
                data = f.read(length)
            return client.upload_part(Bucket=bucket, Key=key, Body=data, PartNumber=number, UploadId=upload_id)

        answer = _with_retries(put_part, f"part {number}/{count} of {where}", policy, log, cancelled)
        return {"PartNumber": number, "ETag": {k.lower(): v for k, v in answer.items()}["etag"]}

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, count)), thread_name_prefix="cos-part") as pool:
            futures = [pool.submit(send, n) for n in range(1, count + 1)]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in futures if f.done() and f.exception() is not None), None)
            if failed is not None:
                cancelled.set()
                for f in futures:
                    f.cancel()
                raise failed.exception()  # type: ignore[misc]  # a failed future's exception is set: it is what wait() returned on
            parts = [f.result() for f in futures]
        _complete(client, bucket, key, upload_id, parts, size, policy, log)
    except Exception:
        try:  # leave no orphaned parts behind (they are billed)
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception as e:
            log.warning("could not abort the multipart upload", where=where, error=str(e))
        raise
    return count


def _complete(client: Any, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]], size: int,
              policy: RetryPolicy, log: RunLogger) -> None:
    from qcloud_cos.cos_exception import CosServiceError

    lost_answer = False

    def complete() -> Any:
        nonlocal lost_answer
        try:
            return client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                                    MultipartUpload={"Part": parts})
        except CosServiceError as e:
            # A retry after an answer lost on the way back finds the upload already completed.
            if lost_answer and e.get_error_code() == "NoSuchUpload":
                head = client.head_object(Bucket=bucket, Key=key)
                if int(head.get("Content-Length", -1)) == size:
                    return head
            raise
        except Exception:
            lost_answer = True
            raise

    _with_retries(complete, f"complete multipart upload of {bucket}/{key}", policy, log)


# --- the start check -----------------------------------------------------------------------------


def check_access(
    *,
    bucket: str,
    region: str,
    path_prefix: str | None = None,
    secret_id: str | None = None,
    secret_key: str | None = None,
    token: str | None = None,
    tries: int = 3,
    backoff: float = 0.25,
    timeout: float = 5.0,
    deadline: float | None = None,
    log: RunLogger | None = None,
) -> str | None:
    """Try the credentials a recording will upload with on one cheap request (HEAD bucket).

    Raises UploadError ("CosConfig cannot be used: <code>: ... <what to check>") when they cannot
    work: no credentials, a bad COS_ENDPOINT, a wrong SecretId or SecretKey, no such bucket, access
    denied. Returns None when COS let them in, or a warning when COS could not be reached (network
    errors and 5xx for `tries` attempts): a COS that is down for a moment must not cost a recording;
    its uploads retry, and a file that still cannot go up stays on disk and is reported.
    """
    log = log or get_logger()
    started = time.monotonic()
    try:
        normalize_prefix(path_prefix)
        creds = resolve_credentials(secret_id, secret_key, token)
        client = make_client(region, creds, timeout)
    except UploadError as e:
        raise UploadError(f"{CHECK_FAILED}: {e.detail}", e.code) from None
    except ValueError as e:
        raise UploadError(f"{CHECK_FAILED}: InvalidArgument: {e}", "InvalidArgument") from None
    what = f"HEAD bucket {bucket}"
    policy = RetryPolicy(tries=tries, backoff=backoff, max_backoff=4 * backoff, deadline=deadline)
    try:
        _with_retries(lambda: client.head_bucket(Bucket=bucket), what, policy, log, prefix=CHECK_FAILED)
    except UploadError as e:
        if e.retryable:
            warning = f"COS not reachable at start: {e.detail}"
            log.warning("cos not reachable at start; recording anyway, the uploads will retry", error=warning)
            return warning
        raise _explain_refusal(client, bucket, path_prefix, e, what) from None
    log.info("cos credentials accepted", bucket=bucket, credentials=creds.source,
             seconds=round(time.monotonic() - started, 3))
    return None


def _explain_refusal(client: Any, bucket: str, path_prefix: str | None, err: UploadError, what: str) -> UploadError:
    """A HEAD answer has no body, so no COS error code: name what a 404 or 403 means, asking COS
    once more (GET bucket, whose error has a body) for a 403's code."""
    if err.status == 404:
        return UploadError(f"{CHECK_FAILED}: NoSuchBucket: the bucket does not exist (HTTP 404 on {what}; "
                           f"{_HINTS['NoSuchBucket']})", "NoSuchBucket", 404)
    if err.status != 403 or err.code in _HINTS:
        return err
    from qcloud_cos.cos_exception import CosServiceError

    try:
        client.list_objects(Bucket=bucket, Prefix=normalize_prefix(path_prefix), MaxKeys=1)
    except CosServiceError as e:
        told = _classify(e, f"GET bucket {bucket}", CHECK_FAILED)
        if told.code in _HINTS:
            return told
    except Exception:  # only an explanation: the 403 stands without it
        pass
    return UploadError(f"{CHECK_FAILED}: AccessDenied: COS refused the credentials (HTTP 403 on {what}; "
                       f"check CosConfig.SecretId and SecretKey; {_HINTS['AccessDenied']})", "AccessDenied", 403)


# --- segments, assembly and recovery: the COS calls beyond one upload ------------------------------
# One client for many small requests (segments, playlists, manifests, parts), each retried as above.

FORBID_OVERWRITE_HEADER = "x-cos-forbid-overwrite"


class AlreadyExists(UploadError):
    """A create-once write (x-cos-forbid-overwrite) found the key taken."""


def _allow_forbid_overwrite() -> None:
    # cos-python-sdk-v5 refuses headers it has no name for; COS's create-once header has none yet.
    from qcloud_cos import cos_comm

    cos_comm.maplist.setdefault("ForbidOverwrite", FORBID_OVERWRITE_HEADER)


class CosBucket:
    """One bucket, one client, every call retried with `policy` (5xx and network errors only)."""

    def __init__(self, bucket: str, region: str, creds: Credentials, *, policy: RetryPolicy | None = None,
                 log: RunLogger | None = None, timeout: float = 30.0):
        _allow_forbid_overwrite()
        self.bucket = bucket
        self.region = region
        self.creds = creds
        self.policy = policy or RetryPolicy()
        self.log = log or get_logger()
        self.client = make_client(region, creds, timeout)

    @classmethod
    def open(cls, bucket: str, region: str, secret_id: str | None = None, secret_key: str | None = None,
             token: str | None = None, **kwargs: Any) -> "CosBucket":
        """With the keys given, else the execution role's (see resolve_credentials)."""
        return cls(bucket, region, resolve_credentials(secret_id, secret_key, token), **kwargs)

    def url(self, key: str) -> str:
        return cos_url(self.bucket, self.region, key)

    def _call(self, fn: Callable[[], T], what: str) -> T:
        return _with_retries(fn, what, self.policy, self.log)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None, create_only: bool = False) -> None:
        """PUT `data`; with `create_only`, AlreadyExists when the key exists (COS checks it atomically)."""
        extra: dict[str, Any] = {"ContentType": content_type} if content_type else {}
        if create_only:
            extra["ForbidOverwrite"] = "true"
        try:
            self._call(lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra), f"PUT {self.bucket}/{key}")
        except UploadError as e:
            if e.code == "FileAlreadyExists" or (create_only and e.status == 409):
                raise AlreadyExists(e.message, e.code, e.status) from None
            raise

    def put_file(self, key: str, path: str | os.PathLike, content_type: str | None = None) -> int:
        """PUT a local file (read per try); its size."""
        extra = {"ContentType": content_type} if content_type else {}

        def put() -> Any:
            with open(path, "rb") as f:
                return self.client.put_object(Bucket=self.bucket, Key=key, Body=f, **extra)

        self._call(put, f"PUT {self.bucket}/{key}")
        return os.path.getsize(path)

    def get_bytes(self, key: str, first: int | None = None, last: int | None = None) -> bytes:
        """An object's bytes (or bytes first..last, inclusive)."""
        extra = {"Range": f"bytes={first or 0}-{'' if last is None else last}"} if first or last is not None else {}
        return self._call(lambda: self.client.get_object(Bucket=self.bucket, Key=key, **extra)["Body"]
                          .get_raw_stream().read(), f"GET {self.bucket}/{key}")

    def head(self, key: str) -> dict[str, Any] | None:
        """The object's headers, or None when it does not exist."""
        try:
            return self._call(lambda: self.client.head_object(Bucket=self.bucket, Key=key), f"HEAD {self.bucket}/{key}")
        except UploadError as e:
            if e.code in ("NoSuchKey", "NoSuchResource") or e.status == 404:
                return None
            raise

    def list(self, prefix: str) -> list[tuple[str, int]]:
        """(key, size) of every object under `prefix`, in key order."""
        out: list[tuple[str, int]] = []
        marker = ""
        while True:
            page = self._call(functools.partial(self.client.list_objects, Bucket=self.bucket, Prefix=prefix,
                                                Marker=marker, MaxKeys=1000), f"LIST {self.bucket}/{prefix}")
            contents = page.get("Contents", [])
            out += [(o["Key"], int(o["Size"])) for o in contents]
            if page.get("IsTruncated") != "true" or not contents:
                return out
            marker = page.get("NextMarker") or contents[-1]["Key"]

    def delete(self, keys: builtins.list[str]) -> None:
        """Delete the keys (a missing key is no error), 1000 a request."""
        for i in range(0, len(keys), 1000):
            batch = {"Quiet": "true", "Object": [{"Key": k} for k in keys[i:i + 1000]]}
            self._call(functools.partial(self.client.delete_objects, Bucket=self.bucket, Delete=batch),
                       f"DELETE objects in {self.bucket}")

    # multipart
    def start_multipart(self, key: str, content_type: str | None = None) -> str:
        extra = {"ContentType": content_type} if content_type else {}
        return self._call(lambda: self.client.create_multipart_upload(Bucket=self.bucket, Key=key, **extra)["UploadId"],
                          f"initiate multipart upload of {self.bucket}/{key}")

    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        answer = self._call(lambda: self.client.upload_part(Bucket=self.bucket, Key=key, Body=data, PartNumber=number,
                                                            UploadId=upload_id), f"part {number} of {self.bucket}/{key}")
        return {k.lower(): v for k, v in answer.items()}["etag"]

    def copy_part(self, key: str, upload_id: str, number: int, source_key: str,
                  first: int | None = None, last: int | None = None) -> str:
        """A part copied inside COS from `source_key` (bytes first..last), no bytes through us."""
        source = {"Bucket": self.bucket, "Region": self.region, "Key": source_key}
        span = f"bytes={first}-{last}" if first is not None and last is not None else ""
        answer = self._call(lambda: self.client.upload_part_copy(Bucket=self.bucket, Key=key, PartNumber=number,
                                                                 UploadId=upload_id, CopySource=source,
                                                                 CopySourceRange=span),
                            f"part {number} of {self.bucket}/{key} (copy of {source_key})")
        flat = {k.lower(): v for k, v in answer.items()}
        etag = flat.get("etag") or (answer.get("CopyPartResult") or {}).get("ETag")
        if not etag:
            raise UploadError(f"upload failed: InternalError: no ETag for part {number} of {key}", "InternalError")
        return etag

    def complete(self, key: str, upload_id: str, parts: builtins.list[dict[str, Any]], size: int) -> None:
        _complete(self.client, self.bucket, key, upload_id, parts, size, self.policy, self.log)

    def abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception as e:  # billed parts are left; COS lifecycle rules can clear them
            self.log.warning("could not abort the multipart upload", key=key, error=str(e))
