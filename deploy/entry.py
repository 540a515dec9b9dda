"""The deployed entry: `index.main_handler` hands each call to the function named by ENTRY_FUNCTION.

One image (deploy/image) serves every function, and serverless.yml sets ENTRY_FUNCTION per
function; this file is copied into the image's code root as `index.py`, beside the functions' own
`functions/<name>/index.py`, unchanged. The image's entry server (deploy/image/server.py) calls
`preload()` in a worker waiting for its invocation, then `main_handler(event, context)`.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any, Callable

Handler = Callable[[Any, Any], Any]

ENTRY_ENV = "ENTRY_FUNCTION"
# The functions this deployment runs: name -> modules its run imports lazily, which a waiting
# worker imports ahead (`preload`). A new function is one line here and its functions/<name>/.
FUNCTIONS: dict[str, tuple[str, ...]] = {
    "push_stream": (),
    "record_stream": ("qcloud_cos",),  # the upload at the end of a recording
    "push_control": (),
    "recognize_stream": ("websockets.sync.client",),  # the speech recognition connection
}
_ROOT = os.path.dirname(os.path.abspath(__file__))
_loaded: dict[str, Handler] = {}

# As the code root's index.py, the functions import `shared` from beside it. Imported as deploy.entry
# (FUNCTIONS, by deploy.package and the emulator) it must not put deploy/ on everyone's sys.path.
if __name__ != "deploy.entry" and _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


def function_name() -> str:
    """ENTRY_FUNCTION, read from the settings (free text: checked against FUNCTIONS by the callers)."""
    from shared.settings import value

    return str(value(ENTRY_ENV) or "").strip()


def load(name: str) -> Handler:
    """`functions/<name>/index.py`'s main_handler, imported once."""
    if name not in _loaded:
        path = os.path.join(_ROOT, "functions", name, "index.py")
        spec = importlib.util.spec_from_file_location(f"{name}_index", path)
        assert spec is not None and spec.loader is not None, path
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _loaded[name] = module.main_handler
    return _loaded[name]


def preload() -> None:
    """Import what the first call of ENTRY_FUNCTION would, so that the call starts warm: its module
    (PyAV, pydantic, shared), its room backend (liteav for trtc: imported, never started) and its
    lazy imports. A wrong setting is left for the call itself to report."""
    name = function_name()
    if name not in FUNCTIONS:
        return
    load(name)
    from shared.room import RoomConfigError, backend_from_env

    try:
        backend, _ = backend_from_env()
    except RoomConfigError:
        return
    modules: tuple[str, ...] = ("shared.room.trtc", "liteav") if backend == "trtc" else ("shared.room.local",)
    for module in modules + FUNCTIONS[name]:
        importlib.import_module(module)


def _config_error(event, context, message):
    # Reported like every other configuration error (shared.gateway's shapes and JSON logger).
    from shared.gateway import failed_result, gateway_response, is_gateway_event
    from shared.runtime import Invocation, get_logger

    inv = Invocation.from_context(context)
    get_logger(inv.request_id).error(message, reason="configuration_error")
    result = failed_result("configuration_error", message)
    return gateway_response(500, result) if is_gateway_event(event) else result


def main_handler(event, context):
    name = function_name()
    if name not in FUNCTIONS:
        return _config_error(event, context, f"{ENTRY_ENV}={name!r} must name the function this deployment "
                                             f"runs: one of {', '.join(FUNCTIONS)}")
    return load(name)(event, context)
