"""README's layout table is true to the tree: every file or folder it names exists, and the rows of
one emulated service (and of shared/media/) name each of its modules, no more and no fewer."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Rows whose description lists the folder's modules one by one (the others describe, by example).
LISTED = ("shared/media/", "emulator/scf/", "emulator/trtc/", "emulator/cos/", "emulator/cloudapi/",
          "emulator/redis/", "emulator/console/")


def rows() -> list[tuple[list[str], list[str]]]:
    text = (REPO / "README.md").read_text("utf-8")
    section = text[text.index("## Layout"):]
    section = section[:section.index("\n## ", 1)]
    found = []
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = line.split(" | ")
            found.append((re.findall(r"`([^`]+)`", cells[0]), re.findall(r"`([^`]+)`", " | ".join(cells[1:]))))
    return found


def _folders(paths: list[str]) -> list[Path]:
    """The folders a row is about: its paths' own (a file named alone is beside the one before)."""
    out: list[Path] = []
    for p in paths:
        path = REPO / p if "/" in p or not out else out[-1] / p
        out.append(path if p.endswith("/") else path.parent)
    return out


def test_every_path_the_table_names_exists():
    missing = []
    for paths, words in rows():
        folders = _folders(paths)
        for p in paths:
            if not any((f / Path(p).name).exists() for f in folders) and not (REPO / p).exists():
                missing.append(p)
        for w in words:
            # (a name the row gives as the pattern of its subfolders, "models.py", is found in one of them)
            if re.fullmatch(r"[\w./]+\.(py|yml|yaml)|[\w.]+/", w) and not any(
                    (base / w).exists() or any(base.glob(f"*/{w}")) for base in [*folders, REPO]):
                missing.append(w)
    assert not missing, f"README's layout table names what the tree lacks: {missing}"


def test_the_listed_rows_name_each_module_of_their_folders():
    for paths, words in rows():
        if not set(paths) & set(LISTED):
            continue
        folders = [REPO / p for p in paths]
        modules = {f.stem for d in folders for f in d.glob("*.py") if f.stem != "__init__"}
        named = {w.removesuffix(".py").rstrip("/") for w in words if re.fullmatch(r"[\w]+(\.py|/)?", w)}
        dirs = {d.name for f in folders for d in f.iterdir() if d.is_dir() and not d.name.startswith("__")}
        assert modules <= named, f"{paths}: the table does not name {sorted(modules - named)}"
        assert named <= modules | dirs, f"{paths}: the table names {sorted(named - modules - dirs)}, absent"
