"""openapi.yaml: a valid OpenAPI 3.0 document whose request bodies are exactly the pydantic models,
whose examples the functions accept, and whose endpoints, fuzzed on the local cloud's gateway, never
answer a 5xx (nor end a run with an internal error)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from shared.contracts.control import ControlParams
from shared.contracts.push import PushParams
from shared.contracts.recognize import RecognizeParams
from shared.contracts.record import CosSettings, RecordParams

REPO = Path(__file__).resolve().parents[2]
MODELS = {"/push_stream": PushParams, "/record_stream": RecordParams, "/recognize_stream": RecognizeParams,
          "/push_control": ControlParams}
ASYNC_PATHS = ("/push_stream", "/record_stream", "/recognize_stream")  # answered "Async run task submitted"
SYNC_PATHS = ("/push_control",)  # answered with the function's result


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load((REPO / "openapi.yaml").read_text("utf-8"))


def _resolve(node: Any, spec: dict) -> Any:
    """The schema with every local $ref replaced by what it points at."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = spec
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return _resolve(target, spec)
        return {k: _resolve(v, spec) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, spec) for v in node]
    return node


def _body_schema(spec: dict, path: str) -> dict:
    return _resolve(spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"], spec)


def _types(schema: dict) -> set[str]:
    """The JSON types a (pydantic or OpenAPI) property schema admits, null left out."""
    out: set[str] = set()
    for alt in schema.get("anyOf") or schema.get("oneOf") or [schema]:
        if "$ref" in alt or alt.get("properties"):
            out.add("object")
        elif alt.get("type") not in (None, "null"):
            out.add(alt["type"])
    return out


def test_spec_is_valid_openapi_3_0(spec):
    validate(spec)
    # What API Gateway's import reads ("Importing APIs", API Gateway 628/37875): OpenAPI 3.0.0 with
    # servers, at most 10 APIs and 100 KB per file; the x-apigw-* operation settings of its samples.
    assert spec["openapi"] == "3.0.0" and spec["servers"]
    assert (REPO / "openapi.yaml").stat().st_size <= 100 * 1024
    assert set(spec) <= {"openapi", "info", "servers", "paths", "components"}
    assert sum(len(ops) for ops in spec["paths"].values()) <= 10
    assert set(spec["paths"]) == set(ASYNC_PATHS) | set(SYNC_PATHS) == set(MODELS)
    for path, ops in spec["paths"].items():
        assert set(ops) == {"post"}
        op = ops["post"]
        assert op["operationId"] == path.strip("/")
        # Integrated response off for the async functions (SCF's async reply passes as it is), on
        # for push_control (its statusCode and body are the HTTP answer).
        assert op["x-apigw-backend"] == {
            "ServiceType": "SCF", "ServiceScfFunctionName": op["operationId"],
            "ServiceScfFunctionNamespace": "default", "ServiceScfFunctionQualifier": "$DEFAULT",
            "ServiceScfIsIntegratedResponse": path in SYNC_PATHS}
        assert (op["x-apigw-protocol"], op["x-apigw-api-type"]) == ("HTTP", "NORMAL")
        assert "callbacks" not in op and "links" not in json.dumps(op)
        ok = _resolve(op["responses"]["200"], spec)
        assert "x-scf-reqid" in ok["headers"]
        assert "application/json" in _resolve(op["responses"]["400"], spec)["content"]
        if path in ASYNC_PATHS:
            assert ok["content"]["text/plain"]["schema"]["enum"] == ["Async run task submitted"]
        else:
            assert set(op["responses"]) == {"200", "400", "403", "404", "409", "503"}  # the contract's answers
            state = ok["content"]["application/json"]["schema"]["properties"]["state"]
            assert set(state["required"]) == {"status", "videoSrc", "position", "queue", "volume"}


@pytest.mark.parametrize("path", sorted(MODELS))
def test_request_body_fields_and_types_are_the_models(spec, path):
    model = MODELS[path]
    body = _body_schema(spec, path)
    model_schema = model.model_json_schema()
    assert set(body["properties"]) == set(model.model_fields)
    assert set(body["required"]) == set(model_schema["required"])
    assert body["additionalProperties"] is False
    for name, prop in body["properties"].items():
        assert _types(prop) == _types(model_schema["properties"][name]), name
        nullable = any(a.get("type") == "null" for a in model_schema["properties"][name].get("anyOf", []))
        assert bool(prop.get("nullable")) == nullable, name
    if path == "/record_stream":
        cos = body["properties"]["CosConfig"]
        cos_schema = CosSettings.model_json_schema()
        assert set(cos["properties"]) == set(CosSettings.model_fields)
        assert set(cos["required"]) == set(cos_schema["required"])


@pytest.mark.parametrize("path", sorted(MODELS))
def test_every_example_is_accepted_by_the_model_and_the_spec(spec, path, monkeypatch):
    # The examples' hosts are placeholders that do not resolve here; allow them by name.
    monkeypatch.setenv("CALLBACK_ALLOWLIST", "api.example.com")
    monkeypatch.setenv("SOURCE_ALLOWLIST", "media.example.com")
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("RECORD_STATE_BUCKET", "state-1250000000")  # where IdempotencyKey is kept
    examples = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert len(examples) >= 2
    validator = OAS30Validator(_body_schema(spec, path))
    for name, example in examples.items():
        value = example["value"]
        validator.validate(value)
        params = MODELS[path].model_validate(value)
        assert set(params.model_fields_set) == set(value), name
    # One example sets every parameter, so each one is shown at least once.
    assert set().union(*(e["value"] for e in examples.values())) == set(MODELS[path].model_fields)


# --- fuzzing the local cloud's gateway -------------------------------------------------------------

JUNK = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 40), 2 ** 40), st.text(max_size=12),
                 st.floats(allow_nan=False, allow_infinity=False))


