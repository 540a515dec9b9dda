"""push_control's side of the control channel: prove the call's right, find the push, deliver, wait.

One call (`send`), answered within ANSWER_BUDGET_S (2 s) of its start:
  0. the call must present the push's `userSig` or its `controlToken` (shared.push.control.proof);
     neither -> forbidden, before anything else;
  1. connect through the Redis door (REDIS_ALLOWLIST: a refused redisHost is invalid, naming it);
  2. find the push: by requestId, or the user key gives the requestId; read its registration and
     check the credential against it (against a dummy when there is none: the same work, so the
     time does not tell whether the push exists); no match -> forbidden; no run record -> not found
     (the ended record, when there is one, says how it ended; a superseded push names the newer);
  3. deliver it in one script, atomic against the push's unregistering: only while the run record
     exists and is not superseded, RPUSH "<Redis TIME in ms> <json>" (the time stamp lets the push
     know, on Redis's clock, how much of the budget is left);
  4. wait (BLPOP) for the reply until the budget runs out -> the push's own answer;
  5. no reply: LREM the command. Removed: the push never took it (stalled, or dying) -> conflict, and
     nothing can apply it later. Not removed: the push took it, and a push never applies a command
     past its deadline (ControlInbox.expire_overdue) -> conflict as well.
Redis failing anywhere -> unavailable, in our words only (nothing the far side sent).

Every refusal is a shared.failures.Failure of a Kind; push_control's edge (shared.gateway) maps the
kind to the HTTP status (403/404/409/400/503).
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Optional, cast

import redis

from shared.contracts.control import ControlParams
from shared.failures import Failure, Kind
from shared.redis.address import RedisAddress
from shared.redis.connection import RedisRefused, RedisUnavailable, close_quietly, connect, failed
from shared.redis.keys import ended_key, inbox_key, reply_key, run_key, user_key
from shared.runtime import Invocation, RunLogger, get_logger

from . import proof
from .commands import (
    ANSWER_BUDGET_S,
    ANSWER_MARGIN_S,
    APPLY_BUDGET_S,
    MIN_APPLY_BUDGET_S,
    REGISTRY_TTL_S,
    REPLY_MARGIN_S,
    SOCKET_TIMEOUT_S,
    read_answer,
)

# KEYS: run, inbox. ARGV: the command's JSON, inbox ttl.
# Returns {1, stored} delivered, {2, supersededBy} superseded, {0} no such push.
_DELIVER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local newer = redis.call('HGET', KEYS[1], 'supersededBy')
if newer then return {2, newer} end
local t = redis.call('TIME')
local stored = tostring(t[1] * 1000 + math.floor(t[2] / 1000)) .. ' ' .. ARGV[1]
redis.call('RPUSH', KEYS[2], stored)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return {1, stored}
"""

BLOCK_GRANULARITY_S = 0.12  # Redis may end a BLPOP up to its cron tick (100 ms at hz 10) late
CREDENTIALS_REQUIRED = ("userSig or controlToken required: a control call must present the userSig the push "
                        "was started with, or the controlToken given to push_stream")


def _refused(reason: str, message: str, kind: Kind, **extra: Any) -> Failure:
    return Failure(message, reason, kind, extra=extra)


