"""The envelope every handler goes through.

SCF calls `main_handler(event, context)` with either an API Gateway trigger event (parameters in
`body`, a JSON string, maybe base64) or the parameters themselves (direct or async Invoke).
`handle()` takes the parameters out, validates them against a pydantic model, runs the work, and
answers in the shape the caller expects: an API Gateway response for a gateway event (400 naming
every bad field on invalid input), the plain result otherwise.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from typing import Any, Callable, Mapping, TypeVar
from urllib.parse import parse_qsl, urlencode

from pydantic import BaseModel, ValidationError

from .failures import Failure, Kind
from .runtime import Invocation, RunLogger, get_logger
from .secrets import MAX_DEPTH, REDACTED, redact

M = TypeVar("M", bound=BaseModel)

_SURROGATE = re.compile("[\ud800-\udfff]")


# The one map from a failure's kind to the API Gateway answer's status code.
HTTP_STATUS: dict[Kind, int] = {
    Kind.INVALID: 400, Kind.FORBIDDEN: 403, Kind.NOT_FOUND: 404, Kind.CONFLICT: 409,
    Kind.INTERNAL: 500, Kind.UPSTREAM: 502, Kind.UNAVAILABLE: 503,
}
KIND_OF_STATUS: dict[int, Kind] = {status: kind for kind, status in HTTP_STATUS.items()}


def is_gateway_event(event: Any) -> bool:
    return isinstance(event, Mapping) and "httpMethod" in event and "requestContext" in event


def extract_params(event: Any) -> dict[str, Any]:
    """The parameters out of a gateway event (JSON body, else form body, plus the query string) or a plain dict."""
    if not isinstance(event, Mapping):
        raise Failure(f"the event must be a JSON object, got {type(event).__name__}", "invalid_parameters")
    if not is_gateway_event(event):
        _check_depth(event, "parameters")
        return dict(event)
    params: dict[str, Any] = {}
    query = event.get("queryString") or event.get("queryStringParameters") or {}
    if isinstance(query, Mapping):
        params.update({k: v for k, v in query.items() if v is not None})
    body, _ = _body_params(event)
    params.update(body or {})
    return params


def _body_params(event: Mapping[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """A gateway event's body as parameters (None when there is none), and whether it was a form."""
    body = event.get("body")
    if body in (None, ""):
        return None, False
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body).decode("utf-8", "replace")
    if isinstance(body, str) and event.get("isBase64Encoded") in (True, "true", "True"):
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as e:
            raise Failure(f"body is marked base64 but does not decode: {e}", "invalid_parameters") from None
    if isinstance(body, Mapping):
        _check_depth(body, "body")
        return dict(body), False
    text = str(body).strip()
    content_type = _header(event, "content-type")
    if "application/x-www-form-urlencoded" in content_type and not text.startswith("{"):
        return dict(parse_qsl(text, keep_blank_values=True)), True
    parsed = parse_json(text, "body")
    if not isinstance(parsed, dict):
        raise Failure(f"body must be a JSON object, got {type(parsed).__name__}", "invalid_parameters")
    return parsed, False


