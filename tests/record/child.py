"""A recording in a process of its own: `python -m tests.record.child PARAMS_JSON CONTEXT_JSON`.

Calls the real handler from its file, as SCF would, and prints the result as the last stdout line."""
import importlib.util
import json
import sys
from pathlib import Path

INDEX = Path(__file__).resolve().parents[2] / "functions" / "record_stream" / "index.py"

if __name__ == "__main__":
    spec = importlib.util.spec_from_file_location("record_stream_index", INDEX)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main_handler(json.loads(sys.argv[1]), json.loads(sys.argv[2]))
    print(json.dumps(result), flush=True)
