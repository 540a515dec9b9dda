"""What shared objects need from the system they load on, read from their ELF headers (no tools), and
what the systems they may meet provide.

    needs = runtime_needs(site)               # the .so files under `site`, together
    needs.libraries                           # {"libstdc++.so.6": ["liteav/_liteav...so"], ...}: not shipped
    needs.versions                            # {"GLIBC": "2.28", "GLIBCXX": "3.4.21", ...}: the newest asked
    check_runtime(needs, BASE_SYSTEMS["bookworm"])   # what that system lacks, one sentence each
    describe_needs(needs)                     # one line for people

A library shipped in the tree (by file name or soname) is not a system need. ELF32 and ELF64, either
byte order; a file that is not ELF is skipped, a truncated or malformed one is a PackageError.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable

from deploy.package import PackageError

_SHT_DYNAMIC, _SHT_GNU_VERDEF, _SHT_GNU_VERNEED = 6, 0x6FFFFFFD, 0x6FFFFFFE
_DT_NULL, _DT_NEEDED, _DT_SONAME = 0, 1, 14
_VER_FLG_BASE = 1  # the Verdef entry naming the file itself, not a version it provides
# A numbered version node: GLIBC_2.28, GLIBCXX_3.4.30, CXXABI_1.3.13, GCC_12.0.0, ZLIB_1.2.12.
_NODE = re.compile(r"([A-Z][A-Z0-9_]*?)_(\d+(?:\.\d+)*)")
# Families printed first, in this order (the rest alphabetically).
_FAMILY_ORDER = ("GLIBC", "GLIBCXX", "CXXABI", "GCC")


@dataclass
class ElfFile:
    """What one shared object tells the dynamic loader."""

    path: Path
    soname: str | None = None
    needed: list[str] = field(default_factory=list)
    # Version nodes it needs, by the library that must define them: {"libc.so.6": {"GLIBC_2.28"}}.
    versions: dict[str, set[str]] = field(default_factory=dict)
    # Version nodes it defines itself (a system library's .gnu.version_d): {"GLIBC_2.36", ...}.
    defines: set[str] = field(default_factory=set)


def read_elf(path: Path) -> ElfFile | None:
    """DT_NEEDED, DT_SONAME and the version needs and definitions of an ELF file; None if it is not one.
    Reads the headers and the sections it needs, never the whole file."""
    with open(path, "rb") as f:
        ident = f.read(16)
        if len(ident) < 16 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
            return None
        return _Reader(Path(path), f, wide=ident[4] == 2, order="<" if ident[5] == 1 else ">").read()


class _Reader:
    def __init__(self, path: Path, f: BinaryIO, wide: bool, order: str) -> None:
        self.path, self.f, self.wide, self.order = path, f, wide, order
        self.sections: list[tuple[int, int, int, int, int, int]] = []  # (type, offset, size, link, info, entsize)

    def unpack(self, fmt: str, offset: int) -> tuple[int, ...]:
        self.f.seek(offset)
        size = struct.calcsize(self.order + fmt)
        data = self.f.read(size)
        if len(data) != size:
            raise PackageError(f"{self.path}: truncated ELF file")
        return struct.unpack(self.order + fmt, data)

    def read(self) -> ElfFile:
        header = "HHIQQQIHHHHHH" if self.wide else "HHIIIIIHHHHHH"
        (_, _, _, _, _, shoff, _, _, _, _, shentsize, shnum, _) = self.unpack(header, 16)
        shdr = "IIQQQQIIQQ" if self.wide else "IIIIIIIIII"
        for i in range(shnum if shoff else 0):
            _, kind, _, _, offset, size, link, info, _, entsize = self.unpack(shdr, shoff + i * shentsize)
            self.sections.append((kind, offset, size, link, info, entsize))
        elf = ElfFile(self.path)
        for kind, offset, size, link, info, entsize in self.sections:
            if kind == _SHT_DYNAMIC:
                self._dynamic(elf, offset, size, link, entsize)
            elif kind == _SHT_GNU_VERNEED:
                self._verneed(elf, offset, size, link, info)
            elif kind == _SHT_GNU_VERDEF:
                self._verdef(elf, offset, size, link, info)
        return elf

    def _dynamic(self, elf: ElfFile, offset: int, size: int, link: int, entsize: int) -> None:
        """The libraries the file needs (DT_NEEDED) and its own name (DT_SONAME)."""
        dyn = "qQ" if self.wide else "iI"
        for at in range(offset, offset + size, entsize or struct.calcsize(self.order + dyn)):
            tag, value = self.unpack(dyn, at)
            if tag == _DT_NULL:
                break
            if tag == _DT_NEEDED:
                elf.needed.append(self.string(link, value))
            elif tag == _DT_SONAME:
                elf.soname = self.string(link, value)

    def _verneed(self, elf: ElfFile, offset: int, size: int, link: int, count_needs: int) -> None:
        """Verneed records (one per library, `count_needs` of them: sh_info), each with Vernaux entries."""
        at = offset
        for _ in range(count_needs):
            self.within(at, offset, size)
            _, count, file_name, aux, next_need = self.unpack("HHIII", at)
            wanted = elf.versions.setdefault(self.string(link, file_name), set())
            aux_at = at + aux
            for _ in range(count):
                self.within(aux_at, offset, size)
                _, _, _, name, next_aux = self.unpack("IHHII", aux_at)
                wanted.add(self.string(link, name))
                aux_at += next_aux
            if not next_need:
                break
            at += next_need

    def _verdef(self, elf: ElfFile, offset: int, size: int, link: int, count_defs: int) -> None:
        """Verdef records, the first Verdaux of each naming the version."""
        at = offset
        for _ in range(count_defs):
            self.within(at, offset, size)
            _, flags, _, count, _, aux, next_def = self.unpack("HHHHIII", at)
            if count and not flags & _VER_FLG_BASE:
                elf.defines.add(self.string(link, self.unpack("I", at + aux)[0]))
            if not next_def:
                break
            at += next_def

    def within(self, at: int, offset: int, size: int) -> None:
        # A record outside its section is a broken file, not a reason to read on forever.
        if not offset <= at < offset + size:
            raise PackageError(f"{self.path}: malformed ELF version section")

    def string(self, table: int, index: int) -> str:
        if table >= len(self.sections):
            raise PackageError(f"{self.path}: malformed ELF string table reference")
        _, offset, size, _, _, _ = self.sections[table]
        self.f.seek(offset + index)
        raw = self.f.read(min(4096, max(0, size - index)))
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def shared_objects(root: Path) -> list[Path]:
    """The shared objects under `root` (`*.so` and versioned `*.so.N`), symlinks left out."""
    return sorted(p for p in Path(root).rglob("*")
                  if p.is_file() and not p.is_symlink() and (p.suffix == ".so" or ".so." in p.name))


@dataclass
class RuntimeNeeds:
    """What the shared objects of a tree need from the system, each need with the files (relative
    to the tree) that have it."""

    libraries: dict[str, list[str]] = field(default_factory=dict)  # soname -> who
    nodes: dict[str, list[str]] = field(default_factory=dict)  # version node -> who

    @property
    def versions(self) -> dict[str, str]:
        """The newest version asked of each family: {"GLIBC": "2.28", "GLIBCXX": "3.4.21", ...}."""
        newest: dict[str, str] = {}
        for node in self.nodes:
            m = _NODE.fullmatch(node)
            if m and (m.group(1) not in newest or _version_key(m.group(2)) > _version_key(newest[m.group(1)])):
                newest[m.group(1)] = m.group(2)
        order = {family: i for i, family in enumerate(_FAMILY_ORDER)}
        return dict(sorted(newest.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def runtime_needs(root: Path) -> RuntimeNeeds:
    """What the ELF files under `root` need from outside it."""
    elves = [e for e in (read_elf(p) for p in shared_objects(root)) if e is not None]
    shipped = {e.path.name for e in elves} | {e.soname for e in elves if e.soname}
    needs = RuntimeNeeds()
    for e in elves:
        who = e.path.relative_to(root).as_posix()
        for lib in e.needed:
            if lib not in shipped:
                needs.libraries.setdefault(lib, []).append(who)
        for lib, names in e.versions.items():
            if lib not in shipped:
                for name in sorted(names):
                    needs.nodes.setdefault(name, []).append(who)
    needs.libraries = dict(sorted(needs.libraries.items()))
    needs.nodes = dict(sorted(needs.nodes.items()))
    return needs


@dataclass(frozen=True)
class BaseSystem:
    """What a system provides to native code: its libraries, by soname, and the newest version node
    of each family they define (GLIBC: glibc; GLIBCXX, CXXABI: libstdc++; GCC: libgcc_s; ZLIB: zlib)."""

    name: str
    libraries: frozenset[str]
    versions: dict[str, str]
    # Version nodes that carry no number (glibc 2.36's GLIBC_ABI_DT_RELR).
    other_nodes: frozenset[str] = frozenset()


def _who(files: list[str]) -> str:
    return ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")


def check_runtime(needs: RuntimeNeeds, base: BaseSystem) -> list[str]:
    """What `needs` asks of `base` that it is not known to provide, one sentence each naming who needs it
    (empty: everything loads there)."""
    problems = []
    for lib, files in needs.libraries.items():
        if lib not in base.libraries:
            problems.append(f"{lib} (needed by {_who(files)}) is not known to be in {base.name}")
    for node, files in needs.nodes.items():
        m = _NODE.fullmatch(node)
        if m is None:
            if node not in base.other_nodes:
                problems.append(f"{node} (needed by {_who(files)}) is not known to be in {base.name}")
            continue
        family, version = m.groups()
        have = base.versions.get(family)
        if have is None:
            problems.append(f"{node} (needed by {_who(files)}): {base.name} is not known to provide {family}_*")
        elif _version_key(version) > _version_key(have):
            problems.append(f"{node} (needed by {_who(files)}) is newer than {base.name}'s {family}_{have}")
    return problems


def describe_needs(needs: RuntimeNeeds) -> str:
    """"GLIBC_2.28, GLIBCXX_3.4.21, ...; system libraries libc.so.6, ...": the newest of each family, then
    the libraries."""
    versions = ", ".join(f"{family}_{version}" for family, version in needs.versions.items())
    return f"{versions or 'no versioned symbols'}; system libraries {', '.join(needs.libraries) or 'none'}"


def newest_defined(libraries: Iterable[Path]) -> dict[str, str]:
    """The newest version of each family these libraries define (to check BASE_SYSTEMS on a real system)."""
    best: dict[str, str] = {}
    for path in libraries:
        elf = read_elf(path)
        for name in elf.defines if elf else ():
            m = _NODE.fullmatch(name)
            if m and (m.group(1) not in best or _version_key(m.group(2)) > _version_key(best[m.group(1)])):
                best[m.group(1)] = m.group(2)
    return best


# glibc's libraries (libc6; libmvec since glibc 2.22).
_GLIBC_217 = frozenset({
    "ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1",
    "libresolv.so.2", "libutil.so.1", "libanl.so.1", "libnsl.so.1", "libBrokenLocale.so.1", "libthread_db.so.1",
    "libnss_files.so.2", "libnss_dns.so.2",
})
_GLIBC_236 = _GLIBC_217 | {"libmvec.so.1"}
# libstdc++, libgcc_s and zlib: in every image of both (Debian: libstdc++6, libgcc-s1, zlib1g are
# required by apt and dpkg).
_CXX_AND_ZLIB = frozenset({"libstdc++.so.6", "libgcc_s.so.1", "libz.so.1"})

# The systems the packaged native code may meet, by name. Each entry says only what is known to be
# there: a soname or version not listed fails the check until someone confirms it and adds it here.
BASE_SYSTEMS = {
    # The image's base (deploy/image/Dockerfile FROM python:3.11.x-slim-bookworm): Debian 12, glibc 2.36,
    # libstdc++6 and libgcc-s1 from GCC 12, zlib1g 1.2.13. tests/deploy checks these on a Debian 12 host.
    "bookworm": BaseSystem(
        name="python:3.11-slim-bookworm (Debian 12)",
        libraries=_GLIBC_236 | _CXX_AND_ZLIB,
        versions={"GLIBC": "2.36", "GLIBCXX": "3.4.30", "CXXABI": "1.3.13", "GCC": "12.0.0", "ZLIB": "1.2.12"},
        other_nodes=frozenset({"GLIBC_ABI_DT_RELR"}),
    ),
    # SCF's code runtimes ("the SCF system environment (CentOS 7.6)"): glibc 2.17 and GCC 4.8.5's
    # libstdc++. Never deployed to; README "Why an image" cites the check against it.
    "centos7": BaseSystem(
        name="CentOS 7.6 (SCF's code runtimes)",
        libraries=_GLIBC_217 | _CXX_AND_ZLIB,
        versions={"GLIBC": "2.17", "GLIBCXX": "3.4.19", "CXXABI": "1.3.7", "GCC": "4.8.0"},
    ),
}
