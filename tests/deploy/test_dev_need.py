"""`./dev`'s `need`: a command that is on the PATH but cannot start (ffmpeg missing a shared library)
counts as missing and its Debian package is reinstalled; one that still fails afterwards stops the
command with the reason; one that runs is left alone. apt-get is a recording stand-in here."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BROKEN = "#!/bin/sh\necho 'ffmpeg: error while loading shared libraries: libavdevice.so.59' >&2\nexit 127\n"
WORKING = "#!/bin/sh\necho 'ffmpeg version 5.1.6-0+deb12u1'\n"


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def _need(tmp_path: Path, ffmpeg: str, installs: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "ffmpeg", ffmpeg)
    log = tmp_path / "apt.log"
    # apt-get: record the call; `install` puts `installs` in place of ffmpeg (what the package brings).
    (tmp_path / "installed").write_text(installs)
    _script(bin_dir / "apt-get", f'#!/bin/sh\necho "$*" >> {log}\n'
                                 f'case "$1" in install) cp {tmp_path / "installed"} {bin_dir / "ffmpeg"};; esac\n')
    _script(bin_dir / "sudo", '#!/bin/sh\nexec "$@"\n')
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    done = subprocess.run(["bash", "-c", 'source ./dev && need ffmpeg ffmpeg "the anchor" ffmpeg -version'],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
    return done, log.read_text().splitlines() if log.exists() else []


def test_a_present_but_broken_command_is_reinstalled(tmp_path):
    done, apt = _need(tmp_path, BROKEN, WORKING)
    assert done.returncode == 0, done.stderr
    assert apt == ["update -qq", "install --reinstall -y -qq ffmpeg"]
    assert "but `ffmpeg -version` fails" in done.stderr


def test_a_command_still_broken_after_the_install_stops_with_the_reason(tmp_path):
    done, apt = _need(tmp_path, BROKEN, BROKEN)
    assert done.returncode != 0
    assert "still does not run" in done.stderr and "libavdevice.so.59" in done.stderr


def test_a_working_command_is_left_alone(tmp_path):
    done, apt = _need(tmp_path, WORKING, WORKING)
    assert done.returncode == 0 and apt == []
