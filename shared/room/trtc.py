"""The `trtc` backend: Tencent's TRTC service through its server SDK, `liteav`.

`TRTCRoom` turns liteav's asynchronous, callback-driven API into the blocking `Room` interface:
calls that the SDK answers with a callback (EnterRoom -> OnEnterRoom/OnError,
CreateLocal*Channel -> OnLocal*ChannelCreated, ExitRoom -> OnExitRoom) wait for that callback with
a timeout, and everything else the SDK reports becomes an `Event` on `Room.poll`.

Delegate callbacks arrive on the SDK's own threads. An exception escaping one of them reaches the
SDK's native director and terminates the process, so every callback catches everything, logs it and
only hands data over (copied out of the SDK's objects) through `Room._emit` / `Room._close`.

`liteav` is imported only when a `TRTCRoom` is created without an injected `sdk` module: the local
backend and the emulator never load it (tests inject `tests/fakes/liteav_fake.py`).
"""
from __future__ import annotations

import enum
import threading
import time
import weakref
from types import ModuleType
from typing import Any, Callable, NoReturn

from shared.runtime import RunLogger, get_logger

from .base import yuv420p_size
from .base import (
    AUDIO_FRAME_MS, AUDIO_SAMPLE_RATE, ERR_BANNED_BY_SERVER, ERR_ENTER_ROOM_FAILED,
    ERR_INVALID_OPERATION, ERR_INVALID_PARAMETER, ERR_INVALID_ROOM_ID, ERR_INVALID_SDK_APP_ID,
    ERR_INVALID_USER_ID, ERR_INVALID_USER_SIG, ERR_NETWORK_UNREACHABLE, ERR_REQUEST_SERVER_TIMEOUT,
    AudioAvailable, AudioFrame, BitrateRequested, CloseReason, EnterParams, Event, H264Frame,
    KeyFrameRequested, PixelFrame, RemoteAudio, RemoteVideo, Role, Room, RoomClosed, RoomError,
    UserEntered, UserLeft, VideoAvailable, VideoEncodeConfig, VideoFormat,
)

# How long exit() waits for OnExitRoom before dropping the cloud anyway: leaving must not hang a stop.
EXIT_WAIT_S = 2.0
# liteav carries timestamps, sizes and the SdkAppId as unsigned 32-bit integers.
_U32_MAX = 0xFFFFFFFF
# SetVideoEncodeParam's documented ranges; fps and GOP outside them are clamped, not refused.
_FPS_RANGE = (10, 60)
_GOP_RANGE = (1, 10)
_MAX_VIDEO_BITRATE = 20_000_000
# Bitrates TRTC recommends for 48 kHz Opus (AudioEncodeParams.bitrate_bps).
_AUDIO_BITRATE = {1: 50_000, 2: 100_000}

# What a person can do about each TRTC error code.
_ERROR_TEXT = {
    ERR_INVALID_USER_SIG: "the UserSig is invalid or expired for this SdkAppId and UserId",
    ERR_INVALID_SDK_APP_ID: "the SdkAppId is invalid",
    ERR_INVALID_ROOM_ID: "the room id is invalid",
    ERR_INVALID_USER_ID: "the UserId is invalid",
    ERR_BANNED_BY_SERVER: "removed from the room by the server (RemoveUser, or the same UserId entered elsewhere)",
    ERR_ENTER_ROOM_FAILED: "entering the room failed",
    ERR_REQUEST_SERVER_TIMEOUT: "the TRTC server did not answer in time",
    ERR_NETWORK_UNREACHABLE: "the network is unreachable",
    ERR_INVALID_PARAMETER: "an invalid parameter was passed to the SDK",
    ERR_INVALID_OPERATION: "the SDK refused the operation in its current state",
    -4: "the SDK does not support this",
    -5: "the SDK licence is invalid",
    -7: "the TRTC server failed to process the request",
    -100013: "the TRTC service is suspended for this application (account in arrears)",
}


def error_text(code: int) -> str:
    """A readable description of a liteav error code."""
    return _ERROR_TEXT.get(code, f"TRTC SDK error {code}")


class _State(enum.Enum):
    NEW = "new"
    ENTERING = "entering"
    IN_ROOM = "in_room"
    EXITING = "exiting"
    DONE = "done"