def send(params: ControlParams, *, started: Optional[float] = None,
         log: Optional[RunLogger] = None) -> dict[str, Any]:
    """Deliver the call's command to the running push it names and wait for its answer.

    Returns the applied answer ({"applied": true, "requestId", "state", ...}); raises a Failure:
    FORBIDDEN neither credential, or it does not match; INVALID REDIS_ALLOWLIST refuses the
    redisHost; NOT_FOUND no running push matches; CONFLICT the push cannot apply it (its reason; or
    the call names no Redis and the function has no REDIS_URL; or no answer in time); UNAVAILABLE
    Redis unreachable. Within ANSWER_BUDGET_S of `started` (time.monotonic(); default now)."""
    started = time.monotonic() if started is None else started
    log = log or get_logger()
    user_sig = params.userSig.get_secret_value() if params.userSig else None
    token = params.controlToken.get_secret_value() if params.controlToken else None
    if not (user_sig or token):
        raise _refused("forbidden", CREDENTIALS_REQUIRED, Kind.FORBIDDEN)
    answer_by = started + ANSWER_BUDGET_S - ANSWER_MARGIN_S
    address = params.redis_address
    if address is None:
        raise _refused("no_redis", "the push has no Redis that push_control knows of: a push can be controlled "
                       "only when it has one (redis true, or REDIS_URL), and this call names none (redisHost) "
                       "while push_control has no REDIS_URL", Kind.CONFLICT)
    try:
        client = connect(address, timeout_s=SOCKET_TIMEOUT_S, socket_timeout_s=ANSWER_BUDGET_S + 0.5)
    except RedisRefused as e:
        raise _refused("invalid_parameters", f"invalid parameters: {e}", Kind.INVALID) from None
    except RedisUnavailable as e:
        raise _refused("redis_unavailable", f"{e}; nothing was sent", Kind.UNAVAILABLE) from None
    try:
        return _Call(client, params, address, answer_by, log).run(user_sig, token)
    except (redis.RedisError, OSError) as e:
        raise _refused("redis_unavailable", failed(address, e, "answer mid-call"), Kind.UNAVAILABLE) from None
    finally:
        close_quietly(client)


