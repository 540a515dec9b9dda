"""The room both functions meet: one interface, two backends.

`trtc` is Tencent's service through the `liteav` SDK; `local` is the emulator's room server
(`emulator/trtc/`). push_stream publishes into a room, record_stream subscribes to every anchor in
one; neither knows which backend it talks to.

Media timestamps are integer milliseconds, as TRTC carries them. Everything a room tells its user
(remote members, their media, being removed, the room closing) arrives as an `Event` through
`Room.poll`, from whatever thread the backend receives it on.
"""
from __future__ import annotations

import enum
import queue
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Union

from shared.media.frames import (  # noqa: F401  (re-exported: the media a room carries)
    AUDIO_FRAME_MS,
    AUDIO_SAMPLE_RATE,
    AudioFrame,
    H264Frame,
    PixelFrame,
    VideoFrame,
    yuv420p_size,
)

# TRTC's own error codes (liteav.Error); a RoomError always carries one of these.
ERR_FAILED = -1
ERR_INVALID_PARAMETER = -2
ERR_INVALID_OPERATION = -3
ERR_REQUEST_SERVER_TIMEOUT = -6
ERR_NETWORK_UNREACHABLE = -103
ERR_BANNED_BY_SERVER = -205
ERR_ENTER_ROOM_FAILED = -3301
ERR_INVALID_SDK_APP_ID = -3317
ERR_INVALID_ROOM_ID = -3318
ERR_INVALID_USER_ID = -3319
ERR_INVALID_USER_SIG = -3320

# Why a remote user left (TRTCCloudDelegate.OnRemoteUserExitRoom `reason`).
LEFT_NORMALLY = 0
LEFT_TIMEOUT = 1
LEFT_KICKED = 2
LEFT_ROLE_SWITCHED = 3

MAX_ROOM_ID = 4294967295


class RoomError(Exception):
    """A room failure with TRTC's error code (-3320 invalid UserSig, -205 removed, ...)."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{message} (TRTC error {code})")
        self.code = code
        self.message = message


class Role(str, enum.Enum):
    ANCHOR = "anchor"
    AUDIENCE = "audience"


class VideoFormat(str, enum.Enum):
    """How video crosses the room boundary on our side: raw YUV420p or H.264 access units."""

    YUV420P = "yuv420p"
    H264 = "h264"


@dataclass(frozen=True)
class RoomRef:
    """A TRTC room. Integer room 123 and string room "123" are different rooms."""

    id: Union[int, str]

    def __post_init__(self) -> None:
        if isinstance(self.id, bool) or not isinstance(self.id, (int, str)):
            raise ValueError("room id must be an int or a str")
        if isinstance(self.id, int) and not 1 <= self.id <= MAX_ROOM_ID:
            raise ValueError(f"integer room id must be in 1..{MAX_ROOM_ID}")
        if isinstance(self.id, str) and not 1 <= len(self.id.encode()) <= 64:
            raise ValueError("string room id must be 1..64 bytes")

    @property
    def is_string(self) -> bool:
        return isinstance(self.id, str)

    @property
    def key(self) -> str:
        """A text key that keeps integer and string rooms apart ("i:123" vs "s:123")."""
        return f"{'s' if self.is_string else 'i'}:{self.id}"

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True)
class Subscription:
    """Whose media a member receives. TRTC's SDK subscribes to every remote stream by itself; the
    trtc backend unsubscribes from what this leaves out (the SDK then neither receives nor decodes
    it), the local room server does not send it. A pusher takes nothing, a recorder everything, a
    recogniser the audio of the anchors it recognises."""

    audio: bool = True
    video: bool = True
    audio_from: frozenset[str] | None = None  # whose audio, when audio: None is every anchor's

    @property
    def any(self) -> bool:
        return self.audio or self.video

    def takes(self, user_id: str, video: bool) -> bool:
        """Whether `user_id`'s video (or audio) reaches this member."""
        if video:
            return self.video
        return self.audio and (self.audio_from is None or user_id in self.audio_from)

    def to_wire(self) -> dict[str, object]:
        return {"a": self.audio, "v": self.video,
                "from": None if self.audio_from is None else sorted(self.audio_from)}

    @classmethod
    def from_wire(cls, value: object) -> "Subscription":
        """The local room's "recv": this dict, or a bool (everything / nothing). ValueError otherwise."""
        if isinstance(value, dict):
            who = value.get("from")
            if who is not None and not (isinstance(who, list) and all(isinstance(u, str) for u in who)):
                raise ValueError("'from' must be a list of user ids")
            return cls(bool(value.get("a", True)), bool(value.get("v", True)),
                       None if who is None else frozenset(who))
        return EVERY_STREAM if value is None or bool(value) else NO_MEDIA


EVERY_STREAM = Subscription()
NO_MEDIA = Subscription(audio=False, video=False)


@dataclass
class EnterParams:
    sdk_app_id: int
    room: RoomRef
    user_id: str
    user_sig: str = field(repr=False)
    role: Role = Role.ANCHOR
    timeout: float = 10.0
    # What we publish as video (TRTC's use_pixel_frame_input) and how remote video reaches us
    # (use_pixel_frame_output). Fixed at entry, as in the SDK.
    video_input: VideoFormat = VideoFormat.YUV420P
    video_output: VideoFormat = VideoFormat.H264
    # Remote audio arrives as 48 kHz PCM s16 with this many channels, in 20 ms frames.
    audio_output_channels: int = 1
    # Whose media is received at all (NO_MEDIA: a pusher has no use for any).
    receive: Subscription = EVERY_STREAM


