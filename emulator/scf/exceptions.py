"""Errors carrying SCF's own codes; the wire (gateway, Cloud API) decides how each one is shown."""
from __future__ import annotations


class ScfError(Exception):
    """`code` is the API 3.0 error code; `status` the function status code SCF reports (432, ...)."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def function_not_found(name: str) -> ScfError:
    return ScfError("ResourceNotFound.Function", f"The function `{name}` does not exist.", 404)


def event_not_found(request_id: str) -> ScfError:
    return ScfError("ResourceNotFound.AsyncEvent", f"No async event with InvokeRequestId `{request_id}`.", 404)


def concurrency_exceeded(limit: int) -> ScfError:
    # SCF answers a concurrency overrun with status 432 ResourceLimitReached; at the Cloud API it is
    # the concurrency quota (LimitExceeded.TotalConcurrencyMemory).
    return ScfError("LimitExceeded.TotalConcurrencyMemory",
                    f"ResourceLimitReached: {limit} invocations are already running, the concurrency limit. "
                    "Wait for one to finish or stop one with TerminateAsyncEvent.", 432)


def request_too_large(size: int, limit: int) -> ScfError:
    return ScfError("InvalidParameterValue.ClientContext",
                    f"RequestTooLarge: the event is {size} bytes; an async event may be at most {limit} bytes.", 406)
