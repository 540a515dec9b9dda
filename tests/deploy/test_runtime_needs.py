"""What the image's native code needs from the system: read from the ELF files of the image's tree
(deploy/image/elf.py, checked against binutils' readelf), printed, and checked against what the base
provides (elf.BASE_SYSTEMS, the entry the Dockerfile's FROM line names); and why SCF's code runtimes
(CentOS 7.6) cannot load it."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy import package
from deploy.image import build as image_build
from deploy.image.elf import (
    BASE_SYSTEMS,
    BaseSystem,
    RuntimeNeeds,
    check_runtime,
    describe_needs,
    newest_defined,
    read_elf,
    runtime_needs,
    shared_objects,
)

LIBDIR = Path("/lib/x86_64-linux-gnu")
DEBIAN_12 = Path("/etc/debian_version").exists() and Path("/etc/debian_version").read_text().startswith("12.")
BOOKWORM = BASE_SYSTEMS["bookworm"]
CENTOS7 = BASE_SYSTEMS["centos7"]


@pytest.fixture(scope="module")
def site(image_context) -> Path:
    return Path(image_context.directory) / "app" / "site"


@pytest.fixture(scope="module")
def needs(site: Path) -> RuntimeNeeds:
    return runtime_needs(site)


def _readelf(path: Path) -> tuple[list[str], str | None, dict[str, set[str]], set[str]]:
    """(DT_NEEDED, DT_SONAME, version needs by library, versions defined) as binutils reads them."""
    dynamic = subprocess.run(["readelf", "-dW", str(path)], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dynamic)
    soname = re.search(r"\(SONAME\)\s+Library soname: \[(.+?)\]", dynamic)
    versions: dict[str, set[str]] = {}
    defined: set[str] = set()
    section, current = None, None
    for line in subprocess.run(["readelf", "-VW", str(path)], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        if "Version definition section" in line or "Version needs section" in line or "Version symbols" in line:
            section = line.split("'")[1] if "'" in line else None
        if section == ".gnu.version_r":
            m = re.search(r"Version: \d+\s+File: (\S+)", line)
            if m:
                current = versions.setdefault(m.group(1), set())
            m = re.search(r"Name: (\S+)\s+Flags", line)
            if m and current is not None:
                current.add(m.group(1))
        elif section == ".gnu.version_d":
            m = re.search(r"Flags: (\S+)\s+Index: \d+\s+Cnt: \d+\s+Name: (\S+)", line)
            if m and m.group(1) != "BASE":
                defined.add(m.group(2))
    return needed, soname.group(1) if soname else None, versions, defined


@pytest.mark.skipif(shutil.which("readelf") is None, reason="binutils' readelf is not installed")
def test_the_elf_reader_agrees_with_readelf_on_every_shared_object_of_the_image(site: Path):
    """Every .so of app/site (liteav's _liteav and libtxffmpeg, PyAV's FFmpeg in av.libs, pydantic-core,
    ...) and, for version definitions, this system's glibc and libstdc++."""
    files = shared_objects(site)
    assert len(files) > 50 and any(p.name.startswith("_liteav") for p in files)
    assert any(p.parent.name == "av.libs" and p.name.startswith("libavcodec") for p in files)
    system = [p for p in (LIBDIR / "libc.so.6", LIBDIR / "libstdc++.so.6") if p.exists()]
    differ = []
    for path in files + system:
        elf = read_elf(path)
        assert elf is not None, path
        if (elf.needed, elf.soname, elf.versions, elf.defines) != _readelf(path):
            differ.append(path.name)
    assert differ == []
    if system:
        assert "GLIBC_2.17" in read_elf(system[0]).defines  # type: ignore[union-attr]


def test_files_that_are_not_elf_are_skipped_and_a_truncated_one_is_an_error(site: Path, tmp_path: Path):
    (tmp_path / "notes.so").write_text("not a shared object")
    assert read_elf(tmp_path / "notes.so") is None
    broken = tmp_path / "broken.so"
    [liteav] = [p for p in shared_objects(site / "liteav") if p.name.startswith("_liteav")]
    broken.write_bytes(liteav.read_bytes()[:200])
    with pytest.raises(package.PackageError, match="broken.so: truncated ELF file"):
        read_elf(broken)


def test_what_the_image_needs_from_the_system_leaving_out_what_it_ships(needs: RuntimeNeeds):
    # liteav's libtxffmpeg and PyAV's FFmpeg travel with their wheels; the rest is the system's.
    assert not [lib for lib in needs.libraries if re.match(r"lib(liteav|txffmpeg|av|sw|x26|vpx)", lib)]
    assert {"libc.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1"} <= set(needs.libraries)
    assert "liteav/_liteav.cpython-311-x86_64-linux-gnu.so" in needs.libraries["libstdc++.so.6"]
    # PyAV 18's FFmpeg needs glibc 2.28, liteav a C++11 libstdc++ (GLIBCXX_3.4.21, CXXABI_1.3.11).
    versions = needs.versions
    assert (versions["GLIBC"], versions["GLIBCXX"], versions["CXXABI"]) == ("2.28", "3.4.21", "1.3.11")
    assert list(versions)[:4] == ["GLIBC", "GLIBCXX", "CXXABI", "GCC"]
    line = describe_needs(needs)
    assert line.startswith("GLIBC_2.28, GLIBCXX_3.4.21, CXXABI_1.3.11, GCC_")
    assert "; system libraries " in line and "libstdc++.so.6" in line


