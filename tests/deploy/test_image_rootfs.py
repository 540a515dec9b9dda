"""The image's tree booted on the system the Dockerfile names (deploy/image/rootfs.py, `./dev check-image`):
a bare Debian 12 root file system with its own CPython, the tree read-only, uid 10000, only /tmp
writable, loopback alone; driven as SCF drives it through a recording, a push and a push_control call.

Runs where the root file system was built on this machine (`./dev check-image` builds it; the build
needs Debian's archive, which the tests never reach)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.image import rootfs

REPO = Path(__file__).resolve().parents[2]
STEPS = ("native modules load", "sandbox", "record_stream enters the room", "push: cold start",
         "push_control status", "push_control stop", "push into the room", "record to COS")


@pytest.fixture(scope="module")
def built() -> rootfs.Recipe:
    recipe = rootfs.recipe()
    if not recipe.built():
        pytest.skip(f"no cached root file system for the Dockerfile's base at {recipe.directory}: "
                    f"build it with ./dev check-image (needs Debian's archive and root)")
    if os.geteuid() != 0:
        pytest.skip("booting the image's tree needs root (mount, chroot, setpriv)")
    return recipe


def test_the_image_tree_boots_in_debian_12_and_serves_a_push_a_recording_and_a_control_call(built, image_context,
                                                                                            tmp_path):
    app = rootfs.install_app(built, Path(image_context.directory), tmp_path / "rootfs-app")
    assert list(app.joinpath("code").glob("__pycache__/server.cpython-311.pyc"))  # compiled there, as the RUN does
    proc = subprocess.run([sys.executable, "-m", "deploy.image.rootfs", "check", "--app", str(app)], cwd=str(REPO),
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr[-3000:]
    table = [re.fullmatch(r"(.+?) {2,}(yes|NO) {2,}(.*)", line) for line in out.splitlines()]
    rows = {m.group(1): m.group(3) for m in table if m and m.group(2) == "yes"}
    assert set(rows) == set(STEPS), out
    # Debian's own CPython 3.11 and glibc 2.36 ran it, not this interpreter.
    assert "Python 3.11." in rows["native modules load"] and "glibc 2.36" in rows["native modules load"]
    assert "uid/gid 10000/10000" in rows["sandbox"] and "writable ['/tmp']" in rows["sandbox"]
    assert "net ['lo']" in rows["sandbox"]
    assert "-> first frame in the room" in rows["push: cold start"]
    assert "terminated (control_stop)" in rows["push into the room"]
    assert "audio+video" in rows["record to COS"]
    assert '"cold_start_s"' in out
