"""serverless.yml against the multi-scf component's documented inputs, the code's environment
variables and the image `./dev package` builds.

The documented inputs are those of serverless-components/tencent-multi-scf at its newest commit:
docs/configure.md ("inputs 配置参数", "FunctionObject", "Image", "Vpc", "Cfs", "Cls", "Environment",
"Trigger", "API 网关触发器", "endpoints 参数"), src/interface/inputs.ts (FaasBaseConfig, FaasInputs.image)
and src/formatter.ts (what it does with them: `environments` becomes the function's variables and
replaces `environment`; a function with `image` uploads no code; apigw's `name` is the service name).
The component's own validation (serverless.component.yml) allows these runtimes only. SCF's limits:
"Quota Limits" (583/11637), timeout up to 86400 s for asynchronous execution ("Async Execution", 583/39466).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from deploy import entry
from deploy.image import build as image_build

REPO = Path(__file__).resolve().parents[2]

# name -> accepted Python types (a ${env:X} string is accepted where the value is deploy-time).
TOP_LEVEL = {"app": str, "stage": str, "component": str, "name": str, "org": str, "inputs": dict}
# inputs: the "inputs 配置参数" table plus FaasBaseConfig (inputs.ts: Inputs extends FaasBaseConfig,
# merged into every function by formatter.ts formatInputs).
INPUTS = {"src": (str, dict), "region": str, "runtime": str, "namespace": str, "memorySize": int, "timeout": int,
          "functions": dict, "triggers": list, "ignoreTriggers": bool, "isAutoPublish": bool,
          "publishDescription": str, "type": str, "description": str, "nodeType": str, "nodeSpec": str,
          "environments": list, "environment": dict, "vpc": dict, "vpcConfig": dict, "cfs": list, "cls": dict,
          "tags": (list, dict), "layers": list, "eip": bool, "publicAccess": bool, "installDependency": bool,
          "asyncRunEnable": bool, "traceEnable": bool}
SRC = {"src": str, "exclude": list, "bucket": str, "object": str}
FUNCTION = {"handler": str, "type": str, "nodeType": str, "nodeSpec": str, "name": str, "src": str, "role": str,
            "description": str, "memorySize": int, "timeout": int, "environments": list, "environment": dict,
            "vpc": dict, "vpcConfig": dict, "layers": list, "cls": dict, "tags": (list, dict), "cfs": list,
            "publicAccess": bool, "eip": bool, "asyncRunEnable": bool, "traceEnable": bool,
            "installDependency": bool, "image": dict, "msgTTL": int, "retryNum": int, "runtime": str,
            "namespace": str}
IMAGE = {"imageUrl": str, "imageType": str, "registryId": str, "command": str, "args": str}
RUNTIMES = {"Python2.7", "Python3.6", "Python3.7", "Nodejs6.10", "Nodejs8.9", "Nodejs10.15", "Nodejs12.16",
            "Nodejs14.18", "Nodejs16.13", "Php5", "Php7", "Php7.4", "Php8.0", "Go1", "Java8", "Java11",
            "CustomRuntime"}  # serverless.component.yml, actions.deploy.inputs.runtime.allow
VPC = {"vpcId": str, "subnetId": str}
CFS = {"cfsId": str, "mountInsId": str, "localMountDir": str, "remoteMountDir": str}
CLS = {"logsetId": str, "topicId": str}
ENV_ITEM = {"key": str, "value": str}
TRIGGER = {"type": str, "function": str, "parameters": dict}
APIGW = {"name": str, "id": str, "serviceId": str, "serviceName": str, "environment": str, "protocols": list,
         "netTypes": list, "description": str, "apis": list, "qualifier": str}
TIMER = {"name": str, "qualifier": str, "cronExpression": str, "argument": (str, dict), "enable": bool}  # "定时触发器"
API = {"path": str, "method": str, "function": str, "apiId": str, "apiName": str, "description": str,
       "enableCORS": bool, "responseType": str, "serviceTimeout": int, "param": list, "usagePlan": dict,
       "auth": dict, "isBase64Encoded": bool, "isBase64Trigger": bool, "base64EncodedTriggerRules": list}
MEMORY_SIZES = {64} | set(range(128, 3072 + 1, 128))  # "64、128-3072，以 128 为阶梯"
ASYNC_TIMEOUT_MAX = 86_400


def _check(obj: dict, schema: dict, where: str) -> None:
    unknown = set(obj) - set(schema)
    assert not unknown, f"{where}: {sorted(unknown)} are not documented inputs"
    for key, value in obj.items():
        if isinstance(value, str) and value.startswith("${env:"):
            continue
        assert isinstance(value, schema[key]) and not (schema[key] is int and isinstance(value, bool)), \
            f"{where}.{key} = {value!r} is not {schema[key]}"


def _env_names_in_code() -> set[str]:
    from shared.settings import VARIABLES  # the code reads its settings through shared/settings.py

    names = set(VARIABLES)
    for path in list((REPO / "shared").rglob("*.py")) + [REPO / "deploy" / "entry.py",
                                                          REPO / "deploy" / "image" / "server.py"]:
        text = path.read_text("utf-8")
        names |= set(re.findall(r'_ENV\s*=\s*"([A-Z][A-Z0-9_]+)"', text))
        names |= set(re.findall(r'environ\.get\("([A-Z][A-Z0-9_]+)"', text))
        names |= set(re.findall(r'env\.get\("([A-Z][A-Z0-9_]+)"', text))
    return names


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((REPO / "serverless.yml").read_text("utf-8"))


def test_every_key_is_a_documented_multi_scf_input(config):
    _check(config, TOP_LEVEL, "serverless.yml")
    assert config["component"] == "multi-scf"
    inputs = config["inputs"]
    _check(inputs, INPUTS, "inputs")
    _check(inputs["vpc"], VPC, "inputs.vpc")
    _check(inputs["cls"], CLS, "inputs.cls")
    for item in inputs["cfs"]:
        _check(item, CFS, "inputs.cfs[]")
    assert inputs["runtime"] in RUNTIMES  # the component refuses any other
    for key, fn in inputs["functions"].items():
        _check(fn, FUNCTION, f"inputs.functions.{key}")
        _check(fn["image"], IMAGE, f"inputs.functions.{key}.image")
        for item in fn["environments"]:
            _check(item, ENV_ITEM, f"inputs.functions.{key}.environments[]")
    for trigger in inputs["triggers"]:
        _check(trigger, TRIGGER, "inputs.triggers[]")
        assert trigger["type"] in ("apigw", "timer"), trigger["type"]
        if trigger["type"] == "timer":
            _check(trigger["parameters"], TIMER, "timer.parameters")
            assert trigger["function"] in inputs["functions"]
        if trigger["type"] == "apigw":
            _check(trigger["parameters"], APIGW, "apigw.parameters")
            for api in trigger["parameters"]["apis"]:
                _check(api, API, "apigw.parameters.apis[]")


ASYNC_FUNCTIONS = {"push_stream", "record_stream", "recognize_stream"}  # answered at once, run for hours
SYNC_FUNCTIONS = {"push_control"}  # answers with its result
SYNC_TIMEOUT_MAX = 900  # SCF's ceiling for a synchronously invoked function


def test_no_variable_list_is_under_environment_where_the_component_drops_it(config):
    """formatter.ts formatFaasInputs sets `environment` from `environments` (a list of key/value),
    over whatever `environment` held: a list there would deploy a function without its variables."""
    for where in [config["inputs"], *config["inputs"]["functions"].values()]:
        legacy = where.get("environment")
        assert legacy is None or (isinstance(legacy, dict) and isinstance(legacy.get("variables"), dict)), \
            f"environment: {legacy!r} would be replaced by `environments`"


def test_every_function_is_the_one_image_running_its_entry_server(config):
    inputs = config["inputs"]
    assert set(inputs["functions"]) == ASYNC_FUNCTIONS | SYNC_FUNCTIONS == set(entry.FUNCTIONS)
    assert "src" not in inputs and "layers" not in inputs  # nothing but the image is deployed
    images = [fn["image"] for fn in inputs["functions"].values()]
    assert all(image == images[0] for image in images)  # one image; ENTRY_FUNCTION tells them apart
    image = images[0]
    assert re.fullmatch(r"\$\{env:[A-Z0-9_]+\}", image["imageUrl"])
    # SCF runs the image with exactly the Dockerfile's CMD (ImageConfig: Command, then Args split on spaces).
    assert [image["command"], *image["args"].split(" ")] == list(image_build.COMMAND)
    for key, fn in inputs["functions"].items():
        assert fn["type"] == "event" and "handler" not in fn and "layers" not in fn
        assert fn["memorySize"] in MEMORY_SIZES
        env = {item["key"]: item["value"] for item in fn["environments"]}
        assert env[entry.ENTRY_ENV] == key  # the image's index.py hands the call to this function
        if key in ASYNC_FUNCTIONS:
            assert fn["asyncRunEnable"] is True and fn["traceEnable"] is True
            assert 1 <= fn["timeout"] <= ASYNC_TIMEOUT_MAX
            assert env["ROOM_BACKEND"] == "trtc"
        else:
            # Synchronous: no async execution (it would answer "Async run task submitted"), a short
            # time limit, below the API's service timeout, and no room of its own.
            assert not fn.get("asyncRunEnable") and not fn.get("traceEnable")
            assert 1 <= fn["timeout"] <= SYNC_TIMEOUT_MAX
            assert "ROOM_BACKEND" not in env
    assert inputs["cls"]  # asynchronous execution needs its logs in CLS


def test_environment_names_are_the_ones_the_code_reads(config):
    known = _env_names_in_code()
    functions = config["inputs"]["functions"]
    for key, fn in functions.items():
        names = [item["key"] for item in fn["environments"]]
        assert len(names) == len(set(names))
        assert set(names) <= known, f"{key}: {sorted(set(names) - known)} are read by no code"
        # Deployment-only knobs of the emulator and tests never ship.
        assert not {"COS_ENDPOINT", "LOCAL_ROOM_ADDRESS", "PACING_SPEED", "ENTRY_LISTEN"} & set(names)
        # The role's keys come per invocation in headers; none is configured.
        assert not [n for n in names if n.startswith("TENCENTCLOUD_")]
    record_env = {item["key"] for item in functions["record_stream"]["environments"]}
    push_env = {item["key"] for item in functions["push_stream"]["environments"]}
    assert {"CFS_PATH", "CALLBACK_SIGN_KEY", "CALLBACK_ALLOWLIST"} <= record_env
    assert {"SOURCE_ALLOWLIST", "REDIS_ALLOWLIST", "LOCAL_SOURCE_DIRS", "CHECKPOINT_TTL_SECONDS", "REDIS_URL"} <= push_env
    push = {item["key"]: item["value"] for item in functions["push_stream"]["environments"]}
    # No local file is a source on SCF: the CFS both functions mount holds every caller's recordings.
    assert push["LOCAL_SOURCE_DIRS"] == ""
    # push_control finds pushes in the Redis they run with: the same REDIS_URL, the same egress rules.
    control = {item["key"]: item["value"] for item in functions["push_control"]["environments"]}
    assert all(control[k] == push[k] for k in ("REDIS_URL", "REDIS_ALLOWLIST", "SOURCE_ALLOWLIST"))
    # CFS_PATH lies under the CFS mount.
    mount = config["inputs"]["cfs"][0]["localMountDir"]
    cfs_path = next(i["value"] for i in functions["record_stream"]["environments"] if i["key"] == "CFS_PATH")
    assert cfs_path.startswith(mount.rstrip("/") + "/")


def test_gateway_posts_to_each_function_with_region_and_names_as_variables(config):
    inputs = config["inputs"]
    [apigw] = [t for t in inputs["triggers"] if t["type"] == "apigw"]
    routes = {(api["method"], api["path"]): api["function"] for api in apigw["parameters"]["apis"]}
    assert routes == {("POST", "/push_stream"): "push_stream", ("POST", "/record_stream"): "record_stream",
                      ("POST", "/recognize_stream"): "recognize_stream", ("POST", "/push_control"): "push_control"}
    timeouts = {api["function"]: api["serviceTimeout"] for api in apigw["parameters"]["apis"]}
    assert inputs["functions"]["push_control"]["timeout"] < timeouts["push_control"]  # it answers in time
    for api in apigw["parameters"]["apis"]:
        assert "function" not in api or isinstance(api["function"], str)  # a key of inputs.functions
    assert apigw["parameters"]["environment"] == "release"
    for value in (inputs["region"], inputs["functions"]["push_stream"]["name"],
                  inputs["functions"]["record_stream"]["name"], inputs["functions"]["push_control"]["name"],
                  config["stage"], apigw["parameters"]["name"]):
        assert re.fullmatch(r"\$\{env:[A-Z0-9_]+\}", value)


def test_openapi_paths_match_the_gateway_routes(config):
    spec = yaml.safe_load((REPO / "openapi.yaml").read_text("utf-8"))
    [apigw] = [t for t in config["inputs"]["triggers"] if t["type"] == "apigw"]
    routes = {(api["method"].lower(), api["path"]) for api in apigw["parameters"]["apis"]}
    assert routes == {(m, p) for p, ops in spec["paths"].items() for m in ops}


def test_record_streams_recovery_timer_runs_every_minute(config):
    """Dead runs are finished within 2 minutes: the timer fires every minute (SCF's 7-field cron),
    and each run keeps its state where the execution role can read it."""
    from emulator.scf.timers import cron_period, read_timer_triggers

    [timer] = [t for t in config["inputs"]["triggers"] if t["type"] == "timer"]
    assert timer["function"] == "record_stream" and timer["parameters"]["enable"] is True
    assert cron_period(timer["parameters"]["cronExpression"]) == 60
    assert [(t.function, t.period_s) for t in read_timer_triggers(REPO / "serverless.yml")] == [("record_stream", 60)]
    env = {i["key"]: i["value"] for i in config["inputs"]["functions"]["record_stream"]["environments"]}
    assert env["RECORD_STATE_BUCKET"] == "${env:RECORD_STATE_BUCKET}"


@pytest.mark.parametrize("expression,seconds", [("0 */1 * * * * *", 60), ("*/5 * * * * * *", 5),
                                                ("0 0 */2 * * * *", 7200), ("0 * * * * * *", 60)])
def test_the_emulator_reads_the_period_of_a_recurring_cron(expression, seconds):
    from emulator.scf.timers import cron_period

    assert cron_period(expression) == seconds


@pytest.mark.parametrize("expression", ["0 0 2 1 * * *", "0 */1 * * *", "*/0 * * * * * *", "0 30 9 * * MON-FRI *"])
def test_a_cron_the_emulator_cannot_repeat_is_refused_naming_it(expression):
    from emulator.scf.timers import cron_period

    with pytest.raises(ValueError, match="cronExpression"):
        cron_period(expression)
