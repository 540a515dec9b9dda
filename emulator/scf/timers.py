"""Timer triggers, run as SCF runs them: each `type: timer` trigger that serverless.yml declares
invokes its function asynchronously with SCF's timer event on its schedule.

    triggers = read_timer_triggers(REPO_ROOT / "serverless.yml")     # [TimerTrigger(...)]
    timers = Timers(scf, triggers, tick_s=2.0).start()                # tick_s: every trigger this often
    ...
    timers.stop()

The event is SCF's: {"Type": "Timer", "TriggerName", "Time" (UTC, ISO 8601), "Message" (the
trigger's `argument`)}. SCF's cron has seven fields (second minute hour day month week year); the
emulator reads the period of the simple forms a recurring trigger uses ("0 */1 * * * * *" every
minute, "*/30 * * * * * *" every 30 s, "0 0 */2 * * * *" every 2 hours) and refuses the rest, naming
the expression.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from .exceptions import ScfError
from .models import EVENT, Scf

log = logging.getLogger("emulator.scf.timers")

# Seconds per unit of the first three cron fields.
_UNITS = (1, 60, 3600)


@dataclass(frozen=True)
class TimerTrigger:
    function: str  # the key of serverless.yml's inputs.functions (the emulator's function name)
    name: str
    period_s: float
    argument: str = ""
    enabled: bool = True


def cron_period(expression: str) -> float:
    """The period in seconds of an SCF cron expression of the simple recurring kind."""
    fields = str(expression).split()
    if len(fields) != 7 or any(f not in ("*", "?") for f in fields[3:]):
        raise ValueError(f"timer cronExpression {expression!r}: the emulator runs 7-field expressions that "
                         "repeat every N seconds, minutes or hours (such as '0 */1 * * * * *')")
    for position, value in enumerate(fields[:3]):
        step = value[2:] if value.startswith("*/") else ("1" if value == "*" else None)
        if step is not None:
            if not step.isdigit() or int(step) == 0:
                break
            if any(f not in ("0", "*") for f in fields[:position]) or any(f != "*" for f in fields[position + 1:3]):
                break
            return float(int(step) * _UNITS[position])
    raise ValueError(f"timer cronExpression {expression!r}: not a plain every-N-seconds/minutes/hours schedule")


def read_timer_triggers(serverless_yml: Path) -> list[TimerTrigger]:
    """The timer triggers of a multi-scf serverless.yml (none when the file is missing)."""
    try:
        config = yaml.safe_load(Path(serverless_yml).read_text("utf-8")) or {}
    except FileNotFoundError:
        return []
    found = []
    for trigger in (config.get("inputs") or {}).get("triggers") or []:
        if trigger.get("type") != "timer":
            continue
        p = trigger.get("parameters") or {}
        argument = p.get("argument", "")
        found.append(TimerTrigger(str(trigger["function"]), str(p.get("name") or "timer"),
                                  cron_period(p["cronExpression"]),
                                  argument if isinstance(argument, str) else str(argument),
                                  p.get("enable", False) is True))
    return found


def timer_event(trigger: TimerTrigger, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(timezone.utc)
    return {"Type": "Timer", "TriggerName": trigger.name, "Time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Message": trigger.argument}


class Timers:
    """Fires each enabled trigger of a served function every `period_s` (or every `tick_s`, when
    given: tests shorten the minute), the first time one period after start."""

    def __init__(self, scf: Scf, triggers: list[TimerTrigger], tick_s: float | None = None):
        self.scf = scf
        self.triggers = [t for t in triggers if t.enabled and t.function in scf.functions]
        self.tick_s = tick_s
        self.fired: list[tuple[str, str]] = []  # (trigger name, request id)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scf-timers", daemon=True)

    def start(self) -> "Timers":
        if self.triggers:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        start = time.monotonic()
        due = {t: start + (self.tick_s or t.period_s) for t in self.triggers}
        while not self._stop.is_set():
            now = time.monotonic()
            for trigger, at in due.items():
                if now >= at:
                    due[trigger] = at + (self.tick_s or trigger.period_s)
                    self._fire(trigger)
            self._stop.wait(max(0.05, min(due.values()) - time.monotonic()))

    def _fire(self, trigger: TimerTrigger) -> None:
        try:
            run = self.scf.invoke(trigger.function, timer_event(trigger), EVENT, source="timer")
        except ScfError as e:  # at the concurrency limit, or shutting down: SCF skips this tick too
            log.warning("timer %s did not start %s: %s", trigger.name, trigger.function, e.message)
            return
        self.fired.append((trigger.name, run.request_id))
        log.info("timer %s started %s (%s)", trigger.name, trigger.function, run.request_id)
