"""`./dev package` (python -m deploy): requirements.txt read for the image's Linux, then the
image's build context written and checked, and the image built where a container engine answers."""
from __future__ import annotations

import json

import pytest

from deploy import __main__ as cli, package
from deploy.image import build as image_build

FAKE_ENGINE = """#!/bin/sh
# A container engine that answers: records its arguments, "builds", reports a size, "runs" --check.
echo "$@" >> "$FAKE_LOG"
case "$1" in
  info) exit 0 ;;
  build) echo "built"; exit 0 ;;
  image) echo 423456789 ;;
  run) echo '{"python": "3.11.14", "glibc": "glibc 2.36", "modules": {"liteav": "/app/site/liteav/__init__.py"}}' ;;
esac
"""


def test_markers_are_evaluated_for_the_image_not_this_machine(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text('av==18.1.0\nliteav==1.0; sys_platform == "linux"\nwinonly==1; sys_platform == "win32"\n'
                   "# a comment\n-r other.txt\n")
    assert package.target_requirements(req, "3.11") == ["av==18.1.0", "liteav==1.0"]


def test_package_without_an_engine_writes_the_context_and_says_how_to_build(package_cache, tmp_path, monkeypatch,
                                                                             capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no docker, podman or buildah
    rc = cli.main(["--out", str(tmp_path / "out"), "--cache", str(package_cache)])
    out = capsys.readouterr().out
    assert rc == 0
    context = tmp_path / "out" / "image"
    assert (context / "Dockerfile").is_file() and (context / "app" / "code" / "server.py").is_file()
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name not in ("image", ".cache")]  # no code/, layers/
    assert f"base {image_build.base_image()}" in out
    assert "the .so files need GLIBC_2.28, GLIBCXX_3.4.21, CXXABI_1.3.11" in out
    assert "libstdc++.so.6" in out and "all present in the base, python:3.11-slim-bookworm (Debian 12)" in out
    assert "no docker, podman or buildah on PATH" in out
    assert f"docker build --platform linux/amd64 -t trtc-media:latest {context}" in out
    manifest = json.loads((context / "manifest.json").read_text())
    assert manifest["python"] == "3.11" and manifest["newest_versions"]["GLIBC"] == "2.28"
    assert "liteav/_liteav.cpython-311-x86_64-linux-gnu.so" in manifest["needs"]["nodes"]["GLIBCXX_3.4.21"]


def test_package_image_builds_and_tags_where_an_engine_answers(package_cache, tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    engine = bin_dir / "podman"
    engine.write_text(FAKE_ENGINE)
    engine.chmod(0o755)
    log = tmp_path / "engine.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_LOG", str(log))
    out_dir = tmp_path / "out"
    # --image: the command's former spelling, still accepted (the emulator's hints name it).
    rc = cli.main(["--image", "--out", str(out_dir), "--cache", str(package_cache), "--tag", "ccr.example/ns/trtc:v1"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    context = out_dir / "image"
    calls = log.read_text().splitlines()
    assert calls[0] == "info"
    assert calls[1] == f"build --platform linux/amd64 -t ccr.example/ns/trtc:v1 -f {context / 'Dockerfile'} {context}"
    assert calls[2] == "image inspect --format {{.Size}} ccr.example/ns/trtc:v1"
    assert calls[3] == ("run --rm --platform linux/amd64 --network none ccr.example/ns/trtc:v1 "
                        + " ".join(image_build.COMMAND) + " --check")
    assert "built ccr.example/ns/trtc:v1 with podman: 403.8 MB" in printed
    assert "inside it: Python 3.11.14, glibc 2.36; liteav load" in printed
    assert json.loads((context / "manifest.json").read_text())["image_bytes"] == 423456789


def test_a_base_the_package_cannot_check_fails_the_command_naming_it(tmp_path, monkeypatch, capsys):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.11-slim-trixie\n")
    monkeypatch.setattr(image_build, "DOCKERFILE", dockerfile)
    rc = cli.main(["--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("package: the Dockerfile's base python:3.11-slim-trixie is not")
    assert "Traceback" not in err


def test_a_listed_function_without_its_code_fails_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(package, "FUNCTIONS", {**package.FUNCTIONS, "no_such_function": ()})
    with pytest.raises(package.PackageError, match=r"FUNCTIONS lists 'no_such_function', but "
                                                   r"functions/no_such_function/index.py is missing"):
        package.build_code_root(tmp_path / "code")
    monkeypatch.undo()
    package.build_code_root(tmp_path / "code2")  # the real list: every function's folder, and shared/
    assert {p.name for p in (tmp_path / "code2" / "functions").iterdir()} == set(package.FUNCTIONS)
