"""Media fixtures (clips made by PyAV, local HTTP/HLS servers) and a log catcher for these tests."""
from __future__ import annotations

import pytest

from tests.logs import captured_log
from tests.media_fixtures import clips, media_http  # noqa: F401  (fixtures)


@pytest.fixture
def media_log():
    """A RunLogger for MediaSource(log=...) whose lines the test can read back (its `.catcher`)."""
    with captured_log({"request_id": "test", "function": "push_stream"}) as (log, lines):
        log.catcher = lines
        yield log
