"""SCF entry point of push_control: control a running push (switch, enqueue, pause, resume, volume,
stop, status). Synchronous: its answer is its result (API Gateway with integrated response, or
Invoke with RequestResponse).

Deployed, this folder is the code root with `shared/` copied beside this file; in the repository,
`shared/` is two levels up.
"""
import os
import sys

try:
    import shared  # noqa: F401
except ImportError:  # running from the repository without its root on sys.path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from shared.contracts.control import ControlParams  # noqa: E402
from shared.gateway import handle  # noqa: E402
from shared.push.control.caller import run_control  # noqa: E402
from shared.redis.default import redis_url_from_env  # noqa: E402


def main_handler(event, context):
    return handle(event, context, function_name="push_control", model=ControlParams, work=run_control,
                  preflight=redis_url_from_env)
