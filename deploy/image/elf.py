"""What shared objects need from the system they load on: read from their ELF headers, no tools.

    needs = elf_needs(paths)      # the .so files of a tree
    needs.system                  # {"libc.so.6", "libstdc++.so.6", ...}: not shipped beside them
    needs.newest("GLIBC")         # (2, 28): the newest symbol version any of them asks for
    problems = needs.check(base)  # what `base` (a BaseSystem) lacks, in sentences

ELF64 little-endian only (x86_64 Linux, what SCF runs). A file that is not one is skipped.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

_SHT_DYNAMIC = 6
_SHT_GNU_VERDEF = 0x6FFFFFFD
_SHT_GNU_VERNEED = 0x6FFFFFFE
_DT_NEEDED = 1
_DT_SONAME = 14
_VERSION = re.compile(r"^([A-Z][A-Z_]*?)_(\d+(?:\.\d+)*)$")  # GLIBC_2.28, GLIBCXX_3.4.30, CXXABI_1.3.13


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


@dataclass
class ElfFile:
    path: Path
    soname: str | None
    needed: list[str]
    # soname -> symbol versions required from it ("GLIBC_2.14", ...)
    versions_needed: dict[str, set[str]]
    versions_defined: set[str]


def _cstr(blob: bytes, offset: int) -> str:
    end = blob.find(b"\0", offset)
    return blob[offset:end if end >= 0 else len(blob)].decode("ascii", "replace")


def read_elf(path: Path) -> ElfFile | None:
    """The dynamic-linking facts of one ELF64 LE file, or None when `path` is not one."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]

    def body(index: int) -> bytes:
        _n, _t, _f, _a, off, size, *_ = sections[index]
        return data[off:off + size]

    soname, needed = None, []
    versions_needed: dict[str, set[str]] = {}
    versions_defined: set[str] = set()
    for _name, kind, _flags, _addr, off, size, link, info, _align, entsize in sections:
        if kind == _SHT_DYNAMIC:
            strtab = body(link)
            for pos in range(off, off + size, entsize or 16):
                tag, value = struct.unpack_from("<qQ", data, pos)
                if tag == 0:
                    break
                if tag == _DT_NEEDED:
                    needed.append(_cstr(strtab, value))
                elif tag == _DT_SONAME:
                    soname = _cstr(strtab, value)
        elif kind == _SHT_GNU_VERNEED:  # Elf64_Verneed records, each with Elf64_Vernaux entries
            strtab, pos = body(link), off
            for _ in range(info):
                _ver, count, file_off, aux, nxt = struct.unpack_from("<HHIII", data, pos)
                wanted = versions_needed.setdefault(_cstr(strtab, file_off), set())
                apos = pos + aux
                for _ in range(count):
                    _hash, _vflags, _other, name_off, anext = struct.unpack_from("<IHHII", data, apos)
                    wanted.add(_cstr(strtab, name_off))
                    apos += anext
                pos += nxt
        elif kind == _SHT_GNU_VERDEF:  # Elf64_Verdef records: the versions this library provides
            strtab, pos = body(link), off
            for _ in range(info):
                _ver, _dflags, _ndx, count, _hash, aux, nxt = struct.unpack_from("<HHHHIII", data, pos)
                if count:
                    name_off, = struct.unpack_from("<I", data, pos + aux)
                    versions_defined.add(_cstr(strtab, name_off))
                pos += nxt
    return ElfFile(Path(path), soname, needed, versions_needed, versions_defined)


@dataclass
class BaseSystem:
    """What an image's base provides: its system libraries and the newest version of each symbol
    family (GLIBC, GLIBCXX, CXXABI, GCC) they define."""

    name: str
    libraries: frozenset[str]
    newest: dict[str, str]


@dataclass
class ElfNeeds:
    files: list[ElfFile]
    shipped: set[str] = field(default_factory=set)  # file names (and sonames) present in the tree

    @property
    def system(self) -> set[str]:
        """Libraries needed but not shipped: the system must have them."""
        return {n for f in self.files for n in f.needed if n not in self.shipped}

    def versions(self) -> dict[str, set[str]]:
        """Symbol versions asked of system libraries, by family: {"GLIBC": {"2.14", ...}, ...}."""
        out: dict[str, set[str]] = {}
        for f in self.files:
            for lib, names in f.versions_needed.items():
                if lib in self.shipped:
                    continue
                for name in names:
                    m = _VERSION.match(name)
                    if m:
                        out.setdefault(m.group(1), set()).add(m.group(2))
        return out

    def newest(self, family: str) -> tuple[int, ...] | None:
        found = self.versions().get(family)
        return max((_version_key(v) for v in found), default=None) if found else None

    def who_needs(self, family: str, version: str) -> list[str]:
        wanted = f"{family}_{version}"
        return sorted(f.path.name for f in self.files
                      if any(wanted in names for lib, names in f.versions_needed.items() if lib not in self.shipped))

    def check(self, base: BaseSystem) -> list[str]:
        """What `base` lacks for these files, one sentence each (empty: they all load there)."""
        problems = []
        for lib in sorted(self.system - base.libraries):
            users = sorted(f.path.name for f in self.files if lib in f.needed)
            problems.append(f"{lib} (needed by {', '.join(users[:3])}) is not in {base.name}")
        for family, versions in sorted(self.versions().items()):
            have = base.newest.get(family)
            if have is None:
                continue  # a family the base does not version (a library it lacks is reported above)
            for v in sorted(versions, key=_version_key):
                if _version_key(v) > _version_key(have):
                    problems.append(f"{family}_{v} (needed by {', '.join(self.who_needs(family, v)[:3])}) "
                                    f"is newer than {base.name}'s {family}_{have}")
        return problems


def shared_objects(root: Path) -> list[Path]:
    """The shared objects under `root` (`*.so` and versioned `*.so.N`)."""
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and re.search(r"\.so(\.\d+)*$", p.name))


def elf_needs(paths: Iterable[Path]) -> ElfNeeds:
    """The needs of these shared objects together: a library one of them ships is not a system need."""
    files = [f for f in (read_elf(Path(p)) for p in paths) if f is not None]
    shipped = {f.path.name for f in files} | {f.soname for f in files if f.soname}
    return ElfNeeds(files, shipped)


def newest_defined(libraries: Iterable[Path]) -> dict[str, str]:
    """The newest version of each symbol family these libraries define (their .gnu.version_d)."""
    best: dict[str, str] = {}
    for path in libraries:
        elf = read_elf(path)
        for name in elf.versions_defined if elf else ():
            m = _VERSION.match(name)
            if m and (m.group(1) not in best or _version_key(m.group(2)) > _version_key(best[m.group(1)])):
                best[m.group(1)] = m.group(2)
    return best
