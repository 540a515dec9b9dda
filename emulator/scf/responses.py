"""SCF 2018-04-16 on the Cloud API 3.0 endpoint: Invoke, GetAsyncEventStatus, TerminateAsyncEvent,
ListAsyncEvents. Field names are those of tencentcloud-sdk-python's scf/v20180416/models.py; errors
carry SCF's codes (MissingParameter, ResourceNotFound.AsyncEvent, FailedOperation.AsyncEventStatus, ...).
"""
from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, Callable

from emulator.cloudapi import ApiError, CloudApi
from shared.gateway import UserError, parse_json

from .exceptions import ScfError
from .models import DEFAULT_NAMESPACE, EVENT, INVOKE_TYPES, LATEST, REQUEST_RESPONSE, TIME_FORMAT, Run, Scf, Status

SERVICE = "scf"
VERSION = "2018-04-16"
SYNC_WAIT_LIMIT_S = 300.0  # SCF's synchronous Invoke answers within 300 s; longer work must be async
MAX_LIST_LIMIT = 100

Action = Callable[[dict[str, Any]], dict[str, Any]]


def _api(action: Action) -> Action:
    def wrapped(params: dict[str, Any]) -> dict[str, Any]:
        try:
            return action(params)
        except ScfError as e:
            raise ApiError(e.code, e.message) from None
    return wrapped


def _required_str(params: dict[str, Any], name: str) -> str:
    if name not in params or params[name] in (None, ""):
        raise ApiError("MissingParameter", f"The request is missing a required parameter `{name}`.")
    value = params[name]
    if not isinstance(value, str):
        raise ApiError(f"InvalidParameterValue.{name}", f"`{name}` must be a string (got {value!r}).")
    return value


def _namespace_and_qualifier(params: dict[str, Any]) -> None:
    namespace = params.get("Namespace") or DEFAULT_NAMESPACE
    if namespace != DEFAULT_NAMESPACE:
        raise ApiError("ResourceNotFound.Namespace", f"The namespace `{namespace}` does not exist; use `default`.")
    qualifier = params.get("Qualifier") or LATEST
    if qualifier != LATEST:
        raise ApiError("ResourceNotFound.Version", f"The version `{qualifier}` does not exist; use `$LATEST`.")


def _bool(params: dict[str, Any], name: str) -> bool:
    value = params.get(name)
    if value in (None, "", False, "false", "False"):
        return False
    if value in (True, "true", "True"):
        return True
    raise ApiError(f"InvalidParameterValue.{name}", f"`{name}` must be true or false (got {value!r}).")


