"""SCF entry point of recognize_stream: recognise each anchor's speech in a TRTC room live, POST
each sentence to Callback, keep transcripts and clips in COS.

Deployed, this folder is the code root with `shared/` copied beside this file; in the repository,
`shared/` is two levels up.
"""
import os
import sys

try:
    import shared  # noqa: F401
except ImportError:  # running from the repository without its root on sys.path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from shared.contracts.recognize import RecognizeParams  # noqa: E402
from shared.gateway import handle  # noqa: E402
from shared.recognize.recognizer import recognize  # noqa: E402
from shared.room import backend_from_env  # noqa: E402


def main_handler(event, context):
    return handle(event, context, function_name="recognize_stream", model=RecognizeParams, work=recognize,
                  preflight=backend_from_env)
