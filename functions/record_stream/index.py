"""SCF entry point of record_stream: record each anchor of a TRTC room to MP3/MP4, upload to COS, call back.

Deployed, this folder is the code root with `shared/` copied beside this file; in the repository,
`shared/` is two levels up.
"""
import os
import sys

try:
    import shared  # noqa: F401
except ImportError:  # running from the repository without its root on sys.path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from shared.contracts.record import RecordParams  # noqa: E402
from shared.gateway import handle  # noqa: E402
from shared.record.recorder import record  # noqa: E402
from shared.record.recovery import is_timer_event, on_timer  # noqa: E402
from shared.room import backend_from_env  # noqa: E402


def main_handler(event, context):
    if is_timer_event(event):  # serverless.yml's timer: finish the runs that died
        return on_timer(event, context)
    return handle(event, context, function_name="record_stream", model=RecordParams, work=record,
                  preflight=backend_from_env)
