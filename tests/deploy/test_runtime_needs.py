"""What the packaged native code needs from the runtime's image: read from the ELF files themselves
(deploy/package.py's own reader, checked against binutils' readelf), printed, and checked against a
table of what the target image has."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy import package

liteav = pytest.importorskip("liteav")
LITEAV = Path(liteav.__file__).parent
NATIVE = sorted(p for p in [*LITEAV.glob("*.so*"), *(LITEAV.parent / "liteav.libs").glob("*.so*")] if p.is_file())


def _readelf(path: Path) -> tuple[list[str], dict[str, set[str]]]:
    dynamic = subprocess.run(["readelf", "-dW", str(path)], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dynamic)
    versions: dict[str, set[str]] = {}
    current = None
    for line in subprocess.run(["readelf", "-VW", str(path)], capture_output=True, text=True, check=True).stdout.splitlines():
        m = re.search(r"Version: \d+\s+File: (\S+)", line)
        if m:
            current = versions.setdefault(m.group(1), set())
        m = re.search(r"Name: (\S+)\s+Flags", line)
        if m and current is not None:
            current.add(m.group(1))
    return needed, versions


@pytest.mark.skipif(shutil.which("readelf") is None, reason="binutils' readelf is not installed")
@pytest.mark.parametrize("path", NATIVE, ids=lambda p: p.name)
def test_the_elf_reader_agrees_with_readelf(path: Path):
    needs = package.read_elf_needs(path)
    assert needs is not None
    needed, versions = _readelf(path)
    assert needs.needed == needed
    assert needs.versions == versions


def test_files_that_are_not_elf_are_skipped_and_a_truncated_one_is_an_error(tmp_path: Path):
    (tmp_path / "notes.so").write_text("not a shared object")
    assert package.read_elf_needs(tmp_path / "notes.so") is None
    broken = tmp_path / "broken.so"
    broken.write_bytes(NATIVE[0].read_bytes()[:200])
    with pytest.raises(package.PackageError, match="truncated"):
        package.read_elf_needs(broken)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """liteav as the package installs it: liteav/ (with libliteav.so) and liteav.libs/."""
    root = tmp_path_factory.mktemp("site")
    shutil.copytree(LITEAV, root / "liteav", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(LITEAV.parent / "liteav.libs", root / "liteav.libs")
    return root


def test_what_liteav_needs_from_the_image_leaving_out_what_it_bundles(site: Path):
    needs = package.runtime_needs(site)
    # libliteav.so and libtxffmpeg travel with the package; the rest is the image's.
    assert not [lib for lib in needs["libraries"] if "liteav" in lib or "txffmpeg" in lib]
    assert {"libc.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1"} <= set(needs["libraries"])
    assert needs["libraries"]["libstdc++.so.6"] == ["liteav/_liteav.cpython-311-x86_64-linux-gnu.so"]
    assert {"GLIBC", "GLIBCXX", "CXXABI", "GCC"} <= set(needs["versions"])
    assert needs["glibc"] == needs["versions"]["GLIBC"]
    line = package.describe_needs(needs)
    assert line.startswith(f"glibc >= {needs['glibc']}, ") and "GLIBCXX_" in line and "libstdc++.so.6" in line


def test_the_default_target_has_all_of_it(site: Path):
    needs = package.runtime_needs(site)
    assert package.check_runtime(needs, package.TARGET_IMAGES[package.DEFAULT_TARGET]) == []


def test_what_a_target_lacks_is_named_with_who_needs_it(site: Path):
    needs = package.runtime_needs(site)
    full = package.TARGET_IMAGES[package.DEFAULT_TARGET]
    old = package.TargetImage(
        name="old-image", libraries=full.libraries - {"libz.so.1"},
        versions={**full.versions, "GLIBCXX": "3.4.19"}, other_nodes=full.other_nodes)
    problems = package.check_runtime(needs, old)
    assert any(p.startswith("libz.so.1 (needed by liteav.libs/libtxffmpeg-") and "not known to be in old-image" in p
               for p in problems), problems
    newest = needs["versions"]["GLIBCXX"]
    assert any(p.startswith(f"GLIBCXX_{newest} (needed by liteav/_liteav") and "newer than old-image's GLIBCXX_3.4.19"
               in p for p in problems), problems
    no_cxx = package.TargetImage(name="c-only", libraries=full.libraries,
                                 versions={k: v for k, v in full.versions.items() if k not in ("GLIBCXX", "CXXABI")})
    assert any("c-only is not known to provide GLIBCXX_*" in p for p in package.check_runtime(needs, no_cxx))


def test_an_unknown_target_is_refused_before_anything_is_built(tmp_path: Path):
    with pytest.raises(package.PackageError, match="--target must be one of python:3.11-slim-bookworm"):
        package.build(tmp_path, "3.11", target="alpine")