class _Call:
    """One control call on a connected Redis."""

    def __init__(self, client: "redis.Redis", params: ControlParams, address: RedisAddress, answer_by: float,
                 log: RunLogger):
        self.client, self.params, self.address, self.answer_by, self.log = client, params, address, answer_by, log

    def _hash(self, key: str) -> dict[str, str]:
        return cast(dict[str, str], self.client.hgetall(key))  # decode_responses: redis-py's types cannot say so

    def run(self, user_sig: Optional[str], token: Optional[str]) -> dict[str, Any]:
        p = self.params
        request_id = p.requestId
        if request_id is None:
            assert p.sdkAppId is not None and p.room is not None and p.userId is not None
            found = self.client.get(user_key(p.sdkAppId, p.room, p.userId))
            request_id = None if found is None else str(found)
        # Read a run record even when there is no push to read (the same round trips either way).
        record = self._hash(run_key(request_id or "-"))
        if not proof.proves(record or None, user_sig, token):
            if not record:
                raise self._not_found(request_id)
            raise _refused("forbidden", f"userSig or controlToken does not match {p.target()}: present the "
                           "userSig it was started with, or its controlToken", Kind.FORBIDDEN)
        assert request_id is not None
        if record.get("supersededBy"):
            newer = record["supersededBy"]
            raise _refused("superseded", f"push {request_id} was superseded by push {newer} (the same userId "
                           "entered the room again); control that one", Kind.NOT_FOUND, requestId=request_id,
                           supersededBy=newer)
        mismatch = _mismatch(p, record)
        if mismatch:
            raise _refused("not_running", f"push {request_id} is running, but {mismatch}", Kind.NOT_FOUND,
                           requestId=request_id)
        return self._deliver(request_id)

    def _deliver(self, request_id: str) -> dict[str, Any]:
        p = self.params
        budget_s = min(APPLY_BUDGET_S, self.answer_by - time.monotonic() - REPLY_MARGIN_S)
        if budget_s < MIN_APPLY_BUDGET_S:
            raise _refused("not_acknowledged", "no time was left to send the command (Redis answered slowly); "
                           "nothing was sent", Kind.CONFLICT, requestId=request_id)
        command_id = uuid.uuid4().hex
        command: dict[str, Any] = {"id": command_id, "action": p.action, "budgetMs": int(budget_s * 1000)}
        if p.videoSrc is not None:
            command["videoSrc"] = p.videoSrc
        if p.seekSecond is not None:
            command["seekSecond"] = p.seekSecond
        if p.volume is not None:
            command["volume"] = p.volume
        delivered = self.client.register_script(_DELIVER)(keys=[run_key(request_id), inbox_key(request_id)],
                                                           args=[json.dumps(command), REGISTRY_TTL_S])
        if int(delivered[0]) == 0:
            raise self._not_found(request_id)
        if int(delivered[0]) == 2:
            raise _refused("superseded", f"push {request_id} was superseded by push {delivered[1]}; control "
                           "that one", Kind.NOT_FOUND, requestId=request_id, supersededBy=delivered[1])
        stored = delivered[1]
        self.log.info("control: command sent", requestId=request_id, action=p.action, commandId=command_id,
                      budgetMs=command["budgetMs"])
        replies = reply_key(request_id, command_id)
        got = self._wait_for_reply(replies, self.answer_by)
        if got is None:
            if int(self.client.lrem(inbox_key(request_id), 1, stored)) == 1:
                raise _refused("not_acknowledged", f"push {request_id} did not take the command within "
                               f"{ANSWER_BUDGET_S:g} s (it may be stalled or ending); it was withdrawn and "
                               "nothing was changed", Kind.CONFLICT, requestId=request_id)
            got = self._wait_for_reply(replies, time.monotonic() + 0.02)  # it may have come meanwhile
            if got is None:
                raise _refused("not_acknowledged", f"push {request_id} took the command but did not answer "
                               f"within {ANSWER_BUDGET_S:g} s; a push never applies a command past its deadline, "
                               "so nothing was changed (ask with action status)", Kind.CONFLICT,
                               requestId=request_id)
        try:
            return read_answer(got)
        except (ValueError, KeyError, TypeError):
            raise _refused("not_acknowledged", f"push {request_id} answered with something that is not an "
                           "answer", Kind.CONFLICT, requestId=request_id) from None

    def _not_found(self, request_id: Optional[str]) -> Failure:
        p = self.params
        if request_id:
            ended = self._hash(ended_key(request_id))
            if ended.get("supersededBy"):
                return _refused("superseded", f"push {request_id} was superseded by push {ended['supersededBy']} "
                                "(the same userId entered the room again); control that one", Kind.NOT_FOUND,
                                requestId=request_id, supersededBy=ended["supersededBy"])
            if ended:
                when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(ended.get("endedAt") or 0)))
                return _refused("not_running", f"push {request_id} is no longer running: it ended at {when} "
                                f"({ended.get('reason') or 'unknown'})", Kind.NOT_FOUND, requestId=request_id,
                                endedReason=ended.get("reason"))
        in_where = (f" in {self.address.where} (a push is found only in the Redis it runs "
                    "with: redisHost/redisPort/redisDb of its call, or REDIS_URL)")
        return _refused("not_running", f"no running push matches: {p.target()}{in_where}", Kind.NOT_FOUND,
                        **({"requestId": request_id} if request_id else {}))

    def _wait_for_reply(self, key: str, until: float) -> Optional[str]:
        """The reply, or None at `until` (time.monotonic()): BLPOP for most of the wait, then short
        polls, so that Redis's coarse timeout cannot push the answer past the budget."""
        block_s = until - time.monotonic() - BLOCK_GRANULARITY_S
        if block_s > 0.05:
            got = self.client.blpop([key], timeout=block_s)
            if got is not None:
                return str(cast(Any, got)[1])
        while True:
            value = self.client.lpop(key)
            if value is not None:
                return str(value)
            if time.monotonic() + 0.01 >= until:
                return None
            time.sleep(0.01)


def _mismatch(params: ControlParams, record: dict[str, str]) -> str:
    """When both requestId and the user are given, they must name the same push."""
    if params.requestId is None:
        return ""
    wrong = []
    if params.sdkAppId is not None and str(params.sdkAppId) != record.get("sdkAppId"):
        wrong.append(f"in sdkAppId {record.get('sdkAppId')}, not {params.sdkAppId}")
    if params.room is not None and params.room.key != record.get("room"):
        wrong.append(f"in room {record.get('room')}, not {params.room.key}")
    if params.userId is not None and params.userId != record.get("userId"):
        wrong.append(f"as userId {record.get('userId')}, not {params.userId}")
    return "; ".join(wrong)


def run_control(params: ControlParams, inv: Invocation, log: RunLogger) -> dict[str, Any]:
    """shared.gateway's `work` for push_control: the applied answer, or a Failure of its kind."""
    body = send(params, started=inv.started, log=log)
    log.info("control applied", action=params.action, requestId=body.get("requestId"),
             ms=round((time.monotonic() - inv.started) * 1000, 1), state=body.get("state"))
    return body
