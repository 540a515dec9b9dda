"""SCF 2018-04-16 on the Cloud API 3.0 endpoint: Invoke, InvokeFunction, GetAsyncEventStatus, TerminateAsyncEvent,
ListAsyncEvents (routed by urls.py). Field names are those of tencentcloud-sdk-python's
scf/v20180416/models.py; errors carry SCF's codes (MissingParameter, ResourceNotFound.AsyncEvent,
FailedOperation.AsyncEventStatus, ...).
"""
from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, Callable, Mapping

from emulator.cloudapi import ApiError, CloudApiResponse
from shared.failures import Failure
from shared.gateway import parse_json

from .exceptions import ScfError
from .models import DEFAULT_NAMESPACE, EVENT, INVOKE_TYPES, LATEST, REQUEST_RESPONSE, TIME_FORMAT, Run, Scf, Status

SYNC_WAIT_LIMIT_S = 300.0  # SCF's synchronous Invoke answers within 300 s; longer work must be async
MAX_LIST_LIMIT = 100


def _in(moment: datetime | None, interval: tuple[datetime | None, datetime | None]) -> bool:
    start, end = interval
    if start is None and end is None:
        return True
    if moment is None:
        return False
    return (start is None or moment >= start) and (end is None or moment < end)


class ScfResponse(CloudApiResponse):
    MISSING = "MissingParameter"
    INVALID = "InvalidParameterValue.{name}"

    def __init__(self, scf: Scf, params: Mapping[str, Any]):
        super().__init__(params)
        self.scf = scf

    def call(self, method: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        try:
            return method(self)
        except ScfError as e:
            raise ApiError(e.code, e.message) from None

    # --- parameters SCF reads its own way -----------------------------------------------------

    def _namespace(self) -> None:
        namespace = self.get_param("Namespace") or DEFAULT_NAMESPACE
        if namespace != DEFAULT_NAMESPACE:
            raise ApiError("ResourceNotFound.Namespace", f"The namespace `{namespace}` does not exist; use `default`.")

    def _qualifier(self) -> None:
        qualifier = self.get_param("Qualifier") or LATEST
        if qualifier != LATEST:
            raise ApiError("ResourceNotFound.Version", f"The version `{qualifier}` does not exist; use `$LATEST`.")

    def _interval(self, name: str) -> tuple[datetime | None, datetime | None]:
        value = self.get_param(name)
        if value is None:
            return None, None
        if not isinstance(value, dict):
            raise self.invalid(name, f"`{name}` must be an object {{Start, End}}.", "InvalidParameterValue.DateTime")
        bounds: list[datetime | None] = []
        for key in ("Start", "End"):
            text = value.get(key)
            if text in (None, ""):
                bounds.append(None)
                continue
            try:
                bounds.append(datetime.strptime(str(text), "%Y-%m-%d %H:%M:%S"))
            except ValueError:
                raise self.invalid(name, f"`{name}.{key}` must look like 2024-01-31 12:00:00 (got {text!r}).",
                                   "InvalidParameterValue.DateTime") from None
        return bounds[0], bounds[1]

    def _event(self, name: str = "ClientContext") -> Any:
        """The event: the JSON string in ClientContext (Invoke) or Event (InvokeFunction); none: {}."""
        context = self.get_param(name)
        if context in (None, ""):
            return {}
        if not isinstance(context, str):
            raise self.invalid(name, f"`{name}` must be a JSON string.")
        try:  # bad JSON, too deep, a number too long: the caller's error, not ours
            return parse_json(context, f"`{name}`")
        except Failure as e:
            raise self.invalid(name, f"{e.message}.") from None

    # --- the actions ----------------------------------------------------------------------------

    def invoke(self) -> dict[str, Any]:
        name = self.get_str_param("FunctionName", required=True)
        self._namespace()
        self._qualifier()
        invoke_type = self.get_choice_param("InvocationType", INVOKE_TYPES, REQUEST_RESPONSE,
                                            code="InvalidParameterValue.InvokeType")
        event = self._event()
        run = self.scf.invoke(name, event, invoke_type, source="invoke")
        if invoke_type == EVENT:
            return {"Result": {"FunctionRequestId": run.request_id, "RetMsg": "Async run task submitted", "Log": "",
                               "ErrMsg": "", "MemUsage": 0, "Duration": 0, "BillDuration": 0, "InvokeResult": 0}}
        wait = min(SYNC_WAIT_LIMIT_S, run.function.time_limit_ms / 1000.0 + 5.0)
        if not self.scf.wait(run, wait):
            raise ApiError("FailedOperation.InvokeFunction",
                           f"The function did not return within {wait:g} s; it keeps running as {run.request_id}. "
                           "Use InvocationType Event for long work.")
        return {"Result": _sync_result(run, with_log=self.get_param("LogType") == "Tail")}

    def invoke_function(self) -> dict[str, Any]:
        """InvokeFunction: the synchronous invoke (`tccli scf InvokeFunction`), its event in `Event`."""
        name = self.get_str_param("FunctionName", required=True)
        self._namespace()
        self._qualifier()
        run = self.scf.invoke(name, self._event("Event"), REQUEST_RESPONSE, source="invoke")
        wait = min(SYNC_WAIT_LIMIT_S, run.function.time_limit_ms / 1000.0 + 5.0)
        if not self.scf.wait(run, wait):
            raise ApiError("FailedOperation.InvokeFunction",
                           f"The function did not return within {wait:g} s; it keeps running as {run.request_id}.")
        return {"Result": _sync_result(run, with_log=self.get_param("LogType") == "Tail")}

    def get_async_event_status(self) -> dict[str, Any]:
        run = self.scf.get(self.get_str_param("InvokeRequestId", required=True))
        return {"Result": {"Status": run.status.value, "StatusCode": run.status_code,
                           "InvokeRequestId": run.request_id}}

    def terminate_async_event(self) -> dict[str, Any]:
        name = self.get_str_param("FunctionName", required=True)
        request_id = self.get_str_param("InvokeRequestId", required=True)
        self._namespace()
        self.scf.terminate(name, request_id, grace=self.get_bool_param("GraceShutdown"))
        return {}

    def list_async_events(self) -> dict[str, Any]:
        name = self.get_str_param("FunctionName", required=True)
        self._namespace()
        self._qualifier()
        self.scf.function(name)
        valid = {s.value for s in Status}
        statuses = self.get_list_param("Status", what=f"a list of {', '.join(sorted(valid))}",
                                       each=lambda s: s in valid)
        invoke_types = self.get_list_param("InvokeType", what="a list of strings")
        order = self.get_choice_param("Order", ("ASC", "DESC"), "DESC")
        order_by = self.get_choice_param("Orderby", ("StartTime", "EndTime"), "StartTime",
                                         code="InvalidParameterValue.OrderBy")
        offset = self.get_int_param("Offset", 0, lo=0, hi=1 << 31)
        limit = self.get_int_param("Limit", 20, lo=1, hi=MAX_LIST_LIMIT)
        started, ended = self._interval("StartTimeInterval"), self._interval("EndTimeInterval")
        request_id = self.get_param("InvokeRequestId")
        runs = [r for r in self.scf.runs(name)
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
