"""A room member's userId is remote input: whatever characters it holds, the anchor is recorded,
and nothing is written outside the run's own directory."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import emulator.trtc.models as trtc_models

from .conftest import probe

# TRTC documents letters, digits, "_" and "-" up to 32 bytes; other SDKs and servers pass more.
HOSTILE_IDS = [
    "../../x",  # relative escape from the run's directory
    "../" * 10 + "x",  # a run of "../" up to the filesystem root
    "../" * 66 + "xx",  # 200 characters (past a file name's 255 bytes once a stamp is added)
    "/abs/x",  # absolute
    "..\\..\\x",  # Windows separators
    "a/b",  # a sub-directory that does not exist
    "nul\x00id",  # NUL: no OS path may hold it
    "\U0001F600\U0001F3A5\U0001F399\ufe0f",  # emoji, 4 bytes a character
    ".",
]


class _Watcher:
    """Polls the places an escaping file name would land (the test's tmp dir, the filesystem root,
    the run's own directory) while the recording runs: a file that escaped lives as long as the
    anchor's stay, then is uploaded and removed, so looking only afterwards would miss it."""

    def __init__(self, tmp_path: Path, cfs: Path):
        self.tmp_path, self.cfs = tmp_path, cfs
        self.before = self._outside()
        self.escaped: set[str] = set()
        self.nested: set[str] = set()
        self.seen_in_run: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fs-watcher", daemon=True)
        self._thread.start()

    def _outside(self) -> set[str]:
        found = {f"/{name}" for name in os.listdir("/")}
        for root, dirs, files in os.walk(self.tmp_path):
            if Path(root) == self.cfs:
                dirs[:] = []  # the run's directory is looked at by _inside
            found.update(os.path.join(root, f) for f in files + dirs)
        return found

    def _inside(self) -> None:
        for run_dir in self.cfs.iterdir():
            for root, dirs, files in os.walk(run_dir):
                if Path(root) != run_dir or dirs:
                    self.nested.update(os.path.join(root, d) for d in dirs)
                self.seen_in_run.update(files)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.escaped |= self._outside() - self.before
                self._inside()
            except FileNotFoundError:  # a directory went away while walked
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_every_anchor_is_recorded_whatever_its_user_id(studio, tmp_path, monkeypatch):
    monkeypatch.setattr(trtc_models, "MAX_USER_ID_BYTES", 1024)  # a room that lets 200 characters in
    watcher = _Watcher(tmp_path, studio.cfs)
    room = studio.new_room()
    try:
        result = studio.record(studio.event(room, mode="00"), HOSTILE_IDS, 1.0)
    finally:
        watcher.stop()

    by_user = {entry["UserId"]: entry for entry in result["Files"]}
    assert sorted(by_user) == sorted(HOSTILE_IDS), result["Files"]
    for user_id, entry in by_user.items():
        assert entry["Status"] == 1, (user_id, entry)
        found = probe(studio.fetch(entry["RecordFile"], tmp_path / "fetched.mp3"))
        assert abs(found.audio_s - 1.0) <= 0.15, (user_id, found)
    assert len({entry["RecordFile"] for entry in result["Files"]}) == len(HOSTILE_IDS)
    assert studio.callback.wait_for(1)[0].json["Files"] == result["Files"]

    assert watcher.escaped == set(), "files written outside the run's directory"
    assert watcher.nested == set(), "directories made inside the run's directory"
    assert len(watcher.seen_in_run) >= len(HOSTILE_IDS)  # the watcher did see the files being written
    for name in watcher.seen_in_run:  # local names never carry the userId
        assert all(ch.isascii() and (ch.isalnum() or ch in "_-.") for ch in name), name
    assert list(studio.cfs.iterdir()) == []  # uploaded, removed, the run's directory tidied away
