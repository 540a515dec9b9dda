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
from shared.contracts.redis_config import redis_url_from_env  # noqa: E402
from shared.gateway import UserError, handle  # noqa: E402
from shared.room import backend_from_env  # noqa: E402
from shared.push.pusher import run_push  # noqa: E402


def _preflight():
    backend_from_env()
    redis_url_from_env()  # a malformed REDIS_URL is named at start, not mid-run


def _work(params, inv, log):
    # Until the pusher plays playlists (issue 12, phase 2), a list is refused here, clearly.
    if params.is_playlist:
        raise UserError("videoSrc: a list of sources (a playlist) is not played yet by this version; "
                        "give one source", "not_implemented", 501)
    return run_push(params, inv, log)


def main_handler(event, context):
    return handle(event, context, function_name="push_stream", model=PushParams, work=_work,
                  preflight=_preflight)
