"""What a benchmark's child process costs, measured on the child alone: CPU-seconds and peak RSS.

    from bench.measure import spawn, own_peak_rss_mb
    proc = spawn([...], stdout=subprocess.PIPE, text=True)   # a Popen-like handle
    out = proc.stdout.read(); usage = proc.finish()          # Usage(exit_code, cpu_s, peak_rss_mb)

Why not `os.wait4(child).ru_maxrss`: Linux carries the parent's high-water mark across fork and exec
into the child's ru_maxrss (exec saves the old, forked image's peak in the signal struct, and
getrusage reports the larger), so a /bin/true started by a 300 MB bench reads 300 MB. Every child
here is started by a spawner of a few MB instead (`python -I -S`, stdlib only): its own child
inherits that small figure, and the spawner reports the child's rusage on a pipe of its own. A
process that measures itself reads its own VmHWM (`own_peak_rss_mb`), which exec resets.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The spawner: fork+exec argv[2:], forward SIGTERM/SIGINT, wait4, report on fd argv[1].
_SPAWNER = r"""
import json, os, signal, sys
fd, argv = int(sys.argv[1]), sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.close(fd)
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
for s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(s, lambda n, _f: os.kill(pid, n))
while True:
    try:
        _, status, ru = os.wait4(pid, 0)
        break
    except InterruptedError:
        continue
os.write(fd, json.dumps({"exit": os.waitstatus_to_exitcode(status), "cpu_s": ru.ru_utime + ru.ru_stime,
                         "user_s": ru.ru_utime, "sys_s": ru.ru_stime, "peak_kb": ru.ru_maxrss}).encode())
os.close(fd)
"""


@dataclass(frozen=True)
class Usage:
    exit_code: int
    cpu_s: float  # user + sys of the child (all its threads; children of its own excluded)
    user_s: float
    sys_s: float
    peak_rss_mb: float  # the child's own high-water mark


class Measured:
    """A child started through the spawner; `.proc` is the spawner's Popen (its pipes are the child's)."""

    def __init__(self, args: list[str], **popen: Any):
        read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _SPAWNER, str(write_fd), *args],
                                         pass_fds=(write_fd,), **popen)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._report_fd = read_fd
        self.stdout, self.stderr = self.proc.stdout, self.proc.stderr

    def send_signal(self, signum: int) -> None:
        """SIGTERM/SIGINT reach the child (the spawner forwards them); SIGKILL kills both."""
        self.proc.send_signal(signum)

    def finish(self) -> Usage:
        """Wait for the child; its exit code, CPU and peak RSS."""
        with os.fdopen(self._report_fd, "rb") as report:
            raw = report.read()
        self.proc.wait()
        if not raw:
            how = self.proc.returncode
            return Usage(how if how >= 0 else how, 0.0, 0.0, 0.0, 0.0)
        r = json.loads(raw)
        return Usage(int(r["exit"]), float(r["cpu_s"]), float(r["user_s"]), float(r["sys_s"]), r["peak_kb"] / 1024)


def spawn(args: list[str], **popen: Any) -> Measured:
    return Measured(args, **popen)


def run(args: list[str], **popen: Any) -> tuple[Usage, str, str]:
    """Run to the end; (usage, stdout, stderr) as text (both captured)."""
    m = spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    out, err = m.proc.communicate()
    return m.finish(), out, err


def own_peak_rss_mb(pid: int | str = "self") -> float:
    """VmHWM of a process (its own high-water mark: exec starts it afresh), in MB; 0 when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def own_rss_mb(pid: int | str = "self") -> float:
    """VmRSS now, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _selfcheck() -> None:
    """A /bin/true child of this (inflated) process: the spawner's figure against wait4's."""
    ballast = bytearray(300 << 20)
    ballast[::4096] = b"x" * len(ballast[::4096])
    direct = subprocess.Popen(["/bin/true"])
    _, _, ru = os.wait4(direct.pid, 0)
    usage, _, _ = run(["/bin/true"])
    print(json.dumps({"bench_rss_mb": own_rss_mb(), "wait4_maxrss_mb": ru.ru_maxrss / 1024,
                      "spawner_peak_mb": usage.peak_rss_mb}))
    del ballast


if __name__ == "__main__":
    _selfcheck()