def _int(params: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ApiError(f"InvalidParameterValue.{name}", f"`{name}` must be an integer in {lo}..{hi} (got {value!r}).")
    return value


def _interval(params: dict[str, Any], name: str) -> tuple[datetime | None, datetime | None]:
    value = params.get(name)
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise ApiError("InvalidParameterValue.DateTime", f"`{name}` must be an object {{Start, End}}.")
    bounds: list[datetime | None] = []
    for key in ("Start", "End"):
        text = value.get(key)
        if text in (None, ""):
            bounds.append(None)
            continue
        try:
            bounds.append(datetime.strptime(str(text), "%Y-%m-%d %H:%M:%S"))
        except ValueError:
            raise ApiError("InvalidParameterValue.DateTime",
                           f"`{name}.{key}` must look like 2024-01-31 12:00:00 (got {text!r}).") from None
    return bounds[0], bounds[1]


def _in(moment: datetime | None, interval: tuple[datetime | None, datetime | None]) -> bool:
    start, end = interval
    if start is None and end is None:
        return True
    if moment is None:
        return False
    return (start is None or moment >= start) and (end is None or moment < end)


def actions(scf: Scf) -> dict[str, Action]:
    def invoke(params: dict[str, Any]) -> dict[str, Any]:
        name = _required_str(params, "FunctionName")
        _namespace_and_qualifier(params)
        invoke_type = params.get("InvocationType") or REQUEST_RESPONSE
        if invoke_type not in INVOKE_TYPES:
            raise ApiError("InvalidParameterValue.InvokeType",
                           f"`InvocationType` must be Event or RequestResponse (got {invoke_type!r}).")
        context = params.get("ClientContext")
        event: Any = {}
        if context not in (None, ""):
            if not isinstance(context, str):
                raise ApiError("InvalidParameterValue.ClientContext", "`ClientContext` must be a JSON string.")
            try:  # bad JSON, too deep, a number too long: the caller's error, not ours
                event = parse_json(context, "`ClientContext`")
            except UserError as e:
                raise ApiError("InvalidParameterValue.ClientContext", f"{e.message}.") from None
        run = scf.invoke(name, event, invoke_type, source="invoke")
        if invoke_type == EVENT:
            return {"Result": {"FunctionRequestId": run.request_id, "RetMsg": "Async run task submitted", "Log": "",
                               "ErrMsg": "", "MemUsage": 0, "Duration": 0, "BillDuration": 0, "InvokeResult": 0}}
        wait = min(SYNC_WAIT_LIMIT_S, run.function.time_limit_ms / 1000.0 + 5.0)
        if not scf.wait(run, wait):
            raise ApiError("FailedOperation.InvokeFunction",
                           f"The function did not return within {wait:g} s; it keeps running as {run.request_id}. "
                           "Use InvocationType Event for long work.")
        return {"Result": _sync_result(run, with_log=params.get("LogType") == "Tail")}

    def get_status(params: dict[str, Any]) -> dict[str, Any]:
        run = scf.get(_required_str(params, "InvokeRequestId"))
        return {"Result": {"Status": run.status.value, "StatusCode": run.status_code,
                           "InvokeRequestId": run.request_id}}

    def terminate(params: dict[str, Any]) -> dict[str, Any]:
        name = _required_str(params, "FunctionName")
        request_id = _required_str(params, "InvokeRequestId")
        _namespace_and_qualifier({"Namespace": params.get("Namespace")})
        scf.terminate(name, request_id, grace=_bool(params, "GraceShutdown"))
        return {}

    def list_events(params: dict[str, Any]) -> dict[str, Any]:
        name = _required_str(params, "FunctionName")
        _namespace_and_qualifier(params)
        scf.function(name)
        statuses = params.get("Status") or []
        valid = {s.value for s in Status}
        if not isinstance(statuses, list) or any(s not in valid for s in statuses):
            raise ApiError("InvalidParameterValue.Status", f"`Status` must be a list of {', '.join(sorted(valid))}.")
        invoke_types = params.get("InvokeType") or []
        if not isinstance(invoke_types, list):
            raise ApiError("InvalidParameterValue.InvokeType", "`InvokeType` must be a list of strings.")
        order = params.get("Order") or "DESC"
        if order not in ("ASC", "DESC"):
            raise ApiError("InvalidParameterValue.Order", f"`Order` must be ASC or DESC (got {order!r}).")
        order_by = params.get("Orderby") or "StartTime"
        if order_by not in ("StartTime", "EndTime"):
            raise ApiError("InvalidParameterValue.OrderBy", f"`Orderby` must be StartTime or EndTime (got {order_by!r}).")
        offset = _int(params, "Offset", 0, 0, 1 << 31)
        limit = _int(params, "Limit", 20, 1, MAX_LIST_LIMIT)
        started, ended = _interval(params, "StartTimeInterval"), _interval(params, "EndTimeInterval")
        request_id = params.get("InvokeRequestId")
        runs = [r for r in scf.runs(name)
                if r.invoke_type == EVENT
                and (not statuses or r.status.value in statuses)
                and (not invoke_types or r.invoke_type in invoke_types)
                and (not request_id or r.request_id == request_id)
                and _in(r.started_at, started) and _in(r.ended_at, ended)]
        key: Callable[[Run], Any] = ((lambda r: r.started_at) if order_by == "StartTime"
                                     else (lambda r: r.ended_at or datetime.max))
        runs.sort(key=key, reverse=order == "DESC")
        page = runs[offset:offset + limit]
        return {"TotalCount": len(runs), "EventList": [
            {"InvokeRequestId": r.request_id, "InvokeType": r.invoke_type, "Qualifier": LATEST,
             "Status": r.status.value, "StartTime": r.started_at.strftime(TIME_FORMAT),
             "EndTime": r.ended_at.strftime(TIME_FORMAT) if r.ended_at else ""}
            for r in page]}

    return {
        "Invoke": _api(invoke),
        "GetAsyncEventStatus": _api(get_status),
        "TerminateAsyncEvent": _api(terminate),
        "ListAsyncEvents": _api(list_events),
    }


def _sync_result(run: Run, with_log: bool) -> dict[str, Any]:
    ok = run.status is Status.FINISHED
    return {
        "FunctionRequestId": run.request_id,
        "RetMsg": json.dumps(run.result, ensure_ascii=False) if run.error is None else "",
        "ErrMsg": json.dumps({**run.error, "statusCode": run.status_code}, ensure_ascii=False) if run.error else "",
        "Log": run.read_log() if with_log else "",
        "MemUsage": run.max_rss_kb * 1024,
        "Duration": run.duration_ms,
        "BillDuration": int(math.ceil(run.duration_ms)),
        "InvokeResult": 0 if ok else -1,
    }


def register(cloud_api: CloudApi, scf: Scf) -> None:
    cloud_api.register(SERVICE, VERSION, actions(scf))
