"""What a cold start imports: each function's handler, loaded in a fresh interpreter as SCF loads it,
pulls only the heavy modules its runs need (a cold start's time is mostly imports: issue 24, item 3).

    push_stream       PyAV; redis-py only once a push with Redis connects; nothing of the recorder
    push_control      redis-py; neither PyAV nor the recorder nor the push's media reader
    record_stream     PyAV and the recorder; neither redis-py nor the pusher
    recognize_stream  PyAV; neither redis-py nor the pusher
    every handler     liteav only for ROOM_BACKEND=trtc, and then only when a room is opened or the
                      waiting worker preloads it (deploy/entry.py)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

# Loads functions/<name>/index.py as deploy/entry.py and SCF do (-I: no cwd, no PYTHON* variables),
# optionally runs main_handler(event) or entry.preload(), then prints the modules loaded, as JSON.
PROBE = r"""
import importlib.util, json, sys
name, event, what = sys.argv[1], sys.argv[2], sys.argv[3]
result = None
if what == "preload":
    sys.path.insert(0, sys.argv[4])
    from deploy import entry
    entry._ROOT = sys.argv[4]  # functions/ are found here, as beside the code root's index.py
    import os
    os.environ["ENTRY_FUNCTION"] = name
    entry.preload()
else:
    spec = importlib.util.spec_from_file_location(name + "_index", sys.argv[4] + "/functions/" + name + "/index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if what == "run":
        result = module.main_handler(json.loads(event), {"request_id": "cold-imports"})
print(json.dumps({"modules": sorted(sys.modules), "result": result}))
"""

# name -> (modules its handler's import must load, modules (and their submodules) it must not)
EXPECTED: dict[str, tuple[set[str], set[str]]] = {
    "push_stream": ({"av", "shared.push.pusher"},
                    {"redis", "asyncio", "liteav", "shared.record", "shared.contracts.record", "shared.asr"}),
    "push_control": ({"redis", "shared.push.control.caller"},
                     {"av", "liteav", "shared.record", "shared.contracts.record", "shared.media.source", "shared.asr"}),
    "record_stream": ({"av", "shared.record.recorder"}, {"redis", "liteav", "shared.push", "shared.asr"}),
    "recognize_stream": ({"av", "shared.recognize.recognizer"}, {"redis", "liteav", "shared.push"}),
}


def _probe(name: str, what: str = "import", event: dict[str, Any] | None = None,
           env: dict[str, str] | None = None, timeout: float = 60) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-I", "-c", PROBE, name, json.dumps(event or {}), what, str(REPO)],
                          env={**os.environ, **(env or {})}, cwd="/", capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _loaded(modules: list[str], names: set[str] | tuple[str, ...]) -> set[str]:
    """Which of `names` were imported (a name counts when it or one of its submodules was)."""
    return {n for n in names if any(m == n or m.startswith(n + ".") for m in modules)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("backend", ["local", "trtc"])
def test_a_handler_imports_only_what_its_runs_need(name, backend):
    needed, refused = EXPECTED[name]
    modules = _probe(name, env={"ROOM_BACKEND": backend, "LOCAL_ROOM_ADDRESS": "127.0.0.1:9"})["modules"]
    assert _loaded(modules, needed) == needed  # the probe loaded the handler for real
    assert _loaded(modules, refused) == set(), f"{name} (ROOM_BACKEND={backend}) imports {_loaded(modules, refused)}"


def test_the_contracts_package_builds_no_model_until_one_is_asked_for():
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
            "import shared.contracts as c; before = sorted(m for m in sys.modules if m.startswith('shared.contracts.'))\n"
            "p = c.PushParams; after = 'shared.contracts.push' in sys.modules\n"
            "from shared.contracts.push import PushParams\n"
            "print(before, after, p is PushParams, c.RecognizeParams.__name__)")
    proc = subprocess.run([sys.executable, "-I", "-c", code], cwd="/", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[]", "True", "True", "RecognizeParams"]


def test_preload_imports_liteav_for_trtc_only(tmp_path):
    """The waiting worker (deploy/entry.py preload) imports the room backend's modules ahead: liteav
    for trtc (imported, never started), the emulator's client otherwise."""
    local = _probe("push_stream", "preload", env={"ROOM_BACKEND": "local", "LOCAL_ROOM_ADDRESS": "127.0.0.1:9"})
    assert _loaded(local["modules"], ("liteav", "redis", "shared.record")) == set()
    assert "shared.room.local" in local["modules"]
    pytest.importorskip("liteav")
    trtc = _probe("push_stream", "preload", env={"ROOM_BACKEND": "trtc"})
    assert {"liteav", "shared.room.trtc"} <= set(trtc["modules"])


def test_a_push_without_redis_never_imports_redis_and_one_with_redis_does(room_service, redis_server, tmp_path):
    """A whole push in a fresh process: frames sent into the local room, and redis-py imported only
    by the push that has a Redis (its checkpoint and control inbox connect through shared.redis)."""
    from emulator.media import make_clip

    src = make_clip(tmp_path / "clip1.mp4", duration=1.0, pictures="steps", layout="mono", gop=25)
    env = {**room_service.env, "PACING_SPEED": "8", "LOCAL_SOURCE_DIRS": str(tmp_path)}
    base = {"videoSrc": str(src), "sdkAppId": room_service.sdk_app_id, "roomId": 880_001, "userId": "cold",
            "userSig": room_service.usersig("cold")}

    plain = _probe("push_stream", "run", base, env)
    assert plain["result"]["status"] == "completed" and plain["result"]["framesSent"]["video"] == 25
    assert _loaded(plain["modules"], ("redis", "asyncio", "liteav", "shared.record")) == set()

    with_redis = _probe("push_stream", "run", {**base, "roomId": 880_002, "redis": "true",
                                                "redisHost": redis_server.host, "redisPort": str(redis_server.port)},
                        env)
    assert with_redis["result"]["status"] == "completed" and with_redis["result"]["framesSent"]["video"] == 25
    assert "redis" in with_redis["modules"] and _loaded(with_redis["modules"], ("liteav",)) == set()


def test_the_package_carries_bytecode_that_python_loads_without_reading_the_source(package_cache, tmp_path):
    """`./dev package` compiles both trees (unchecked-hash): SCF's code tree is read-only, so a module
    without bytecode would be compiled again at every cold start."""
    import importlib.util

    from deploy.image import build as image_build

    context = image_build.write_context(tmp_path / "image", cache=package_cache)  # no compile step after it
    app = Path(context.directory) / "app"
    for tree in ("code", "site"):
        sources = [p for p in (app / tree).rglob("*.py") if p != app / "code" / "server.py"]  # a script: never cached
        missing = [str(p) for p in sources if not Path(importlib.util.cache_from_source(str(p))).is_file()]
        assert sources and missing == [], f"app/{tree}: {len(missing)} modules without bytecode, e.g. {missing[:3]}"
    pyc = Path(importlib.util.cache_from_source(str(app / "code" / "shared" / "contracts" / "push.py")))
    assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b01  # hash-based, unchecked (PEP 552)

    # Python takes the bytecode without reading the source: a source that could not be imported any
    # more is never looked at (app/code is a copy; app/site is hard-linked to the cache: left alone).
    (app / "code" / "shared" / "contracts" / "push.py").write_text("raise ImportError('read the source')\n")
    probe = ("import os, sys; sys.path[0:0] = sys.argv[1:]\n"
             "import index; index.preload()\n"
             "from shared.contracts.push import PushParams\n"
             "ours = [m for m in list(sys.modules.values()) if (getattr(m, '__file__', None) or '').startswith(sys.argv[1].rsplit('/', 1)[0]) "
             "and m.__file__.endswith('.py')]\n"
             "uncached = [m.__name__ for m in ours if not os.path.isfile(m.__cached__ or '')]\n"
             "print(PushParams.__name__, len(ours), uncached)")
    env = {"PATH": os.environ.get("PATH", ""), "ENTRY_FUNCTION": "push_stream", "ROOM_BACKEND": "local",
           "LOCAL_ROOM_ADDRESS": "127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(app / "site"), str(app / "code")], env=env,
                          cwd="/", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    name, count, uncached = proc.stdout.split(" ", 2)
    assert name == "PushParams" and int(count) > 100 and uncached.strip() == "[]"