def enter_room_params(sdk: ModuleType, params: EnterParams) -> Any:
    """liteav.EnterRoomParams for `params` (the room as room_id or str_room_id, role, media formats)."""
    erp = sdk.EnterRoomParams()
    room = erp.room
    room.sdk_app_id = params.sdk_app_id
    room.user_id = sdk.TrtcString(params.user_id)
    room.user_sig = sdk.TrtcString(params.user_sig)
    if params.room.is_string:
        # room_id 0 tells the SDK to use str_room_id; "123" and 123 stay different rooms.
        room.room_id = 0
        room.str_room_id = sdk.TrtcString(str(params.room.id))
    else:
        room.room_id = int(params.room.id)
    erp.role = sdk.TRTC_ROLE_ANCHOR if params.role is Role.ANCHOR else sdk.TRTC_ROLE_AUDIENCE
    # LIVE: anchors publish, audiences only watch; the right scene for both a pusher and a recorder.
    erp.scene = sdk.TRTC_SCENE_LIVE
    erp.use_pixel_frame_input = params.video_input is VideoFormat.YUV420P
    erp.use_pixel_frame_output = params.video_output is VideoFormat.YUV420P
    obtain = erp.audio_obtain_params
    obtain.audio_obtain_method = sdk.AUDIO_OBTAIN_METHOD_CALLBACK
    # One OnRemoteAudioReceived per remote user: the recorder keeps each anchor apart.
    obtain.enable_remote_audio_mix = False
    obtain.output_sample_rate = AUDIO_SAMPLE_RATE
    obtain.output_channels = params.audio_output_channels
    obtain.output_frame_length_ms = AUDIO_FRAME_MS
    obtain.output_audio_codec_type = sdk.AUDIO_CODEC_TYPE_PCM
    return erp


def _check_enter_params(params: EnterParams) -> None:
    """Refuse what the SDK would refuse, with the field named, before any cloud is created."""
    if isinstance(params.sdk_app_id, bool) or not isinstance(params.sdk_app_id, int) \
            or not 1 <= params.sdk_app_id <= _U32_MAX:
        raise RoomError(ERR_INVALID_SDK_APP_ID, f"sdkAppId must be an integer in 1..{_U32_MAX}, got {params.sdk_app_id!r}")
    if not isinstance(params.user_id, str) or not params.user_id:
        raise RoomError(ERR_INVALID_USER_ID, "userId must be a non-empty string")
    if not isinstance(params.user_sig, str) or not params.user_sig:
        raise RoomError(ERR_INVALID_USER_SIG, "userSig must be a non-empty string")
    if params.audio_output_channels not in (1, 2):
        raise RoomError(ERR_INVALID_PARAMETER,
                        f"audio_output_channels must be 1 or 2, got {params.audio_output_channels!r}")
    if not params.timeout > 0:
        raise RoomError(ERR_INVALID_PARAMETER, f"timeout must be positive, got {params.timeout!r}")


