"""Reading back what a RunLogger wrote: a logger of the test's own whose records the test can look at."""
from __future__ import annotations

import itertools
import logging
from contextlib import contextmanager
from typing import Any, Iterator

from shared.runtime import RunLogger

_loggers = itertools.count(1)


class LogLines(logging.Handler):
    """Every record of one test's logger; `.errors()` / `.warnings()` as dicts of message and fields."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def fields(self, msg: str) -> list[dict]:
        """The fields of each line that said `msg`."""
        return [getattr(r, "fields", {}) for r in self.records if r.getMessage() == msg]

    def at(self, level: int) -> list[dict[str, Any]]:
        return [{"msg": r.getMessage(), **getattr(r, "fields", {})} for r in self.records if r.levelno == level]

    def errors(self) -> list[dict[str, Any]]:
        return self.at(logging.ERROR)

    def warnings(self) -> list[dict[str, Any]]:
        return self.at(logging.WARNING)


@contextmanager
def captured_log(context: dict[str, Any] | None = None) -> Iterator[tuple[RunLogger, LogLines]]:
    """(a RunLogger with `context` on each line, the LogLines it writes), for the `with` block."""
    logger = logging.getLogger(f"test.log.{next(_loggers)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    lines = LogLines()
    logger.addHandler(lines)
    try:
        yield RunLogger(logger, context or {}), lines
    finally:
        logger.removeHandler(lines)
