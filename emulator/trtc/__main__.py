"""`python -m emulator.trtc`: the TRTC rooms and their Cloud API actions alone, in the foreground.

The first line on stdout is a JSON object with the addresses and credentials; SIGINT or SIGTERM
stops it. (`python -m emulator up` starts these together with the other services.)
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from . import DEFAULT_DISMISS_AFTER_S, DEFAULT_SDK_APP_ID, DEFAULT_SDK_SECRET_KEY, RoomService


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator.trtc", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="room server port (0: any free port)")
    parser.add_argument("--dismiss-after", type=float, default=DEFAULT_DISMISS_AFTER_S,
                        help="seconds a room may have no anchor before it is dismissed")
    parser.add_argument("--sdk-app-id", type=int, default=DEFAULT_SDK_APP_ID)
    parser.add_argument("--sdk-secret-key", default=DEFAULT_SDK_SECRET_KEY)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the emulator serves loopback only (--host 127.0.0.1)")
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    service = RoomService(args.sdk_app_id, args.sdk_secret_key, host=args.host, port=args.port,
                          dismiss_after=args.dismiss_after).start()
    print(json.dumps({"roomAddress": service.address, "cloudApiEndpoint": service.cloud_api_endpoint,
                      "secretId": service.secret_id, "secretKey": service.secret_key,
                      "sdkAppId": service.sdk_app_id, "sdkSecretKey": service.sdk_secret_key}), flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