def _strategy(schema: dict) -> st.SearchStrategy:
    """Values shaped by the spec (in and out of its bounds) mixed with values of any JSON type."""
    if "enum" in schema:
        typed = st.sampled_from(schema["enum"])
    elif "oneOf" in schema:
        typed = st.one_of([_strategy(s) for s in schema["oneOf"]])
    else:
        t = schema.get("type")
        if t == "integer":
            lo, hi = schema.get("minimum", -(2 ** 33)), schema.get("maximum", 2 ** 33)
            typed = st.one_of(st.integers(lo, hi), st.integers(lo - 3, hi + 3), st.integers(lo, hi).map(str))
        elif t == "number":
            typed = st.floats(-1e6, 1e6, allow_nan=False) | st.floats(0, 100).map(str)
        elif t == "boolean":
            typed = st.booleans() | st.sampled_from(["true", "false", "1", "yes"])
        elif t == "array":
            typed = st.lists(st.text(max_size=8), max_size=3) | st.text(max_size=12)
        elif t == "object":
            typed = _object(schema)
        else:
            typed = st.text(max_size=24) | st.sampled_from(["file:///nowhere.mp4", "http://127.0.0.1:9/x.mp4",
                                                            "http://169.254.169.254/", "rtmp://127.0.0.1:1/live"])
    return st.one_of(typed, typed, JUNK)


def _object(schema: dict) -> st.SearchStrategy:
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    fields = st.fixed_dictionaries({k: _strategy(v) for k, v in props.items() if k in required},
                                   optional={k: _strategy(v) for k, v in props.items() if k not in required})
    extra = st.dictionaries(st.text(min_size=1, max_size=8), JUNK, max_size=2)
    return st.builds(lambda a, b: {**b, **a}, fields, extra)


def _bodies(schema: dict) -> st.SearchStrategy:
    as_json = _object(schema).map(lambda d: json.dumps(d).encode())
    raw = st.one_of(st.binary(max_size=48), st.text(max_size=48).map(str.encode),
                    st.sampled_from([b"", b"[]", b"null", b"{", b'"text"', b"a=1&b=2"]))
    return st.one_of(as_json, as_json, as_json, raw)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """The local cloud with a low concurrency limit; its runs are stopped with it."""
    from emulator.cloud import CloudConfig, LocalCloud

    c = LocalCloud(CloudConfig(state_dir=tmp_path_factory.mktemp("cloud"), max_concurrency=2,
                               shutdown_grace_s=1.0)).start()
    yield c
    c.stop()


def _finish(cloud, gateway: str, request_id: str, timeout: float = 30.0) -> dict:
    end = time.monotonic() + timeout
    while True:
        run = requests.get(f"{gateway}/_runs/{request_id}", timeout=5).json()
        if run["status"] != "RUNNING":
            return run
        if time.monotonic() > end:
            cloud.scf.terminate(run["functionName"], request_id, grace=False)
            raise AssertionError(f"run {request_id} still running after {timeout} s: {run['event']}")
        time.sleep(0.05)