@dataclass
class VideoEncodeConfig:
    """SetVideoEncodeParam: used when the room encodes YUV for us, and as the target bitrate for H.264."""

    fps: int = 25
    bitrate_bps: int = 0  # 0: the SDK picks one from the resolution
    gop_seconds: int = 2


# --- media -------------------------------------------------------------------------------------


class CloseReason(str, enum.Enum):
    REMOVED = "removed"  # RemoveUser / RemoveUserByStrRoomId (TRTC -205)
    REPLACED = "replaced"  # another client entered with the same userId (local backend only; TRTC says -205)
    DISMISSED = "dismissed"  # DismissRoom, or no anchor for too long (only where the backend is told so)
    # The server ended our stay without saying why: liteav's OnExitRoom() takes no reason, so a
    # dismissal reaches the trtc backend as this (and so may other ends the server SDK does not name).
    ENDED_BY_SERVER = "ended_by_server"
    ERROR = "error"  # the connection to the room failed
    EXITED = "exited"  # we called exit()


# The word both functions' results use for each way out of a room (their `reason` / `Reason`).
RESULT_REASONS = {
    CloseReason.REMOVED: "removed",
    CloseReason.REPLACED: "replaced",
    CloseReason.DISMISSED: "dismissed",
    CloseReason.ENDED_BY_SERVER: "ended_by_server",
    CloseReason.ERROR: "room_error",
    CloseReason.EXITED: "exited",
}


@dataclass(frozen=True, slots=True)
class UserEntered:
    user_id: str


@dataclass(frozen=True, slots=True)
class UserLeft:
    user_id: str
    reason: int  # LEFT_NORMALLY / LEFT_TIMEOUT / LEFT_KICKED / LEFT_ROLE_SWITCHED


@dataclass(frozen=True, slots=True)
class AudioAvailable:
    user_id: str
    available: bool


@dataclass(frozen=True, slots=True)
class VideoAvailable:
    user_id: str
    available: bool


@dataclass(frozen=True, slots=True)
class RemoteAudio:
    user_id: str
    frame: AudioFrame


@dataclass(frozen=True, slots=True)
class RemoteVideo:
    user_id: str
    frame: VideoFrame


@dataclass(frozen=True, slots=True)
class KeyFrameRequested:
    """Someone in the room needs a key frame from us (OnRequestKeyFrame)."""


@dataclass(frozen=True, slots=True)
class BitrateRequested:
    """The network wants our video at this bitrate (OnRequestChangeVideoEncodeBitrate)."""

    bitrate_bps: int


@dataclass(frozen=True, slots=True)
class RoomClosed:
    """We are out of the room and will receive nothing more; always the last event."""

    reason: CloseReason
    code: int = 0
    message: str = ""

    @property
    def result_reason(self) -> str:
        """What a function's result says for this close (RESULT_REASONS)."""
        return RESULT_REASONS[self.reason]


Event = Union[
    UserEntered, UserLeft, AudioAvailable, VideoAvailable, RemoteAudio, RemoteVideo,
    KeyFrameRequested, BitrateRequested, RoomClosed,
]


# --- the room ----------------------------------------------------------------------------------


class Room(ABC):
    """A member of one TRTC room. Not reusable: enter once, exit once.

    Backends call `_emit` from their receiving threads (never raising); users call `poll`.
    """

    def __init__(self) -> None:
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._closed: RoomClosed | None = None
        self._close_lock = threading.Lock()

    # lifecycle
    @abstractmethod
    def enter(self, params: EnterParams) -> None:
        """Block until in the room; raise RoomError with TRTC's code on failure or after params.timeout."""

    @abstractmethod
    def exit(self) -> None:
        """Leave the room (idempotent). Emits RoomClosed(EXITED) unless already closed."""

    # publishing (anchors only)
    @abstractmethod
    def start_audio(self, channels: int = 1, bitrate_bps: int = 0) -> None:
        """Open the local audio channel: 48 kHz PCM s16 with `channels`, 20 ms frames."""

    @abstractmethod
    def start_video(self, config: VideoEncodeConfig | None = None) -> None:
        """Open the local video channel in the entry's `video_input` format."""

    @abstractmethod
    def set_video_encode(self, config: VideoEncodeConfig) -> None:
        ...

    @abstractmethod
    def send_audio(self, frame: AudioFrame) -> None:
        """Send one 20 ms frame. Raises RoomError once the room is closed."""

    @abstractmethod
    def send_video(self, frame: VideoFrame) -> None:
        """Send one picture or access unit. Raises RoomError once the room is closed."""

    # subscribing
    @abstractmethod
    def request_key_frame(self, user_id: str) -> None:
        """Ask a remote anchor for a key frame (a no-op where the service does it by itself)."""

    # events
    def poll(self, timeout: float | None = 0.0) -> Event | None:
        """The next event; None when none came within `timeout` (0: don't wait, None: wait forever)."""
        try:
            if timeout == 0:
                return self._events.get_nowait()
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    @property
    def closed(self) -> RoomClosed | None:
        """How the room ended for us, once it has; None while we are in it."""
        return self._closed

    def _emit(self, event: Event) -> None:
        self._events.put(event)

    def _close(self, event: RoomClosed) -> bool:
        """Record the first close and emit it; later ones are ignored. Returns True if this one won."""
        with self._close_lock:
            if self._closed is not None:
                return False
            self._closed = event
        self._events.put(event)
        return True

    def _check_open(self) -> None:
        closed = self._closed
        if closed is not None:
            raise RoomError(closed.code or ERR_INVALID_OPERATION, f"not in the room: {closed.reason.value}")

    def __enter__(self) -> "Room":
        return self

    def __exit__(self, *exc: object) -> None:
        self.exit()
