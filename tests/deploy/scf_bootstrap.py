"""Runs a handler as SCF's Python runtime would, in an interpreter started with `python -I -S`:
no site-packages, no PYTHONPATH, no repository; only the unpacked code root and layers on sys.path
(SCF's /var/user and /opt).

stdin: {"paths": [code root, layer dir, ...], "event": ..., "context": ...}
stdout (last line): {"result": ..., "foreign_modules": [...]} or {"error": "..."}
"""
import importlib
import json
import os
import sys
import sysconfig
import traceback


def main():
    request = json.loads(sys.stdin.read())
    paths = request["paths"]
    sys.path[0:0] = paths
    os.chdir(paths[0])
    try:
        result = importlib.import_module("index").main_handler(request["event"], request["context"])
    except BaseException as e:  # noqa: BLE001
        traceback.print_exc()
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    # Every module must come from the package or the standard library, never from this machine's venv.
    allowed = [os.path.realpath(p) for p in paths] + [os.path.realpath(sysconfig.get_paths()["stdlib"]),
                                                     os.path.realpath(sysconfig.get_paths()["platstdlib"])]
    foreign = sorted({os.path.realpath(m.__file__) for name, m in list(sys.modules.items())
                      if name != "__main__" and getattr(m, "__file__", None)
                      and not any(os.path.realpath(m.__file__).startswith(a + os.sep) for a in allowed)})
    print(json.dumps({"result": result, "foreign_modules": foreign}, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
