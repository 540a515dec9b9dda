"""IdempotencyKey: a second start with the same key and the same parameters within 24 h does not
start a second task; the same key with other parameters is a conflict naming the key.

    store.claim(Scope(function, sdk_app_id, key), fingerprint(params), request_id) -> Claim

The key is kept where the function already keeps its state, so that no new service is needed:
- push_stream: its Redis (`RedisKeys`, through the one Redis door; key in shared.redis.keys), a
  SET NX with a 24 h TTL: atomic, and expiry is Redis's own. A push with no Redis cannot promise
  anything: IdempotencyKey then fails validation (400 naming it).
- record_stream: the state bucket RECORD_STATE_BUCKET (`BucketKeys`), with create-once writes
  (x-cos-forbid-overwrite, as the recovery's claims): generation N+1 of a key may be created only
  when generation N is older than 24 h, and of two starters racing for it exactly one creates it.

What is compared is a fingerprint of the parameters as validated, secrets left out (a UserSig made
again for the retry is the same request), and so are EventCallback and EventVerbose (how the task
is watched, not what it is: the duplicate's own end event goes to the EventCallback it names). A retry of the same run (SCF redelivering the same request
id) is the original, not a duplicate.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from shared.failures import Failure, Kind

TTL_S = 24 * 3600
KEY_FIELD = "IdempotencyKey"
Outcome = Literal["first", "duplicate", "conflict"]


@dataclass(frozen=True)
class Scope:
    function: str
    sdk_app_id: int
    key: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.function}\n{self.sdk_app_id}\n{self.key}".encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Claim:
    outcome: Outcome
    original_request_id: str


# Fields that say how a caller watches a task, not what the task is: a retry may change them.
NOT_COMPARED = frozenset({KEY_FIELD, "EventCallback", "EventVerbose"})


def fingerprint(params: BaseModel) -> str:
    """The parameters as validated, without NOT_COMPARED; SecretStr fields dump as '**********',
    so a secret's value never counts (nor is it kept)."""
    data = params.model_dump(mode="json", exclude=set(NOT_COMPARED))
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _record(request_id: str, fp: str, now: float) -> str:
    return json.dumps({"RequestId": request_id, "Fingerprint": fp, "At": now})


def _compare(stored: dict[str, Any], fp: str, request_id: str) -> Claim:
    original = str(stored.get("RequestId") or "")
    if original == request_id:
        return Claim("first", original)  # the same run, delivered again
    return Claim("duplicate" if stored.get("Fingerprint") == fp else "conflict", original)


class IdempotencyStore(Protocol):
    def claim(self, scope: Scope, fp: str, request_id: str) -> Claim: ...


def conflict(scope: Scope, claim: Claim) -> Failure:
    return Failure(f"{KEY_FIELD} {scope.key!r} was used within 24 h by request {claim.original_request_id} with "
                   "different parameters; use a new key for a different task",
                   "idempotency_conflict", Kind.CONFLICT,
                   extra={"IdempotencyKey": scope.key, "OriginalRequestId": claim.original_request_id})


def duplicate_result(scope: Scope, claim: Claim, request_id: str) -> dict[str, Any]:
    return {"status": "duplicate", "OriginalRequestId": claim.original_request_id, "IdempotencyKey": scope.key,
            "RequestId": request_id,
            "Message": f"a task with this {KEY_FIELD} and the same parameters was started within 24 h "
                       f"(request {claim.original_request_id}); no second task was started"}


class RedisKeys:
    """In push_stream's Redis: one string per key, created with SET NX EX (24 h)."""

    def __init__(self, client: Any):
        self.client = client

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - the answer is in hand; a close that fails loses nothing
            pass

    def claim(self, scope: Scope, fp: str, request_id: str) -> Claim:
        from shared.redis.keys import idempotency_key

        key = idempotency_key(scope.function, scope.sdk_app_id, scope.digest)
        for _ in range(3):  # the stored one may expire between SET NX and GET
            if self.client.set(key, _record(request_id, fp, time.time()), nx=True, ex=TTL_S):
                return Claim("first", request_id)
            raw = self.client.get(key)
            if raw:
                return _compare(json.loads(raw), fp, request_id)
        return Claim("first", request_id)


class BucketKeys:
    """In the state bucket: `{prefix}idempotency/{digest}.{N}`, each created once (x-cos-forbid-overwrite)."""

    def __init__(self, bucket: Any, prefix: str, already_exists: type[Exception]):
        self.bucket = bucket
        self.prefix = (prefix if not prefix or prefix.endswith("/") else prefix + "/") + "idempotency/"
        self.already_exists = already_exists

    def claim(self, scope: Scope, fp: str, request_id: str, now: float | None = None) -> Claim:
        now = time.time() if now is None else now
        base = f"{self.prefix}{scope.digest}."
        for _ in range(3):
            taken = sorted(int(k[len(base):]) for k, _ in self.bucket.list(base) if k[len(base):].isdigit())
            if taken:
                stored = json.loads(self.bucket.get_bytes(f"{base}{taken[-1]}"))
                if now - float(stored.get("At", 0)) < TTL_S:
                    return _compare(stored, fp, request_id)
            number = (taken[-1] if taken else 0) + 1
            try:
                self.bucket.put_bytes(f"{base}{number}", _record(request_id, fp, now).encode(), "application/json",
                                      create_only=True)
            except self.already_exists:
                continue  # another start created it first: read what it wrote
            if taken:  # older generations have no use left
                try:
                    self.bucket.delete([f"{base}{n}" for n in taken])
                except Exception:  # noqa: BLE001 - tidying only
                    pass
            return Claim("first", request_id)
        raise Failure(f"{KEY_FIELD} {scope.key!r}: could not be recorded (too many starts at once); try again",
                      "idempotency_busy", Kind.UNAVAILABLE)


def state_bucket_keys(log: Any) -> BucketKeys:
    """The store of record_stream's and recognize_stream's keys: the deployment's state bucket
    (RECORD_STATE_BUCKET, with the execution role's credentials), created-once objects."""
    from shared.cos.client import CosBucket
    from shared.cos.credentials import resolve_credentials
    from shared.cos.errors import AlreadyExists
    from shared.runtime import RetryPolicy
    from shared.settings import settings

    s = settings()
    if not s.record_state_bucket:
        raise Failure("IdempotencyKey needs the deployment's RECORD_STATE_BUCKET; it is not set",
                      "configuration_error", Kind.INTERNAL)
    bucket = CosBucket(s.record_state_bucket, s.record_state_region or s.tencentcloud_region or "",
                       resolve_credentials(), policy=RetryPolicy(tries=6, backoff=0.5, max_backoff=8.0), log=log)
    return BucketKeys(bucket, s.record_state_prefix, AlreadyExists)