def test_the_dockerfiles_base_has_all_of_it(image_context, needs: RuntimeNeeds):
    python, system = image_build.base_of(image_build.base_image())
    assert system is BOOKWORM and python == image_context.python
    assert check_runtime(needs, system) == [] and image_context.problems == []
    assert image_context.base_system == BOOKWORM.name


def test_what_a_base_lacks_is_named_with_who_needs_it(needs: RuntimeNeeds):
    old = BaseSystem("old-image", BOOKWORM.libraries - {"libz.so.1"}, {**BOOKWORM.versions, "GLIBCXX": "3.4.19"},
                     BOOKWORM.other_nodes)
    problems = check_runtime(needs, old)
    [zlib] = [p for p in problems if p.startswith("libz.so.1 ")]
    assert zlib.startswith("libz.so.1 (needed by av.libs/libavcodec-") and "and 1 more)" in zlib
    assert needs.libraries["libz.so.1"][-1].startswith("liteav.libs/libtxffmpeg-")  # the one more
    assert zlib.endswith("is not known to be in old-image")
    [cxx] = [p for p in problems if p.startswith("GLIBCXX_3.4.21 ")]
    assert "liteav/_liteav" in cxx and cxx.endswith("is newer than old-image's GLIBCXX_3.4.19")
    no_cxx = BaseSystem("c-only", BOOKWORM.libraries - {"libstdc++.so.6"},
                        {k: v for k, v in BOOKWORM.versions.items() if k not in ("GLIBCXX", "CXXABI")})
    problems = check_runtime(needs, no_cxx)
    assert any(p.startswith("libstdc++.so.6 (needed by ") for p in problems)
    assert any("c-only is not known to provide GLIBCXX_*" in p for p in problems)
    # A version node with no number is only accepted where the base is known to define it.
    relr = RuntimeNeeds(nodes={"GLIBC_ABI_DT_RELR": ["x.so"]})
    assert check_runtime(relr, BOOKWORM) == []
    assert check_runtime(relr, CENTOS7) == [f"GLIBC_ABI_DT_RELR (needed by x.so) is not known to be in {CENTOS7.name}"]


def test_the_same_objects_cannot_load_on_the_code_runtimes_centos_7(needs: RuntimeNeeds):
    """What README "Why an image" cites: SCF's code runtimes run on CentOS 7.6 (glibc 2.17, GCC 4.8.5's
    libstdc++ GLIBCXX_3.4.19 / CXXABI_1.3.7), which lacks what liteav and PyAV need."""
    problems = check_runtime(needs, CENTOS7)
    [cxx] = [p for p in problems if p.startswith("GLIBCXX_3.4.21 ")]
    [abi] = [p for p in problems if p.startswith("CXXABI_1.3.11 ")]
    assert "liteav/_liteav" in cxx and "liteav/_liteav" in abi
    [glibc] = [p for p in problems if p.startswith("GLIBC_2.28 ")]
    assert "av.libs/libav" in glibc
    # liteav's own glibc needs are older than 2.17: its C++ library is what rules CentOS 7 out.
    liteav_glibc = [node for node, who in needs.nodes.items()
                    if node.startswith("GLIBC_2.") and any(w.startswith("liteav") for w in who)]
    assert liteav_glibc and max(tuple(map(int, n[6:].split("."))) for n in liteav_glibc) <= (2, 17)


@pytest.mark.skipif(not DEBIAN_12, reason="the base's facts are checked on a Debian 12 host (the base's release)")
def test_the_bookworm_facts_are_debian_12s():
    present = {lib for lib in BOOKWORM.libraries if (LIBDIR / lib).exists()}
    assert present == set(BOOKWORM.libraries)
    libraries = [LIBDIR / lib for lib in BOOKWORM.libraries]
    defined = newest_defined(libraries)
    for family, version in BOOKWORM.versions.items():
        assert defined[family] == version, (family, defined[family])
    every = {name for path in libraries for name in read_elf(path).defines}  # type: ignore[union-attr]
    assert BOOKWORM.other_nodes <= every


def test_a_base_whose_system_is_not_known_is_refused_before_anything_is_installed(tmp_path: Path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("# a comment\nFROM --platform=linux/amd64 python:3.11-alpine\nCMD [\"python\"]\n")
    out, cache = tmp_path / "out" / "image", tmp_path / "cache"
    with pytest.raises(package.PackageError, match=r"base python:3\.11-alpine is not python:X\.Y\.Z-slim-<release> "
                                                   r"with a release whose system libraries are known .*bookworm"):
        image_build.write_context(out, cache=cache, dockerfile=dockerfile)
    assert not out.exists() and not cache.exists()
    (tmp_path / "empty").write_text("# no FROM\n")
    with pytest.raises(package.PackageError, match="has no FROM line"):
        image_build.write_context(out, cache=cache, dockerfile=tmp_path / "empty")


@pytest.mark.parametrize("image, python", [
    ("python:3.11.14-slim-bookworm@sha256:" + "a" * 64, "3.11"),
    ("python:3.12-slim-bookworm", "3.12"),
    ("mirror.ccs.tencentyun.com/library/python:3.11.9-slim-bookworm", "3.11"),
])
def test_the_cpython_and_the_system_come_from_the_from_line(image: str, python: str):
    assert image_build.base_of(image) == (python, BOOKWORM)
