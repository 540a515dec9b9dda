"""The one door to COS: every call the project makes to COS goes through a `CosBucket` made here.

- `CosBucket`        one bucket, one cos-python-sdk-v5 client, every request retried with backoff
                     (5xx, 408, 429 and network errors only) and every failure classified
                     (shared.cos.errors): put/get/head/list/delete, create-once writes, multipart
- `check_access(...)` HEAD the bucket with the credentials before a recording starts: wrong keys,
                     a missing bucket or a refusal fail then, not an hour later at the upload
- `make_client(...)` the SDK client, aimed at COS_ENDPOINT when set, after the egress check

Endpoint: COS_ENDPOINT ("http://127.0.0.1:9000") sends every request to that address instead of
{bucket}.cos.{region}.myqcloud.com; the SDK still names the bucket in the Host header, so one
endpoint serves any bucket. Like every other address the functions connect to, an endpoint that
resolves to an internal address (loopback, private, link-local, metadata) is refused unless
COS_ALLOWLIST opens it (shared.egress). COS's own host, {bucket}.cos.{region}.myqcloud.com, is not
checked: inside a Tencent Cloud VPC it resolves to COS's internal addresses by design, and its
name is built from a bucket and region the parameter model already held to COS's patterns.
"""
from __future__ import annotations

import builtins  # CosBucket.list hides the builtin inside the class
import functools
import logging
import os
import threading
import time
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

from shared import egress
from shared.runtime import GaveUp, RetryPolicy, RunLogger, get_logger
from shared.settings import settings

from .credentials import Credentials, resolve_credentials
from .errors import CHECK_FAILED, HINTS, UPLOAD_FAILED, AlreadyExists, UploadError, classify
from .urls import cos_url

T = TypeVar("T")

MB = 1024 * 1024
MIN_PART_SIZE = 1 * MB  # COS's smallest part (all but the last)
MAX_PARTS = 10_000
COS_ALLOWLIST_ENV = "COS_ALLOWLIST"


# --- the client ----------------------------------------------------------------------------------


def endpoint_override() -> tuple[str, str, int | None] | None:
    """(scheme, host, port) from COS_ENDPOINT, or None to use {bucket}.cos.{region}.myqcloud.com.
    UploadError ("EndpointRefused") when COS_ALLOWLIST's rule refuses its address."""
    value = settings().cos_endpoint  # validated by the preflight: http(s)://host[:port]
    if not value:
        return None
    try:
        egress.check_destination(value, COS_ALLOWLIST_ENV, "COS_ENDPOINT")
    except egress.DestinationRefused as e:
        raise UploadError(f"{UPLOAD_FAILED}: EndpointRefused: {e}", "EndpointRefused") from None
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


def with_retries(call: Callable[[], T], what: str, policy: RetryPolicy, log: RunLogger,
                  cancelled: threading.Event | None = None, prefix: str = UPLOAD_FAILED) -> T:
    """`call` under `policy`: 5xx, 408, 429 and network errors are retried, the rest raised at once
    as UploadError."""
    def attempt() -> T:
        try:
            return call()
        except Exception as e:  # classified here, so that the policy only asks "retryable?"
            raise classify(e, what, prefix) from None

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


def complete_multipart(client: Any, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]], size: int,
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

    with_retries(complete, f"complete multipart upload of {bucket}/{key}", policy, log)


# --- the start check -----------------------------------------------------------------------------


def check_access(
    *,
    bucket: str,
    region: str,
    key_prefix: str = "",
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
    `key_prefix` is where the recording writes (a 403 is explained by a LIST there).

    Raises UploadError ("CosConfig cannot be used: <code>: ... <what to check>") when they cannot
    work: no credentials, a bad COS_ENDPOINT, a wrong SecretId or SecretKey, no such bucket, access
    denied. Returns None when COS let them in, or a warning when COS could not be reached (network
    errors and 5xx for `tries` attempts): a COS that is down for a moment must not cost a recording;
    its uploads retry, and a file that still cannot go up stays on disk and is reported.
    """
    log = log or get_logger()
    started = time.monotonic()
    try:
        creds = resolve_credentials(secret_id, secret_key, token)
        client = make_client(region, creds, timeout)
    except UploadError as e:
        raise UploadError(f"{CHECK_FAILED}: {e.detail}", e.code) from None
    what = f"HEAD bucket {bucket}"
    policy = RetryPolicy(tries=tries, backoff=backoff, max_backoff=4 * backoff, deadline=deadline)
    try:
        with_retries(lambda: client.head_bucket(Bucket=bucket), what, policy, log, prefix=CHECK_FAILED)
    except UploadError as e:
        if e.retryable:
            warning = f"COS not reachable at start: {e.detail}"
            log.warning("cos not reachable at start; recording anyway, the uploads will retry", error=warning)
            return warning
        raise _explain_refusal(client, bucket, key_prefix, e, what) from None
    log.info("cos credentials accepted", bucket=bucket, credentials=creds.source,
             seconds=round(time.monotonic() - started, 3))
    return None


def _explain_refusal(client: Any, bucket: str, key_prefix: str, err: UploadError, what: str) -> UploadError:
    """A HEAD answer has no body, so no COS error code: name what a 404 or 403 means, asking COS
    once more (GET bucket, whose error has a body) for a 403's code."""
    if err.status == 404:
        return UploadError(f"{CHECK_FAILED}: NoSuchBucket: the bucket does not exist (HTTP 404 on {what}; "
                           f"{HINTS['NoSuchBucket']})", "NoSuchBucket", 404)
    if err.status != 403 or err.code in HINTS:
        return err
    from qcloud_cos.cos_exception import CosServiceError

    try:
        client.list_objects(Bucket=bucket, Prefix=key_prefix, MaxKeys=1)
    except CosServiceError as e:
        told = classify(e, f"GET bucket {bucket}", CHECK_FAILED)
        if told.code in HINTS:
            return told
    except Exception:  # only an explanation: the 403 stands without it
        pass
    return UploadError(f"{CHECK_FAILED}: AccessDenied: COS refused the credentials (HTTP 403 on {what}; "
                       f"check CosConfig.SecretId and SecretKey; {HINTS['AccessDenied']})", "AccessDenied", 403)


# --- one bucket ---------------------------------------------------------------------------------

FORBID_OVERWRITE_HEADER = "x-cos-forbid-overwrite"


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
        return with_retries(fn, what, self.policy, self.log)

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

    def copy(self, source_key: str, key: str) -> None:
        """`key` becomes a copy of `source_key`, made inside COS (no bytes through us; up to 5 GB)."""
        source = {"Bucket": self.bucket, "Region": self.region, "Key": source_key}
        self._call(lambda: self.client.copy_object(Bucket=self.bucket, Key=key, CopySource=source),
                   f"COPY {self.bucket}/{source_key} to {key}")

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
        complete_multipart(self.client, self.bucket, key, upload_id, parts, size, self.policy, self.log)

    def abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception as e:  # billed parts are left; COS lifecycle rules can clear them
            self.log.warning("could not abort the multipart upload", key=key, error=str(e))
