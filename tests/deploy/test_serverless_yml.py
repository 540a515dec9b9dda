"""serverless.yml against the multi-scf component's documented inputs, the code's environment
variables and what `./dev package` builds.

The documented inputs are those of serverless-components/tencent-multi-scf: docs/configure.md
("inputs 配置参数", "FunctionObject", "Vpc", "Cfs", "Cls", "Layer", "Environment", "Trigger",
"API 网关触发器", "endpoints 参数") and src/interface/inputs.ts (FaasBaseConfig: asyncRunEnable,
traceEnable — "traceEnable needs asyncRunEnable true"). SCF's limits: "Quota Limits" (583/11637),
timeout up to 86400 s for asynchronous execution ("Async Execution", 583/39466).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from deploy import entry, package

REPO = Path(__file__).resolve().parents[2]

# name -> accepted Python types (a ${env:X} string is accepted where the value is deploy-time).
TOP_LEVEL = {"app": str, "stage": str, "component": str, "name": str, "org": str, "inputs": dict}
INPUTS = {"src": (str, dict), "region": str, "runtime": str, "namespace": str, "memorySize": int, "timeout": int,
          "functions": dict, "triggers": list, "ignoreTriggers": bool, "type": str, "description": str,
          "environment": (list, dict), "vpc": dict, "vpcConfig": dict, "cfs": list, "cls": dict, "tags": (list, dict),
          "layers": list, "eip": bool, "publicAccess": bool, "installDependency": bool, "asyncRunEnable": bool,
          "traceEnable": bool, "initTimeout": int}
SRC = {"src": str, "exclude": list, "bucket": str, "object": str}
FUNCTION = {"name": str, "handler": str, "role": str, "description": str, "memorySize": int, "timeout": int,
            "environment": (list, dict), "vpc": dict, "vpcConfig": dict, "layers": list, "cls": dict,
            "tags": (list, dict), "cfs": list, "publicAccess": bool, "eip": bool, "asyncRunEnable": bool,
            "traceEnable": bool, "installDependency": bool, "runtime": str, "namespace": str, "initTimeout": int}
VPC = {"vpcId": str, "subnetId": str}
CFS = {"cfsId": str, "mountInsId": str, "localMountDir": str, "remoteMountDir": str}
CLS = {"logsetId": str, "topicId": str}
LAYER = {"name": str, "version": (int, str)}
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
    names = set()
    for path in list((REPO / "shared").rglob("*.py")) + [REPO / "deploy" / "entry.py"]:
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
    _check(inputs["src"], SRC, "inputs.src")
    _check(inputs["vpc"], VPC, "inputs.vpc")
    _check(inputs["cls"], CLS, "inputs.cls")
    for item in inputs["cfs"]:
        _check(item, CFS, "inputs.cfs[]")
    for item in inputs["layers"]:
        _check(item, LAYER, "inputs.layers[]")
    for key, fn in inputs["functions"].items():
        _check(fn, FUNCTION, f"inputs.functions.{key}")
        for item in fn.get("environment", []):
            _check(item, ENV_ITEM, f"inputs.functions.{key}.environment[]")
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


def test_both_functions_run_asynchronously_on_the_packaged_runtime(config, built):
    manifest, _ = built
    inputs = config["inputs"]
    assert set(inputs["functions"]) == {"push_stream", "record_stream"}
    assert inputs["src"]["src"] == "./build/code"  # where `./dev package` writes the code root
    for key, fn in inputs["functions"].items():
        assert fn["handler"] == "index.main_handler"
        assert fn.get("runtime", inputs["runtime"]) == manifest.runtime == "Python3.11"
        assert fn["asyncRunEnable"] is True and fn["traceEnable"] is True
        assert 1 <= fn["timeout"] <= ASYNC_TIMEOUT_MAX
        assert fn["memorySize"] in MEMORY_SIZES
        env = {item["key"]: item["value"] for item in fn["environment"]}
        assert env[entry.ENTRY_ENV] == key  # the packaged index.py hands the call to this function
        assert env["ROOM_BACKEND"] == "trtc"
    assert inputs["cls"]  # asynchronous execution needs its logs in CLS
    # One layer entry per layer the package builds, within SCF's five.
    assert len(inputs["layers"]) == len(manifest.layers) <= package.MAX_LAYERS


def test_environment_names_are_the_ones_the_code_reads(config):
    known = _env_names_in_code()
    for key, fn in config["inputs"]["functions"].items():
        names = [item["key"] for item in fn["environment"]]
        assert len(names) == len(set(names))
        assert set(names) <= known, f"{key}: {sorted(set(names) - known)} are read by no code"
        # Deployment-only knobs of the emulator and tests never ship.
        assert not {"COS_ENDPOINT", "LOCAL_ROOM_ADDRESS", "PACING_SPEED"} & set(names)
    record_env = {item["key"] for item in config["inputs"]["functions"]["record_stream"]["environment"]}
    push_env = {item["key"] for item in config["inputs"]["functions"]["push_stream"]["environment"]}
    assert {"CFS_PATH", "CALLBACK_SIGN_KEY", "CALLBACK_ALLOWLIST"} <= record_env
    assert {"SOURCE_ALLOWLIST", "CHECKPOINT_TTL_SECONDS"} <= push_env
    # CFS_PATH lies under the CFS mount.
    mount = config["inputs"]["cfs"][0]["localMountDir"]
    cfs_path = next(i["value"] for i in config["inputs"]["functions"]["record_stream"]["environment"]
                    if i["key"] == "CFS_PATH")
    assert cfs_path.startswith(mount.rstrip("/") + "/")


def test_gateway_posts_to_each_function_with_region_and_names_as_variables(config):
    inputs = config["inputs"]
    [apigw] = [t for t in inputs["triggers"] if t["type"] == "apigw"]
    routes = {(api["method"], api["path"]): api["function"] for api in apigw["parameters"]["apis"]}
    assert routes == {("POST", "/push_stream"): "push_stream", ("POST", "/record_stream"): "record_stream"}
    for api in apigw["parameters"]["apis"]:
        assert "function" not in api or isinstance(api["function"], str)  # a key of inputs.functions
    assert apigw["parameters"]["environment"] == "release"
    for value in (inputs["region"], inputs["functions"]["push_stream"]["name"],
                  inputs["functions"]["record_stream"]["name"], config["stage"], apigw["parameters"]["name"]):
        assert re.fullmatch(r"\$\{env:[A-Z0-9_]+\}", value)


def test_openapi_paths_match_the_gateway_routes(config):
    spec = yaml.safe_load((REPO / "openapi.yaml").read_text("utf-8"))
    [apigw] = [t for t in config["inputs"]["triggers"] if t["type"] == "apigw"]
    routes = {(api["method"].lower(), api["path"]) for api in apigw["parameters"]["apis"]}
    assert routes == {(m, p) for p, ops in spec["paths"].items() for m in ops}


LAYER_COMPONENT = {"region": str, "name": str, "src": str, "runtimes": list, "description": str}


def test_each_built_layer_has_its_publishing_yml_named_as_serverless_yml_expects(config, built):
    """`cd build/layers && sls deploy` publishes the layers the root serverless.yml binds (the `layer`
    component: region, name, src, runtimes, description)."""
    manifest, out = built
    root_layers = config["inputs"]["layers"]
    for i, layer in enumerate(manifest.layers):
        path = out / "layers" / f"publish-{layer.name}" / "serverless.yml"
        doc = yaml.safe_load(path.read_text("utf-8"))
        _check(doc, TOP_LEVEL, str(path))
        assert doc["component"] == "layer"
        _check(doc["inputs"], LAYER_COMPONENT, f"{path}: inputs")
        assert doc["inputs"]["runtimes"] == [manifest.runtime]
        assert (path.parent / doc["inputs"]["src"]).resolve() == Path(layer.directory).resolve()
        assert doc["inputs"]["name"] == root_layers[i]["name"] == f"${{env:{package.layer_env(layer.name)}_NAME}}"
        assert root_layers[i]["version"] == f"${{env:{package.layer_env(layer.name)}_VERSION}}"


def test_record_streams_recovery_timer_runs_every_minute(config):
    """Dead runs are finished within 2 minutes: the timer fires every minute (SCF's 7-field cron),
    and each run keeps its state where the execution role can read it."""
    from emulator.scf.timers import cron_period, read_timer_triggers

    [timer] = [t for t in config["inputs"]["triggers"] if t["type"] == "timer"]
    assert timer["function"] == "record_stream" and timer["parameters"]["enable"] is True
    assert cron_period(timer["parameters"]["cronExpression"]) == 60
    assert [(t.function, t.period_s) for t in read_timer_triggers(REPO / "serverless.yml")] == [("record_stream", 60)]
    env = {i["key"]: i["value"] for i in config["inputs"]["functions"]["record_stream"]["environment"]}
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
