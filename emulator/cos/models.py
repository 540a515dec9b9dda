"""The COS service's state, apart from HTTP: keys that may sign, the bucket (kept in moto's S3
backend), objects persisted under a state directory, and the failures tests ask for."""
from __future__ import annotations

import os
import random
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import moto.s3.models as moto_s3
from moto.s3.models import s3_backends

from .signature import Credential

# COS accepts parts down to 1 MB (S3 wants 5 MB); moto reads this module global when completing.
COS_PART_MIN_SIZE = 1024 * 1024
moto_s3.S3_UPLOAD_PART_MIN_SIZE = COS_PART_MIN_SIZE


@dataclass
class Fault:
    kind: str  # "status" (answer with an error) or "drop" (close the connection unanswered)
    status: int = 503
    code: str = "ServiceUnavailable"
    message: str = "Service is unavailable now, please try again later."
    when: str | None = None  # only requests whose "METHOD key?query" contains this


@dataclass
class FaultPlan:
    """Failures injected by tests: the next N requests fail, or every request is refused."""

    _queue: list[Fault] = field(default_factory=list)
    _deny: Fault | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, n: int = 1, status: int = 503, code: str = "ServiceUnavailable",
                  message: str = "Service is unavailable now, please try again later.", when: str | None = None) -> None:
        with self._lock:
            self._queue.extend(Fault("status", status, code, message, when) for _ in range(n))

    def drop_next(self, n: int = 1, when: str | None = None) -> None:
        with self._lock:
            self._queue.extend(Fault("drop", when=when) for _ in range(n))

    def deny(self, code: str = "AccessDenied", message: str = "Access Denied.", status: int = 403) -> None:
        with self._lock:
            self._deny = Fault("status", status, code, message)

    def allow(self) -> None:
        with self._lock:
            self._deny = None

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._deny = None

    def take_transient(self, request: str) -> Fault | None:
        """The next queued failure that applies to `request` ("METHOD key?query"), consumed.
        Checked before the signature: the server is down, whoever asks."""
        with self._lock:
            for i, fault in enumerate(self._queue):
                if fault.when is None or fault.when in request:
                    return self._queue.pop(i)
            return None

    @property
    def denial(self) -> Fault | None:
        """A standing refusal (checked after the signature: the key is valid but not allowed)."""
        with self._lock:
            return self._deny


@dataclass
class RequestRecord:
    method: str
    bucket: str
    key: str
    query: str
    status: int


class CosState:
    """One bucket of one emulated account. moto's S3 backend stores the objects under a name of
    its own (`moto_bucket`: moto's bucket names are global to the process), so that two services
    in one process, even with the same COS bucket name, do not see each other."""

    def __init__(self, region: str, bucket: str, credentials: list[Credential], state_dir: str | os.PathLike | None):
        self.region = region
        self.bucket = bucket
        self.credentials = {c.secret_id: c for c in credentials}
        self.account_id = "%012d" % random.randrange(10**11, 10**12)
        self.moto_bucket = f"cos-{bucket[:40]}-{self.account_id}"
        self.faults = FaultPlan()
        self.requests: list[RequestRecord] = []
        self._objects_dir = Path(state_dir) / "cos" / bucket if state_dir else None
        self._lock = threading.Lock()

    @property
    def backend(self) -> moto_s3.S3Backend:
        return s3_backends[self.account_id]["aws"]

    def add_credential(self, cred: Credential) -> None:
        self.credentials[cred.secret_id] = cred

    def open(self) -> None:
        self.backend.create_bucket(self.moto_bucket, "us-east-1")
        if self._objects_dir and self._objects_dir.is_dir():
            for path in sorted(self._objects_dir.rglob("*")):
                if path.is_file() and not path.name.endswith(".partial"):
                    key = path.relative_to(self._objects_dir).as_posix()
                    self.backend.put_object(self.moto_bucket, key, path.read_bytes())

    def close(self) -> None:
        """Forget the bucket in memory (what was persisted stays on disk)."""
        backend = self.backend
        bucket = backend.buckets.get(self.moto_bucket)
        if bucket is None:
            return
        for upload_id in list(bucket.multiparts):
            bucket.multiparts.pop(upload_id, None)
        for key in list(bucket.keys):
            backend.delete_object(self.moto_bucket, key)
        backend.delete_bucket(self.moto_bucket)

    def objects(self) -> list[tuple[str, int, datetime]]:
        """(key, size, last modified UTC) of every object, by key (for the console)."""
        backend = self.backend
        keys = backend.list_objects(backend.get_bucket(self.moto_bucket), None, None, None, None)[0]
        return [(k.name, k.size, k.last_modified) for k in keys]

    def read(self, key: str) -> bytes | None:
        obj = self.backend.get_object(self.moto_bucket, key)
        return None if obj is None else bytes(obj.value)

    # --- persistence: write-through after each change the wire reports as done ----------------

    def _path_for(self, key: str) -> Path | None:
        if self._objects_dir is None:
            return None
        path = (self._objects_dir / key).resolve()
        root = self._objects_dir.resolve()
        if root != path and root not in path.parents:
            return None  # a key like "../x" is stored in memory only, never outside the directory
        return path

    def persist(self, key: str) -> None:
        path = self._path_for(key)
        if path is None:
            return
        obj = self.backend.get_object(self.moto_bucket, key)
        with self._lock:
            if obj is None:
                path.unlink(missing_ok=True)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".partial")
            tmp.write_bytes(obj.value)
            os.replace(tmp, path)

    def record(self, rec: RequestRecord) -> None:
        with self._lock:
            self.requests.append(rec)
            del self.requests[:-1000]  # bounded: tests look at the last few
