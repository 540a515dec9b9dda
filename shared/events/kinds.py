"""Every lifecycle event a run can send, by function: its name, and TRTC's number where TRTC has
one for the same moment (cloud recording's callback events, group 3; stream ingest's, group 7), so
a receiver that already handles TRTC's callbacks can map ours onto its own.

    recording: 301 RECORDER_START, 302 RECORDER_STOP, 307 FILE_SLICE (a file's first segment),
               310 MP4_STOP (a file done), 306 FAILOVER (a run finished by the recovery)
    ingest:    701 STREAM_INGEST_START, 702 STREAM_INGEST_STOP
"""
from __future__ import annotations

from dataclasses import dataclass

TRTC_RECORDING_GROUP = 3
TRTC_INGEST_GROUP = 7


@dataclass(frozen=True)
class Kind:
    name: str
    trtc: int | None = None  # TRTC's EventType for the same moment
    group: int | None = None  # TRTC's EventGroupId
    verbose: bool = False  # sent only when the call asked for EventVerbose
    final: bool = False  # a run's end: the last event it sends


def _kinds(*kinds: Kind) -> dict[str, Kind]:
    return {k.name: k for k in kinds}


# Ends every function shares: a duplicate start (IdempotencyKey) ends at once.
DUPLICATE = Kind("duplicate", final=True)

PUSH = _kinds(
    Kind("started", 701, TRTC_INGEST_GROUP),  # entered the room, source opened
    Kind("source_started"), Kind("switched"), Kind("item_ended"),
    Kind("paused"), Kind("resumed"), Kind("checkpoint_failed"),
    Kind("stopped", 702, TRTC_INGEST_GROUP, final=True),
    DUPLICATE,
)

RECORD = _kinds(
    Kind("started", 301, TRTC_RECORDING_GROUP),
    Kind("anchor_joined"), Kind("anchor_left"),
    Kind("file_started", 307, TRTC_RECORDING_GROUP),
    Kind("segment_uploaded", verbose=True),
    Kind("file_done", 310, TRTC_RECORDING_GROUP),
    Kind("upload_failed"),
    Kind("stopped", 302, TRTC_RECORDING_GROUP, final=True),
    Kind("recovered", 306, TRTC_RECORDING_GROUP, final=True),
    DUPLICATE,
)

RECOGNIZE = _kinds(
    Kind("started"), Kind("stopped", final=True), DUPLICATE,
)

BY_FUNCTION: dict[str, dict[str, Kind]] = {"push_stream": PUSH, "record_stream": RECORD,
                                           "recognize_stream": RECOGNIZE}
