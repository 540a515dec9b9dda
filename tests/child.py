"""A function run in a process of its own, to be signalled or killed:
`python -m tests.child FUNCTION PARAMS_JSON CONTEXT_JSON`.

Calls the real handler from its file (functions/FUNCTION/index.py), as SCF would, and prints the
result as the last stdout line."""
import importlib.util
import json
import sys
from pathlib import Path

FUNCTIONS = Path(__file__).resolve().parents[1] / "functions"

if __name__ == "__main__":
    name = sys.argv[1]
    spec = importlib.util.spec_from_file_location(f"{name}_index", FUNCTIONS / name / "index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main_handler(json.loads(sys.argv[2]), json.loads(sys.argv[3]))
    print(json.dumps(result), flush=True)
