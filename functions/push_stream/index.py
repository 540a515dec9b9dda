"""SCF entry point of push_stream: a video source into a TRTC room in real time.

Deployed, this folder is the code root with `shared/` copied beside this file; in the repository,
`shared/` is two levels up.
"""
import os
import sys

try:
    import shared  # noqa: F401
except ImportError:  # running from the repository without its root on sys.path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from shared.contracts.push import PushParams  # noqa: E402
from shared.gateway import handle  # noqa: E402
from shared.push.pusher import run_push  # noqa: E402
from shared.redis.default import redis_url_from_env  # noqa: E402
from shared.room import backend_from_env  # noqa: E402


def _preflight():
    backend_from_env()
    redis_url_from_env()  # a malformed REDIS_URL is named at start, not mid-run


def main_handler(event, context):
    return handle(event, context, function_name="push_stream", model=PushParams, work=run_push,
                  preflight=_preflight)