def parse_json(text: str | bytes, what: str = "body") -> Any:
    """`text` as JSON, or a Failure naming `what`: bad syntax, nesting deeper than MAX_DEPTH levels,
    or an integer too long to convert (Python's limit of int digits). The one place a caller's JSON
    is read, so no body can end in a traceback."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise Failure(f"{what} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                        "invalid_parameters") from None
    except RecursionError:  # json's C scanner recurses per level
        raise Failure(f"{what}: nested too deeply (at most {MAX_DEPTH} levels)", "invalid_parameters") from None
    except ValueError:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise Failure(f"{what}: number too large (at most {sys.get_int_max_str_digits()} digits)",
                        "invalid_parameters") from None
    _check_depth(value, what)
    return value


def _check_depth(value: Any, what: str) -> None:
    """Refuse objects/arrays nested deeper than MAX_DEPTH (walked without recursion): what is accepted
    must be validated, logged and recorded without exhausting the stack. Refuse, too, a string or key
    holding a lone surrogate ("\\ud800" is valid JSON syntax but no character: no UTF-8 can carry it,
    so nothing could log, record or send it), naming the top-level field it is in."""
    stack: list[tuple[Any, int, str | None]] = [(value, 1, None)]
    not_text: set[str] = set()  # the fields holding a lone surrogate, all named at once
    while stack:
        v, depth, field = stack.pop()
        if isinstance(v, str):
            if _SURROGATE.search(v):
                not_text.add(field if field is not None else what)
            continue
        if isinstance(v, Mapping):
            if depth > MAX_DEPTH:
                raise Failure(f"{what}: nested too deeply (at most {MAX_DEPTH} levels)", "invalid_parameters")
            for k, c in v.items():
                name = field if field is not None else str(k)
                stack.append((str(k), depth, name))
                stack.append((c, depth + 1, name))
        elif isinstance(v, (list, tuple)):
            if depth > MAX_DEPTH:
                raise Failure(f"{what}: nested too deeply (at most {MAX_DEPTH} levels)", "invalid_parameters")
            stack.extend((c, depth + 1, field) for c in v)
    if not_text:
        names = sorted(not_text)
        surrogate = "a lone surrogate (\\ud800..\\udfff), which is not a character"
        if what == "body":
            raise Failure(f"body is not valid UTF-8 JSON text: {', '.join(names)} hold{'s' if len(names) == 1 else ''} "
                          f"{surrogate}", "invalid_parameters")
        raise Failure("; ".join(f"{name}: holds {surrogate}" for name in names), "invalid_parameters")


def redact_event(event: Any) -> Any:
    """The event as it may be kept in a record (the emulator's run.json). A gateway event's body is
    decoded and parsed as `extract_params` reads it, redacted by field, and kept as text again
    (JSON, or a form); a body that does not parse is not kept at all, since nothing in it can be
    told apart from a secret. Any other event is redacted as it is."""
    if not is_gateway_event(event):
        return redact(event)
    kept = redact({k: v for k, v in event.items() if k != "body"})
    kept["isBase64Encoded"] = False  # the body kept is text, whatever it arrived as
    try:
        body, form = _body_params(event)
    except Failure as e:
        kept["body"] = f"{REDACTED} (not kept: {e.message})"
        return kept
    if body is None:
        kept["body"] = event.get("body")
    elif form:
        kept["body"] = urlencode([(k, str(v)) for k, v in redact(body).items()])
    else:
        kept["body"] = json.dumps(redact(body), ensure_ascii=False)
    return kept


def _header(event: Mapping[str, Any], name: str) -> str:
    headers = event.get("headers") or {}
    if isinstance(headers, Mapping):
        for k, v in headers.items():
            if str(k).lower() == name:
                return str(v).lower()
    return ""


def describe_validation_error(err: ValidationError) -> str:
    """One sentence naming every bad field and what was expected."""
    parts = []
    for e in err.errors(include_url=False):
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "__root__") or "parameters"
        msg = e.get("msg", "invalid")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if e.get("type") == "missing":
            msg = "is required"
        elif e.get("type") == "extra_forbidden":
            msg = "is not a known parameter"
        elif e.get("input") is not None and not isinstance(e["input"], (dict, list)):
            msg = f"{msg} (got {_shown(loc.split('.')[-1], e['input'])})"
        parts.append(f"{loc}: {msg}")
    return "invalid parameters: " + "; ".join(parts)


SHOWN_INPUT_CHARS = 80  # a bad value is quoted in the 400 up to this length


def _shown(field: str, value: Any) -> str:
    """A bad input as quoted in an error: redacted as its field would be, and cut short."""
    try:
        text = repr(redact({field: value})[field])
    except ValueError:  # an int beyond Python's digit limit cannot even be shown
        return f"an integer of {value.bit_length()} bits" if isinstance(value, int) else "an unreadable value"
    return text if len(text) <= SHOWN_INPUT_CHARS else text[:SHOWN_INPUT_CHARS - 1] + "…"


def gateway_response(status: int, body: Any) -> dict[str, Any]:
    return {
        "isBase64Encoded": False,
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body, ensure_ascii=False, default=str),
    }


def failed_result(reason: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"status": "failed", "reason": reason, "message": message, **extra}


def handle(
    event: Any,
    context: Any,
    *,
    function_name: str,
    model: type[M],
    work: Callable[[M, Invocation, RunLogger], dict[str, Any]],
    preflight: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Validate, run `work`, and answer as the caller expects. Never raises.

    `preflight` checks the deployment's settings before anything else: a ValueError it raises is a
    configuration error (500 naming the setting), reported at start rather than mid-run."""
    inv = Invocation.from_context(context, function_name)
    log = get_logger(inv.request_id, inv.function_name)
    gateway = is_gateway_event(event)

    def answer(status: int, result: dict[str, Any]) -> dict[str, Any]:
        return gateway_response(status, result) if gateway else result

    if preflight is not None:
        try:
            preflight()
        except ValueError as e:
            log.error(str(e), reason="configuration_error")
            return answer(500, failed_result("configuration_error", str(e)))

    try:
        params = model.model_validate(extract_params(event))
    except ValidationError as e:
        message = describe_validation_error(e)
        log.error(message, reason="invalid_parameters")
        return answer(400, failed_result("invalid_parameters", message))
    except Failure as e:
        log.error(e.message, reason=e.reason)
        return answer(HTTP_STATUS[e.kind], failed_result(e.reason, e.message))
    except Exception as e:  # a validator's own bug: reported like one in `work`, not as a traceback
        log.error("internal error validating the parameters", error=f"{type(e).__name__}: {e}")
        return answer(500, failed_result("internal_error", f"{type(e).__name__}: {e}"))

    try:
        result = work(params, inv, log)
    except Failure as e:
        log.error(e.message, reason=e.reason)
        return answer(HTTP_STATUS[e.kind], failed_result(e.reason, e.message, **e.extra))
    except Exception as e:  # the last line of defence: a clear message, not a traceback
        log.error("internal error", exc_info=True, error=f"{type(e).__name__}: {e}")
        return answer(500, failed_result("internal_error", f"{type(e).__name__}: {e}"))
    return answer(200, result)
