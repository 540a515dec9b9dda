"""What the segment tests share: feeding a Segmenter as writer.py's `_Part` would, a COS bucket on
the local endpoint, and a look at what is in it (the media: emulator/media.py)."""
from __future__ import annotations

import itertools
from typing import Callable, Iterator

import pytest

from emulator.media import pcm_20ms
from shared.cos.client import CosBucket
from shared.cos.credentials import Credentials
from shared.media.frames import H264Frame
from shared.record.segments import Segmenter
from shared.runtime import RetryPolicy

FPS = 25
_prefixes = itertools.count(1)


def feed(seg: Segmenter, seconds: float, units: list[H264Frame] | None = None,
         between: Callable[[int], None] | None = None) -> None:
    """`seconds` of media in arrival order: 20 ms of PCM, then the video due by then.
    `between(i)` runs after each 20 ms step (a test looks at what happened so far)."""
    v = 0
    units = units or []
    for i in range(int(seconds * 50)):
        if seg.mode != "01":
            seg.write_pcm(pcm_20ms(i, seg.channels))
        while seg.mode != "00" and v < len(units) and units[v].pts_ms <= i * 20:
            seg.write_video(units[v].data, units[v].pts_ms, 1000 // FPS, units[v].key)
            v += 1
        if between is not None:
            between(i)


@pytest.fixture
def cos_env(monkeypatch, cos_service):
    """COS redirected to the local endpoint, no execution role in the environment."""
    monkeypatch.setenv("COS_ENDPOINT", cos_service.endpoint_url)
    for name in ("TENCENTCLOUD_SECRETID", "TENCENTCLOUD_SECRETKEY", "TENCENTCLOUD_SESSIONTOKEN"):
        monkeypatch.delenv(name, raising=False)
    return cos_service


@pytest.fixture
def bucket(cos_env) -> CosBucket:
    """The emulator's bucket with its own keys; retries quick so failure tests stay short."""
    creds = Credentials(cos_env.secret_id, cos_env.secret_key)
    return CosBucket(cos_env.bucket, cos_env.region, creds, policy=RetryPolicy(tries=3, backoff=0.02, max_backoff=0.1))


@pytest.fixture
def prefix() -> str:
    """A key prefix of the test's own in the session's bucket."""
    return f"seg/t{next(_prefixes)}/"


def iter_keys(bucket: CosBucket, prefix: str) -> Iterator[str]:
    return (k for k, _ in bucket.list(prefix))