@pytest.mark.parametrize("path", ASYNC_PATHS)
def test_fuzzed_bodies_never_get_a_5xx(spec, cloud, path):
    gateway = cloud.info()["gateway"]
    schema = _body_schema(spec, path)
    seen: list[int] = []
    answers: list[int] = []

    @settings(max_examples=15, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(body=_bodies(schema), content_type=st.sampled_from(["application/json",
                                                               "application/x-www-form-urlencoded", "text/plain"]))
    def post(body: bytes, content_type: str) -> None:
        r = requests.post(f"{gateway}{path}", data=body, headers={"Content-Type": content_type}, timeout=10)
        # 200 submitted, or 432 past the concurrency limit: never a 5xx.
        assert r.status_code in (200, 432), (r.status_code, r.text, body)
        seen.append(r.status_code)
        if r.status_code != 200:
            return
        assert r.text == "Async run task submitted"
        run = _finish(cloud, gateway, r.headers["x-scf-reqid"])
        # The function answered (no crash, no traceback) and not with an internal error.
        assert run["error"] is None, (run["error"], body)
        response = run["result"]
        assert isinstance(response, dict) and "statusCode" in response, (response, body)
        answer = json.loads(response["body"])
        answers.append(response["statusCode"])
        assert answer.get("reason") != "internal_error" and response["statusCode"] != 500, (answer, body)

    post()
    assert seen.count(200) >= 10  # the runs were waited for, so they did not pile up at the limit
    assert 400 in answers  # bad bodies reached the function and were refused naming the fields
    assert not [r for r in cloud.scf.runs() if r.status.value == "RUNNING"]


def _loopback_redis(body: dict) -> dict:
    # A fuzzed redisHost would be looked up by a resolver: keep every Redis the calls name on loopback.
    if isinstance(body.get("redisHost"), str):
        body["redisHost"] = "127.0.0.1"
    if not (isinstance(body.get("userSig"), str) and body["userSig"].strip()):
        body["controlToken"] = "a-fuzzed-call-s-token"  # past the proof, to the push's lookup
    return body


def test_fuzzed_push_control_bodies_get_the_contract_s_answers_never_a_crash(spec, cloud):
    gateway = cloud.info()["gateway"]
    schema = _body_schema(spec, "/push_control")
    as_json = _object(schema).map(_loopback_redis).map(lambda d: json.dumps(d).encode())
    raw = st.sampled_from([b"", b"[]", b"null", b"{", b'"text"', b"action=status&requestId=x"])
    answers: list[int] = []

    @settings(max_examples=15, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(body=st.one_of(as_json, as_json, as_json, raw),
           content_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded"]))
    def post(body: bytes, content_type: str) -> None:
        r = requests.post(f"{gateway}/push_control", data=body, headers={"Content-Type": content_type}, timeout=30)
        # No push runs here: a bad body is 400, one without userSig/controlToken 403, a good one 404
        # (none in the cloud's Redis), 503 (a Redis on a closed port) or 409; the function's own JSON
        # every time, never a crash.
        assert r.status_code in (400, 403, 404, 409, 503), (r.status_code, r.text, body)
        answer = r.json()
        assert answer["status"] == "failed" and answer["reason"] != "internal_error", (answer, body)
        if r.status_code == 503:
            assert answer["reason"] == "redis_unavailable"
        answers.append(r.status_code)

    post()
    # A well-formed call with its proof always reaches the lookup (the fuzz may not draw one).
    r = requests.post(f"{gateway}/push_control", json={"requestId": "req-fuzz-none", "action": "status",
                                                       "controlToken": "a-fuzzed-call-s-token"}, timeout=30)
    answers.append(r.status_code)
    assert 400 in answers and {404, 503} & set(answers)
    assert not [r for r in cloud.scf.runs() if r.status.value == "RUNNING"]


def test_postman_collection_is_the_one_generated_from_the_spec(spec):
    from deploy import postman

    committed = (REPO / "deploy" / "postman_collection.json").read_text("utf-8")
    assert committed == postman.render(REPO / "openapi.yaml"), "run `python -m deploy.postman`"
    collection = json.loads(committed)
    assert collection["info"]["schema"] == "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
    requests_by_path = {folder["name"]: folder["item"] for folder in collection["item"]}
    assert set(requests_by_path) == set(spec["paths"])
    for path, items in requests_by_path.items():
        examples = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"]
        assert [json.loads(i["request"]["body"]["raw"]) for i in items] == [e["value"] for e in examples.values()]
        for item in items:
            assert item["request"]["method"] == "POST" and item["request"]["url"]["raw"] == "{{baseUrl}}" + path
    assert collection["variable"][0]["key"] == "baseUrl"
