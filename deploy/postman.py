"""A Postman collection (v2.1) made from openapi.yaml: one request per example of each endpoint.

    python -m deploy.postman [--spec openapi.yaml] [--out deploy/postman_collection.json]

The collection's `baseUrl` variable is the gateway: the API Gateway URL after `sls deploy`, or the
local cloud's (`python -m emulator up` prints it as "gateway").
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
LOCAL_GATEWAY = "http://127.0.0.1:9000"


def _server_url(spec: dict[str, Any]) -> str:
    server = (spec.get("servers") or [{"url": LOCAL_GATEWAY}])[0]
    url = server["url"]
    for name, var in (server.get("variables") or {}).items():
        url = url.replace("{" + name + "}", str(var.get("default", "")))
    return url


def collection(spec: dict[str, Any]) -> dict[str, Any]:
    folders = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            content = op["requestBody"]["content"]["application/json"]
            requests = []
            for key, example in content.get("examples", {}).items():
                requests.append({
                    "name": f"{op['operationId']}: {example.get('summary', key)}",
                    "request": {
                        "method": method.upper(),
                        "header": [{"key": "Content-Type", "value": "application/json"}],
                        "body": {"mode": "raw", "raw": json.dumps(example["value"], indent=2, ensure_ascii=False),
                                 "options": {"raw": {"language": "json"}}},
                        "url": {"raw": "{{baseUrl}}" + path, "host": ["{{baseUrl}}"],
                                "path": [p for p in path.split("/") if p]},
                        "description": op.get("description", ""),
                    },
                    "response": [],
                })
            folders.append({"name": path, "description": op.get("summary", ""), "item": requests})
    return {
        "info": {"name": spec["info"]["title"], "description": spec["info"].get("description", ""),
                 "schema": SCHEMA},
        "item": folders,
        "variable": [{"key": "baseUrl", "value": _server_url(spec), "type": "string"}],
    }


def render(spec_path: Path) -> str:
    spec = yaml.safe_load(spec_path.read_text("utf-8"))
    return json.dumps(collection(spec), indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m deploy.postman", description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", type=Path, default=REPO_ROOT / "openapi.yaml")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "deploy" / "postman_collection.json")
    args = ap.parse_args(argv)
    args.out.write_text(render(args.spec), "utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
