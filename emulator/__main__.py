"""python -m emulator up | usersig USER_ID | demo

    up        start the local cloud in the foreground; the first line on stdout is its JSON info;
              SIGINT / SIGTERM stop it (running functions get SIGTERM, then are killed)
    usersig   print a UserSig valid in the emulator's rooms
    demo      the end-to-end demonstration (push a clip, record it, stop both, show the result; then the
              AI class: a student answers aloud, the lesson switches to the feedback; --class: the class alone)
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from emulator.cloud import DEFAULT_IMAGE_DIR, DEFAULT_STATE_DIR, RUNTIMES, CloudConfig, LocalCloud, read_info


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0 (got {text})")
        return value
    return parse


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535 (got {text!r})")
    return int(text)


def _up(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    try:
        running = read_info(state_dir)
    except FileNotFoundError:
        running = None
    if running:
        print(f"error: a local cloud (pid {running['pid']}) is already running with state directory "
              f"{state_dir.resolve()}; stop it or choose another --state-dir", file=sys.stderr)
        return 2
    config = CloudConfig(state_dir=state_dir, gateway_port=args.gateway_port, cloud_api_port=args.cloud_api_port,
                         room_port=args.room_port, cos_port=args.cos_port, redis_port=args.redis_port,
                         console_port=args.console_port,
                         max_concurrency=args.max_concurrency, time_limit_ms=int(args.time_limit * 1000),
                         functions_dir=Path(args.functions_dir), runtime=args.runtime,
                         image_dir=Path(args.image_dir), timer_tick_s=args.timer_tick)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        cloud = LocalCloud(config).start()
    except Exception as e:
        print(f"error: the local cloud did not start: {e}", file=sys.stderr)
        return 1
    try:
        sys.stdout.write(json.dumps(cloud.info()) + "\n")
        sys.stdout.flush()
        print(f"local cloud up (state in {cloud.state_dir}); console at {cloud.console.url if cloud.console else '-'}; "
              "Ctrl-C or SIGTERM stops it", file=sys.stderr)
        while not stop.wait(0.5):
            pass
    finally:
        print("stopping the local cloud...", file=sys.stderr)
        cloud.stop()
        print("stopped", file=sys.stderr)
    return 0


def _usersig(args: argparse.Namespace) -> int:
    from emulator.trtc import usersig

    if not args.user_id or len(args.user_id.encode()) > 32:
        print("error: USER_ID must be 1..32 bytes", file=sys.stderr)
        return 2
    print(usersig(args.user_id, expire_s=args.expire))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from emulator.demo import run_demo

    return run_demo(use_running=args.use_running, state_dir=Path(args.state_dir) if args.state_dir else None,
                    runtime=args.runtime, image_dir=Path(args.image_dir), only_class=args.only_class)


def _runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime", choices=RUNTIMES, default="code",
                        help="code: each run is the handler in SCF's Python runtime (default); image: each run goes "
                             "through the deployed image's entry server (POST /event-invoke), built by "
                             "./dev package --image")
    parser.add_argument("--image-dir", default=str(DEFAULT_IMAGE_DIR),
                        help="with --runtime image: the image's build context (default: build/image)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the local cloud in the foreground")
    up.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR),
                    help=f"where Redis data, COS objects and run logs are kept (default: ./{DEFAULT_STATE_DIR})")
    for name in ("gateway", "cloud-api", "room", "cos", "redis", "console"):
        up.add_argument(f"--{name}-port", type=_port, default=0, metavar="P", help=f"{name} port (default: any free port)")
    up.add_argument("--max-concurrency", type=_positive(int), default=8, metavar="N", help="function runs at once before 432 (default 8)")
    up.add_argument("--time-limit", type=_positive(float), default=86400.0, metavar="SECONDS",
                    help="the functions' execution timeout (default 86400, SCF's async ceiling)")
    up.add_argument("--functions-dir", default=str(Path(__file__).resolve().parents[1] / "functions"),
                    help="directory holding <function>/index.py code roots (default: the repository's functions/)")
    _runtime_options(up)
    up.add_argument("--timer-tick", type=_positive(float), default=None, metavar="SECONDS",
                    help="run serverless.yml's timer triggers this often instead of on their schedule")
    up.set_defaults(run=_up)

    sig = sub.add_parser("usersig", help="print a UserSig valid in the emulator's rooms")
    sig.add_argument("user_id", metavar="USER_ID")
    sig.add_argument("--expire", type=_positive(int), default=180 * 86400, metavar="SECONDS")
    sig.set_defaults(run=_usersig)

    demo = sub.add_parser("demo", help="push a clip into a room, record it, stop both, show the result; then the AI class")
    demo.add_argument("--use-running", metavar="STATE_DIR",
                      help="use the cloud already running with this state directory instead of starting one")
    demo.add_argument("--state-dir", help="state directory of the cloud the demo starts (default: a new "
                                          "directory under the system's temp dir, kept so the files can be looked at)")
    demo.add_argument("--class", dest="only_class", action="store_true",
                      help="the AI class alone (a lesson pushed, a student answering aloud, feedback switched in)")
    _runtime_options(demo)
    demo.set_defaults(run=_demo)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
