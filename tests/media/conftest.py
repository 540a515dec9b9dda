"""Media fixtures (clips made by PyAV, local HTTP/HLS servers) and a log catcher for these tests."""
from __future__ import annotations

import logging

import pytest

from shared.runtime import RunLogger
from tests.media_fixtures import clips, media_http  # noqa: F401  (fixtures)


class LogCatcher(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def fields(self, msg: str) -> list[dict]:
        return [getattr(r, "fields", {}) for r in self.records if r.getMessage() == msg]


@pytest.fixture
def media_log():
    """A RunLogger for MediaSource(log=...) whose lines the test can read back."""
    logger = logging.getLogger(f"test-media-{id(object())}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    catcher = LogCatcher()
    logger.addHandler(catcher)
    log = RunLogger(logger, {"request_id": "test", "function": "push_stream"})
    log.catcher = catcher
    yield log
    logger.removeHandler(catcher)
