"""`wait_for`: the one way a test waits for something to happen (never a bare sleep): poll a
predicate until it holds or a deadline passes, then fail naming what did not happen."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str, every: float = 0.05) -> T:
    """The first truthy value of `predicate()`, polled every `every` s; AssertionError naming `what`
    after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)
