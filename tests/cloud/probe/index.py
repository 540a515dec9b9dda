"""A test function: does what its parameters say, so tests can see what the emulator's SCF gives it.

Parameters (from the API Gateway query string and body, or the Invoke event): `out` (write event, context, environment
and process ids there), `mode` (echo, raise, failed, gateway_failed, crash, sleep), `seconds`,
`marker` (written when SIGTERM arrives), `child` (start a `sleep` child process, to see it killed).
"""
import json
import os
import signal
import subprocess
import time


def _params(event):
    if isinstance(event, dict) and "requestContext" in event and "httpMethod" in event:
        params = dict(event.get("queryString") or {})
        try:
            body = json.loads(event.get("body") or "{}")
        except ValueError:
            body = {}
        return {**params, **body} if isinstance(body, dict) else params
    return event if isinstance(event, dict) else {}


def _can_create(path):
    try:
        os.makedirs(path)
    except OSError:
        return False
    os.rmdir(path)
    return True


def main_handler(event, context):
    p = _params(event)
    mode = p.get("mode", "echo")
    got = []
    signal.signal(signal.SIGTERM, lambda *_: got.append("SIGTERM"))
    child = subprocess.Popen(["sleep", "60"]) if p.get("child") else None
    if p.get("out"):
        with open(p["out"] + ".tmp", "w") as f:
            json.dump({"event": event, "context": context, "env": dict(os.environ), "cwd": os.getcwd(),
                       "pid": os.getpid(), "child": child.pid if child else None,
                       "home_writable": _can_create(os.path.expanduser("~/.cache/probe")),
                       "tmp_writable": _can_create("/tmp/probe-" + str(os.getpid()))}, f)
        os.replace(p["out"] + ".tmp", p["out"])
    print(json.dumps({"msg": "probe started", "mode": mode}), flush=True)
    if mode == "raise":
        raise RuntimeError("probe asked to fail")
    if mode == "failed":
        return {"status": "failed", "reason": "probe", "message": "the probe reports a failure"}
    if mode == "gateway_failed":
        return {"isBase64Encoded": False, "statusCode": 400, "headers": {},
                "body": json.dumps({"status": "failed", "reason": "invalid_parameters", "message": "x: is required"})}
    if mode == "crash":
        os._exit(3)
    if mode == "sleep":
        deadline = time.monotonic() + float(p.get("seconds", 30))
        while time.monotonic() < deadline and not got:
            time.sleep(0.02)
        if got:
            if p.get("marker"):
                with open(p["marker"], "w") as f:
                    f.write(got[0])
            print("graceful stop", flush=True)
            return {"stoppedBy": got[0]}
        return {"slept": p.get("seconds")}
    return {"echo": p.get("echo")}
