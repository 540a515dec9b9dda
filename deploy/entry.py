"""SCF entry point of the deployed code root (copied there as `index.py` by `deploy.package`).

The functions are deployed from one code root (serverless.yml's `multi-scf` uploads one package
for all its functions), so `index.main_handler` hands each call to the function named by the
environment variable ENTRY_FUNCTION, which serverless.yml sets per function. The functions' own
`functions/<name>/index.py` sit beside this file, unchanged.
"""
import importlib.util
import os
import sys

ENTRY_ENV = "ENTRY_FUNCTION"
FUNCTIONS = ("push_stream", "record_stream", "push_control")
_ROOT = os.path.dirname(os.path.abspath(__file__))
_loaded = {}

if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


def _entry(name):
    if name not in _loaded:
        path = os.path.join(_ROOT, "functions", name, "index.py")
        spec = importlib.util.spec_from_file_location(f"{name}_index", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _loaded[name] = module.main_handler
    return _loaded[name]


def _config_error(event, context, message):
    # Reported like every other configuration error (shared.gateway's shapes and JSON logger).
    from shared.gateway import failed_result, gateway_response, is_gateway_event
    from shared.runtime import Invocation, get_logger

    inv = Invocation.from_context(context)
    get_logger(inv.request_id).error(message, reason="configuration_error")
    result = failed_result("configuration_error", message)
    return gateway_response(500, result) if is_gateway_event(event) else result


def main_handler(event, context):
    name = (os.environ.get(ENTRY_ENV) or "").strip()
    if name not in FUNCTIONS:
        return _config_error(event, context, f"{ENTRY_ENV}={name!r} must name the function this deployment "
                                             f"runs: one of {', '.join(FUNCTIONS)}")
    return _entry(name)(event, context)