def _u32(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U32_MAX:
        raise RoomError(ERR_INVALID_PARAMETER, f"{what} must be an integer in 0..{_U32_MAX}, got {value!r}")
    return value


_delegate_classes: "weakref.WeakKeyDictionary[type, type]" = weakref.WeakKeyDictionary()
_delegate_lock = threading.Lock()


def _delegate_class(sdk: ModuleType) -> type:
    """A TRTCCloudDelegate subclass of this SDK module's base class (built once per SDK)."""
    base = sdk.TRTCCloudDelegate
    with _delegate_lock:
        cls = _delegate_classes.get(base)
        if cls is None:
            cls = type("TRTCRoomDelegate", (_DelegateMixin, base), {})
            _delegate_classes[base] = cls
        return cls


def _guarded(handler: Callable[..., None]) -> Callable[..., None]:
    """Run a room handler for one delegate callback; never let anything escape into the SDK."""

    def callback(self: "_DelegateMixin", *args: Any) -> None:
        try:
            room = self._room()
            if room is not None:
                handler(room, *args)
        except BaseException as e:  # noqa: BLE001 - anything escaping here kills the process
            try:
                self._report(callback.__name__, e)
            except BaseException:  # noqa: BLE001 - not even logging may raise into the SDK
                pass

    return callback


class _DelegateMixin:
    """The callbacks liteav calls; each forwards to the TRTCRoom it belongs to."""

    def __init__(self, room: "TRTCRoom") -> None:
        super().__init__()  # pybind11: the native base must be initialised
        # Weak: the cloud holds the delegate strongly, and the room holds the cloud.
        self._room = weakref.ref(room)
        self._log = room._log
        self._failures: dict[str, int] = {}

    def _report(self, callback: str, error: BaseException) -> None:
        # A broken frame repeats at frame rate: log the 1st, 10th, 100th, ... of each callback.
        n = self._failures.get(callback, 0) + 1
        self._failures[callback] = n
        if n & (n - 1) == 0 or n % 1000 == 0:
            self._log.error("liteav callback failed; ignored", callback=callback, failures=n,
                            error=f"{type(error).__name__}: {error}")

    # Lifecycle
    OnEnterRoom = _guarded(lambda room: room._on_enter_room())
    OnExitRoom = _guarded(lambda room: room._on_exit_room())
    OnError = _guarded(lambda room, error: room._on_error(int(error)))
    OnConnectionStateChanged = _guarded(lambda room, old, new: room._log.debug(
        "trtc connection state", old=getattr(old, "name", str(old)), new=getattr(new, "name", str(new))))
    OnLocalAudioChannelCreated = _guarded(lambda room: room._audio_ready.set())
    OnLocalVideoChannelCreated = _guarded(lambda room, stream_type: room._on_video_channel(stream_type))
    # Remote users
    OnRemoteUserEnterRoom = _guarded(lambda room, info: room._deliver(UserEntered(info.user_id.GetValue())))
    OnRemoteUserExitRoom = _guarded(lambda room, info, reason: room._deliver(
        UserLeft(info.user_id.GetValue(), int(reason))))
    OnRemoteAudioAvailable = _guarded(lambda room, user_id, available: room._deliver(
        AudioAvailable(str(user_id), bool(available))))
    OnRemoteVideoAvailable = _guarded(lambda room, user_id, available, stream_type: room._on_video_available(
        str(user_id), bool(available), stream_type))
    # Remote media
    OnRemoteAudioReceived = _guarded(lambda room, user_id, frame: room._on_remote_audio(str(user_id), frame))
    OnRemoteVideoFrameReceived = _guarded(lambda room, user_id, stream_type, frame: room._on_remote_h264(
        str(user_id), stream_type, frame))
    OnRemotePixelFrameReceived = _guarded(lambda room, user_id, stream_type, frame: room._on_remote_pixels(
        str(user_id), stream_type, frame))
    # Requests about what we publish
    OnRequestKeyFrame = _guarded(lambda room, stream_type: room._on_key_frame_request(stream_type))
    OnRequestChangeVideoEncodeBitrate = _guarded(lambda room, stream_type, bitrate: room._on_bitrate_request(
        stream_type, int(bitrate)))


# Name each callback after the liteav method it implements, so that failures are logged under it.
for _name, _value in list(vars(_DelegateMixin).items()):
    if _name.startswith("On") and callable(_value):
        _value.__name__ = _name
        _value.__qualname__ = f"TRTCRoomDelegate.{_name}"


class TRTCRoom(Room):
    """A member of one TRTC room through liteav. `sdk` is the liteav module (injected in tests)."""

    def __init__(self, sdk: ModuleType | None = None, logger: RunLogger | None = None):
        super().__init__()
        if sdk is None:
            import liteav as sdk  # lazy: only the trtc backend ever loads the native SDK
        self._sdk = sdk
        self._log = logger or get_logger()
        self._lock = threading.Lock()
        # Serialises delivery against closing, so RoomClosed is always the last event.
        self._deliver_lock = threading.Lock()
        self._state = _State.NEW
        self._params: EnterParams | None = None
        self._cloud: Any = None
        self._entered = threading.Event()  # OnEnterRoom or an OnError answered EnterRoom
        self._enter_error: int | None = None
        self._sdk_exited = threading.Event()  # OnExitRoom seen
        self._audio_ready = threading.Event()
        self._video_ready = threading.Event()
        self._audio_channels = 0
        self._video_config: VideoEncodeConfig | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def enter(self, params: EnterParams) -> None:
        _check_enter_params(params)
        with self._lock:
            if self._state is not _State.NEW:
                raise RoomError(ERR_INVALID_OPERATION, "a TRTCRoom enters once; create a new one")
            self._state = _State.ENTERING
            self._params = params
        sdk = self._sdk
        where = f"room {params.room.id!r} as {params.user_id!r}"
        self._log.info("entering trtc room", room=str(params.room), user_id=params.user_id,
                       role=params.role.value)
        try:
            erp = enter_room_params(sdk, params)
            self._cloud = sdk.CreateTRTCCloud(_delegate_class(sdk)(self))
            rc = int(self._cloud.EnterRoom(erp))
        except (TypeError, ValueError) as e:  # the SDK's bindings refusing a value
            self._fail_enter(RoomError(ERR_INVALID_PARAMETER, f"cannot enter {where}: {e}"))
        if rc != 0:
            self._fail_enter(RoomError(rc, f"EnterRoom refused entering {where}: {error_text(rc)}"))
        if not self._entered.wait(params.timeout):
            self._fail_enter(RoomError(ERR_REQUEST_SERVER_TIMEOUT,
                                       f"no answer from TRTC within {params.timeout:g} s while entering {where}"))
        with self._lock:
            state, code = self._state, self._enter_error
        if state is not _State.IN_ROOM:
            if code is None:
                self._fail_enter(RoomError(ERR_INVALID_OPERATION, f"exit() was called while entering {where}"))
            self._fail_enter(RoomError(code, f"could not enter {where}: {error_text(code)}"))
        self._log.info("entered trtc room", room=str(params.room), user_id=params.user_id)

    def _fail_enter(self, error: RoomError) -> NoReturn:
        self._log.warning("could not enter trtc room", code=error.code, error=error.message)
        self._abandon()
        raise error

    def exit(self) -> None:
        with self._lock:
            state = self._state
            if state is _State.EXITING:
                return  # another thread is leaving
            self._state = _State.EXITING if state in (_State.ENTERING, _State.IN_ROOM) else _State.DONE
        self._entered.set()  # an enter() still waiting in another thread gives up now
        try:
            cloud = self._cloud
            # After a dismissal or removal the SDK has already left (OnExitRoom): nothing to wait for.
            if state in (_State.ENTERING, _State.IN_ROOM) and cloud is not None and not self._sdk_exited.is_set():
                rc = int(cloud.ExitRoom())
                if rc == 0:
                    self._sdk_exited.wait(EXIT_WAIT_S)
                else:
                    self._log.warning("ExitRoom failed", code=rc, error=error_text(rc))
        finally:
            self._close_and_deliver(RoomClosed(CloseReason.EXITED))
            self._drop_cloud()
            with self._lock:
                self._state = _State.DONE

    def _abandon(self) -> None:
        """After a failed enter: leave whatever the SDK half-did and drop the cloud."""
        with self._lock:
            self._state = _State.DONE
        cloud = self._cloud
        try:
            if cloud is not None and not self._sdk_exited.is_set():
                cloud.ExitRoom()
        except Exception as e:  # noqa: BLE001 - the enter error is what the caller needs to see
            self._log.warning("ExitRoom after a failed enter failed", error=str(e))
        finally:
            self._drop_cloud()

    def _drop_cloud(self) -> None:
        cloud, self._cloud = self._cloud, None
        if cloud is not None:
            self._sdk.DestroyTRTCCloud(cloud)

    # --- publishing ----------------------------------------------------------------------------

    def start_audio(self, channels: int = 1, bitrate_bps: int = 0) -> None:
        cloud = self._publisher("start_audio")
        if channels not in (1, 2):
            raise RoomError(ERR_INVALID_PARAMETER, f"audio channels must be 1 or 2, got {channels!r}")
        if self._audio_ready.is_set():
            if channels != self._audio_channels:
                raise RoomError(ERR_INVALID_OPERATION,
                                f"the audio channel is already open with {self._audio_channels} channel(s)")
            return
        if isinstance(bitrate_bps, bool) or not isinstance(bitrate_bps, int) or bitrate_bps < 0:
            raise RoomError(ERR_INVALID_PARAMETER, f"audio bitrate_bps must be an integer >= 0, got {bitrate_bps!r}")
        p = self._sdk.AudioEncodeParams()
        p.channels = channels
        p.sample_rate = AUDIO_SAMPLE_RATE
        p.frame_length_ms = AUDIO_FRAME_MS
        p.bitrate_bps = bitrate_bps or _AUDIO_BITRATE[channels]
        p.need_encode = True  # we hand PCM; the SDK encodes Opus
        self._audio_channels = channels
        rc = int(cloud.CreateLocalAudioChannel(p))
        if rc != 0:
            raise RoomError(rc, f"CreateLocalAudioChannel failed: {error_text(rc)}")
        self._await(self._audio_ready, "OnLocalAudioChannelCreated")

    def start_video(self, config: VideoEncodeConfig | None = None) -> None:
        cloud = self._publisher("start_video")
        if not self._video_ready.is_set():
            rc = int(cloud.CreateLocalVideoChannel(self._sdk.STREAM_TYPE_VIDEO_HIGH))
            if rc != 0:
                raise RoomError(rc, f"CreateLocalVideoChannel failed: {error_text(rc)}")
            self._await(self._video_ready, "OnLocalVideoChannelCreated")
        self.set_video_encode(config or self._video_config or VideoEncodeConfig())

    def set_video_encode(self, config: VideoEncodeConfig) -> None:
        if isinstance(config.bitrate_bps, bool) or not isinstance(config.bitrate_bps, int) \
                or not 0 <= config.bitrate_bps <= _MAX_VIDEO_BITRATE:
            raise RoomError(ERR_INVALID_PARAMETER,
                            f"video bitrate_bps must be in 0..{_MAX_VIDEO_BITRATE}, got {config.bitrate_bps!r}")
        self._video_config = config
        if not self._video_ready.is_set():
            return  # applied by start_video once the channel exists
        cloud = self._live_cloud()
        p = self._sdk.VideoEncodeParams()
        p.frame_rate = min(max(int(config.fps), _FPS_RANGE[0]), _FPS_RANGE[1])
        p.bitrate_bps = config.bitrate_bps
        p.gop_in_seconds = min(max(int(config.gop_seconds), _GOP_RANGE[0]), _GOP_RANGE[1])
        cloud.SetVideoEncodeParam(self._sdk.STREAM_TYPE_VIDEO_HIGH, p)

    def send_audio(self, frame: AudioFrame) -> None:
        cloud = self._live_cloud()
        if not self._audio_ready.is_set():
            raise RoomError(ERR_INVALID_OPERATION, "send_audio before start_audio")
        if frame.sample_rate != AUDIO_SAMPLE_RATE or frame.channels != self._audio_channels:
            raise RoomError(ERR_INVALID_PARAMETER,
                            f"audio frame is {frame.sample_rate} Hz x{frame.channels}; the channel takes "
                            f"{AUDIO_SAMPLE_RATE} Hz x{self._audio_channels}")
        expected = AUDIO_SAMPLE_RATE * AUDIO_FRAME_MS // 1000 * 2 * frame.channels
        if len(frame.data) != expected:
            raise RoomError(ERR_INVALID_PARAMETER,
                            f"audio frame has {len(frame.data)} bytes; {AUDIO_FRAME_MS} ms of PCM s16 is {expected}")
        f = self._sdk.AudioFrame()
        f.SetData(bytes(frame.data))
        f.pts = _u32(frame.pts_ms, "audio pts_ms")
        f.sample_rate = frame.sample_rate
        f.channels = frame.channels
        rc = int(cloud.SendAudioFrame(f))
        if rc != 0:
            raise self._send_error(rc, "SendAudioFrame")

    def send_video(self, frame: PixelFrame | H264Frame) -> None:
        cloud = self._live_cloud()
        if not self._video_ready.is_set():
            raise RoomError(ERR_INVALID_OPERATION, "send_video before start_video")
        assert self._params is not None
        sdk = self._sdk
        if isinstance(frame, PixelFrame):
            if self._params.video_input is not VideoFormat.YUV420P:
                raise RoomError(ERR_INVALID_OPERATION, "entered with video_input=h264; send H264Frame")
            w, h = _u32(frame.width, "width"), _u32(frame.height, "height")
            if w == 0 or h == 0 or len(frame.data) != yuv420p_size(w, h):
                raise RoomError(ERR_INVALID_PARAMETER,
                                f"a {w}x{h} YUV420p picture is {yuv420p_size(w, h)} bytes, got {len(frame.data)}")
            p = sdk.PixelFrame()
            p.SetData(bytes(frame.data))
            p.width, p.height = w, h
            p.format = sdk.VIDEO_PIXEL_FORMAT_YUV420p
            p.pts = _u32(frame.pts_ms, "video pts_ms")
            rc = int(cloud.SendPixelFrame(sdk.STREAM_TYPE_VIDEO_HIGH, p))
            what = "SendPixelFrame"
        elif isinstance(frame, H264Frame):
            if self._params.video_input is not VideoFormat.H264:
                raise RoomError(ERR_INVALID_OPERATION, "entered with video_input=yuv420p; send PixelFrame")
            if not frame.data:
                raise RoomError(ERR_INVALID_PARAMETER, "an H.264 access unit cannot be empty")
            v = sdk.VideoFrame()
            v.SetData(bytes(frame.data))
            v.pts = _u32(frame.pts_ms, "video pts_ms")
            v.dts = _u32(frame.pts_ms if frame.dts_ms is None else frame.dts_ms, "video dts_ms")
            v.is_key_frame = bool(frame.key)
            v.codec = sdk.VIDEO_CODEC_TYPE_H264
            rc = int(cloud.SendVideoFrame(sdk.STREAM_TYPE_VIDEO_HIGH, v))
            what = "SendVideoFrame"
        else:
            raise RoomError(ERR_INVALID_PARAMETER,
                            f"send_video takes a PixelFrame or an H264Frame, not {type(frame).__name__}")
        if rc != 0:
            raise self._send_error(rc, what)

    def request_key_frame(self, user_id: str) -> None:
        # The server SDK has no call for this: TRTC's server asks the publisher for a key frame by
        # itself when we subscribe or lose packets, so there is nothing to do here.
        self._check_open()

    # --- helpers for callers' threads -----------------------------------------------------------

    def _live_cloud(self) -> Any:
        self._check_open()
        cloud = self._cloud
        if cloud is None or self._state is not _State.IN_ROOM:
            raise RoomError(ERR_INVALID_OPERATION, f"not in the room ({self._state.value})")
        return cloud

    def _publisher(self, what: str) -> Any:
        cloud = self._live_cloud()
        assert self._params is not None
        if self._params.role is not Role.ANCHOR:
            raise RoomError(ERR_INVALID_OPERATION, f"{what}: an audience member cannot publish; enter as anchor")
        return cloud

    def _await(self, event: threading.Event, callback: str) -> None:
        """Wait for a channel callback; give up when the room closes or after the entry timeout."""
        assert self._params is not None
        deadline = time.monotonic() + self._params.timeout
        while not event.wait(0.05):
            self._check_open()
            if time.monotonic() >= deadline:
                raise RoomError(ERR_REQUEST_SERVER_TIMEOUT,
                                f"TRTC did not confirm with {callback} within {self._params.timeout:g} s")

    def _send_error(self, rc: int, what: str) -> RoomError:
        closed = self._closed
        if closed is not None:
            return RoomError(closed.code or rc, f"{what} failed: not in the room ({closed.reason.value})")
        return RoomError(rc, f"{what} failed: {error_text(rc)}")

    # --- delegate side (SDK threads; never raise out of here unguarded) ------------------------

    def _deliver(self, event: Event) -> None:
        with self._deliver_lock:
            if self._closed is None:
                self._emit(event)

    def _close_and_deliver(self, event: RoomClosed) -> None:
        with self._deliver_lock:
            if self._close(event):
                self._log.info("left trtc room", reason=event.reason.value, code=event.code,
                               message=event.message)

    def _on_enter_room(self) -> None:
        with self._lock:
            state = self._state
            if state is _State.ENTERING:
                # In the room from here on, so that an OnError or OnExitRoom right behind this one
                # closes the room instead of being taken for an answer to EnterRoom.
                self._state = _State.IN_ROOM
        if state is not _State.ENTERING:
            self._log.warning("OnEnterRoom while not entering; ignored", state=state.value)
            return
        self._entered.set()

    def _on_error(self, code: int) -> None:
        with self._lock:
            state = self._state
            if state is _State.ENTERING:
                self._enter_error = code
        self._log.warning("trtc error", code=code, error=error_text(code), state=state.value)
        if state is _State.ENTERING:
            self._entered.set()
        elif state is _State.IN_ROOM:
            if code == ERR_BANNED_BY_SERVER:
                self._close_and_deliver(RoomClosed(CloseReason.REMOVED, code, error_text(code)))
            else:
                self._close_and_deliver(RoomClosed(CloseReason.ERROR, code, error_text(code)))

    def _on_exit_room(self) -> None:
        self._sdk_exited.set()
        with self._lock:
            state = self._state
            if state is _State.ENTERING and self._enter_error is None:
                self._enter_error = ERR_ENTER_ROOM_FAILED
        if state is _State.ENTERING:
            self._entered.set()
        elif state is _State.IN_ROOM:
            # We did not call ExitRoom, yet the SDK left the room. liteav has no dismissal callback
            # (the client SDKs' onExitRoom(reason=2) has no server-SDK counterpart): when the server
            # dismisses the room, the SDK just reports OnExitRoom. A removal comes as OnError(-205)
            # first and has already closed the room as REMOVED, so what remains is a dismissal.
            self._close_and_deliver(RoomClosed(CloseReason.DISMISSED, 0, "the room was dismissed"))

    def _on_video_channel(self, stream_type: Any) -> None:
        if stream_type == self._sdk.STREAM_TYPE_VIDEO_HIGH:
            self._video_ready.set()

    def _on_video_available(self, user_id: str, available: bool, stream_type: Any) -> None:
        # Only the main (camera) stream is recorded; small and screen-share streams are not ours.
        if stream_type == self._sdk.STREAM_TYPE_VIDEO_HIGH:
            self._deliver(VideoAvailable(user_id, available))

    def _wants_media(self) -> bool:
        # receive_media=False (a pusher): liteav subscribes to everything by itself, so drop it here.
        params = self._params
        return params is None or params.receive_media

    def _on_remote_audio(self, user_id: str, frame: Any) -> None:
        if not self._wants_media():
            return
        # Copy everything out now: the SDK reuses its frame once the callback returns.
        pcm = bytes(frame.data)
        self._deliver(RemoteAudio(user_id, AudioFrame(pcm, int(frame.pts), int(frame.sample_rate),
                                                      int(frame.channels))))

    def _on_remote_h264(self, user_id: str, stream_type: Any, frame: Any) -> None:
        if stream_type != self._sdk.STREAM_TYPE_VIDEO_HIGH or not self._wants_media():
            return
        data = bytes(frame.data)
        self._deliver(RemoteVideo(user_id, H264Frame(data, int(frame.pts), bool(frame.is_key_frame),
                                                     int(frame.dts))))

    def _on_remote_pixels(self, user_id: str, stream_type: Any, frame: Any) -> None:
        if stream_type != self._sdk.STREAM_TYPE_VIDEO_HIGH or not self._wants_media():
            return
        if frame.format != self._sdk.VIDEO_PIXEL_FORMAT_YUV420p:
            raise ValueError(f"remote pixel frame in {frame.format}, expected YUV420p")
        w, h = int(frame.width), int(frame.height)
        data = bytes(frame.data)
        if len(data) != yuv420p_size(w, h):
            raise ValueError(f"remote {w}x{h} YUV420p frame has {len(data)} bytes")
        self._deliver(RemoteVideo(user_id, PixelFrame(data, w, h, int(frame.pts))))

    def _on_key_frame_request(self, stream_type: Any) -> None:
        if stream_type == self._sdk.STREAM_TYPE_VIDEO_HIGH:
            self._deliver(KeyFrameRequested())

    def _on_bitrate_request(self, stream_type: Any, bitrate_bps: int) -> None:
        if stream_type == self._sdk.STREAM_TYPE_VIDEO_HIGH:
            self._deliver(BitrateRequested(bitrate_bps))

