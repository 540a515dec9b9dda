"""`./dev package` (python -m deploy): the functions' container image for SCF, its build context and,
where a container engine answers, the image itself (deploy/image/build.py; what it installs and
copies: deploy/package.py).

    python -m deploy [--tag NAME:TAG] [--out build] [--cache DIR] [--image]

`--image` is accepted and changes nothing (the command's former spelling, ./dev package --image).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from deploy.image import build as image
from deploy.package import REPO_ROOT


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="./dev package", description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "build", help="output folder (default build/): "
                    "the context goes to OUT/image")
    ap.add_argument("--cache", type=Path, default=None, help="where installed dependencies are kept (default OUT/.cache)")
    ap.add_argument("--tag", default=image.DEFAULT_TAG, help="the image's name:tag (default %(default)s)")
    ap.add_argument("--image", action="store_true",
                    help="accepted for the command's former spelling (./dev package --image); changes nothing")
    args = ap.parse_args(argv)
    return image.main(args.out / "image", args.cache, args.tag)


if __name__ == "__main__":
    sys.exit(main())
