"""The one way the Cloud API services (SCF, TRTC) read an action's parameters, as moto's BaseResponse
gives every service `_get_param` / `_get_int_param` / `_get_bool_param`.

A service subclasses `CloudApiResponse`, names how it spells a missing or bad parameter's error code
(SCF: `MissingParameter` / `InvalidParameterValue.<name>`, TRTC: `MissingParameter.<name>` /
`InvalidParameter.<name>`), and writes each action as a method reading `self.params`:

    class ScfResponse(CloudApiResponse):
        def get_async_event_status(self) -> dict[str, Any]:
            run = self.scf.get(self.get_str_param("InvokeRequestId", required=True))

A POST carries the parameters as JSON; a GET as query strings, so every getter takes the string
form too ("5", "true"), and a list arrives flattened (`UserIds.0=a&UserIds.1=b`).
"""
from __future__ import annotations

from typing import Any, Callable, Literal, Mapping, overload

from .exceptions import ApiError

Action = Callable[[dict[str, Any]], dict[str, Any]]


class CloudApiResponse:
    MISSING = "MissingParameter"  # "{name}" is replaced by the parameter's name
    INVALID = "InvalidParameterValue.{name}"

    def __init__(self, params: Mapping[str, Any]):
        self.params = params

    # --- errors --------------------------------------------------------------------------------

    def missing(self, name: str) -> ApiError:
        return ApiError(self.MISSING.format(name=name), f"The request is missing a required parameter `{name}`.")

    def invalid(self, name: str, message: str, code: str | None = None) -> ApiError:
        """A bad value: `message` says what was expected; `code` when the service names the error
        after something else than the parameter (SCF's `InvocationType` -> InvalidParameterValue.InvokeType)."""
        return ApiError(code or self.INVALID.format(name=name), message)

    # --- getters -------------------------------------------------------------------------------

    def get_param(self, name: str, default: Any = None, *, required: bool = False) -> Any:
        """The value as sent; a required one must be there (null is there, and then a bad value)."""
        if name not in self.params:
            if required:
                raise self.missing(name)
            return default
        return self.params[name]

    @overload
    def get_str_param(self, name: str, default: str, *, required: bool = ...) -> str: ...
    @overload
    def get_str_param(self, name: str, default: None = ..., *, required: Literal[True]) -> str: ...
    @overload
    def get_str_param(self, name: str, default: None = ..., *, required: bool = ...) -> str | None: ...

    def get_str_param(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        """A string; absent, null or empty is not given."""
        value = self.params.get(name)
        if value in (None, ""):
            if required:
                raise self.missing(name)
            return default
        if not isinstance(value, str):
            raise self.invalid(name, f"`{name}` must be a string (got {value!r}).")
        return value

    @overload
    def get_int_param(self, name: str, default: int, *, required: bool = ..., lo: int | None = ...,
                      hi: int | None = ...) -> int: ...
    @overload
    def get_int_param(self, name: str, default: None = ..., *, required: Literal[True], lo: int | None = ...,
                      hi: int | None = ...) -> int: ...
    @overload
    def get_int_param(self, name: str, default: None = ..., *, required: bool = ..., lo: int | None = ...,
                      hi: int | None = ...) -> int | None: ...

    def get_int_param(self, name: str, default: int | None = None, *, required: bool = False,
                      lo: int | None = None, hi: int | None = None) -> int | None:
        """An integer (digits in a string too, never a boolean), within lo..hi when they are given."""
        value = self.get_param(name, required=required)
        if value is None and not required:
            return default
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        in_range = isinstance(value, int) and (lo is None or value >= lo) and (hi is None or value <= hi)
        if isinstance(value, bool) or not in_range:
            what = "an integer" if lo is None or hi is None else f"an integer in {lo}..{hi}"
            raise self.invalid(name, f"`{name}` must be {what} (got {value!r}).")
        return value

    def get_bool_param(self, name: str, default: bool = False) -> bool:
        """true / false (the strings too); absent, null or empty is the default."""
        value = self.params.get(name)
        if value in (None, ""):
            return default
        if value in (True, "true", "True"):
            return True
        if value in (False, "false", "False"):
            return False
        raise self.invalid(name, f"`{name}` must be true or false (got {value!r}).")

    def get_list_param(self, name: str, *, required: bool = False, what: str = "a list",
                       each: Callable[[Any], Any] | None = None) -> list[Any]:
        """A list, from a JSON array or from a GET's `Name.0`, `Name.1`, ...; `what` names the list
        expected in the error, `each` checks an item. Not given is empty; a required one must have items."""
        if name not in self.params:
            flat = sorted((k for k in self.params if k.startswith(name + ".") and k[len(name) + 1:].isdigit()),
                          key=lambda k: int(k[len(name) + 1:]))
            if flat:
                return self._checked_list(name, [self.params[k] for k in flat], required, what, each)
        value = self.get_param(name, required=required)
        if not required and not value:
            return []
        return self._checked_list(name, value, required, what, each)

    def _checked_list(self, name: str, value: Any, required: bool, what: str,
                      each: Callable[[Any], Any] | None) -> list[Any]:
        if not isinstance(value, list) or (required and not value) or (each and not all(each(v) for v in value)):
            raise self.invalid(name, f"`{name}` must be {what}.")
        return value

    def get_choice_param(self, name: str, choices: tuple[str, ...], default: str, code: str | None = None) -> str:
        """One of `choices`; absent or empty is the default."""
        value = self.params.get(name) or default
        if value not in choices:
            raise self.invalid(name, f"`{name}` must be {' or '.join(choices)} (got {value!r}).", code)
        return str(value)

    # --- running an action -----------------------------------------------------------------------

    def call(self, method: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        """Run one action on this request; a service overrides it to turn its own errors into ApiError."""
        return method(self)


def action_handlers(table: Mapping[str, Callable[[Any], dict[str, Any]]],
                    make: Callable[[Mapping[str, Any]], CloudApiResponse]) -> dict[str, Action]:
    """{action name: handler of the parameters} for CloudApi.register, from a service's urls.py table
    {action name: method}: each request gets its own response object, `make(params)`."""
    def bind(method: Callable[[Any], dict[str, Any]]) -> Action:
        return lambda params: make(params).call(method)
    return {name: bind(method) for name, method in table.items()}
