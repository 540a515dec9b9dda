"""The `trtc` backend: Tencent's TRTC service through its server SDK, `liteav`.

`TRTCRoom` turns liteav's asynchronous, callback-driven API into the blocking `Room` interface:
calls that the SDK answers with a callback (EnterRoom -> OnEnterRoom/OnError,
CreateLocal*Channel -> OnLocal*ChannelCreated, ExitRoom -> OnExitRoom) wait for that callback with
a timeout, and everything else the SDK reports becomes an `Event` on `Room.poll`.

Delegate callbacks arrive on the SDK's own threads, several of them (media and room events do not
share one), so nothing here assumes an order between callbacks of different kinds. Every one of
TRTCCloudDelegate's 18 pure virtual methods is implemented: one the SDK calls without a Python
override raises inside the SDK's thread. An exception escaping a callback would reach the SDK's
native code and end the process, so each callback catches everything; an unexpected one is logged
once and closes the room with ERR_FAILED. Remote video is H.264 or H.265, passed on as it came
(`H264Frame.codec`). Media that is not what we asked for (a codec, sample rate or size we cannot use) is dropped, counted and logged once per anchor, and never costs the others.

Before the first cloud the SDK is told where to log (under CFS_PATH or /tmp: on SCF nothing else is
writable), to keep off the console, and how much (LITEAV_LOG_LEVEL). The native cloud is destroyed
when its last reference goes (DestroyTRTCCloud does nothing), so leaving is ExitRoom, a bounded wait
for OnExitRoom, then dropping the cloud, always on one of our threads, never on the SDK's.

`liteav` is imported only when a `TRTCRoom` is created without an injected `sdk` module: the local
backend and the emulator never load it (tests inject tests/fakes/liteav_fake.py: the real module
with only its network part replaced). README's "What we know and what we assume about TRTC" lists
each assumption made here and how to check it against the real service.
"""
from __future__ import annotations

import enum
import importlib
import threading
import time
import weakref
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, NoReturn

from shared.media.frames import CODEC_H264, CODEC_HEVC
from shared.runtime import RunLogger, get_logger
from shared.settings import LITEAV_LOG_LEVELS, TRTC_SCENES, Settings, settings

from .base import (
    AUDIO_FRAME_MS,
    AUDIO_SAMPLE_RATE,
    ERR_BANNED_BY_SERVER,
    ERR_ENTER_ROOM_FAILED,
    ERR_FAILED,
    ERR_INVALID_OPERATION,
    ERR_INVALID_PARAMETER,
    ERR_INVALID_ROOM_ID,
    ERR_INVALID_SDK_APP_ID,
    ERR_INVALID_USER_ID,
    ERR_INVALID_USER_SIG,
    ERR_NETWORK_UNREACHABLE,
    ERR_REQUEST_SERVER_TIMEOUT,
    AudioAvailable,
    AudioFrame,
    BitrateRequested,
    CloseReason,
    EnterParams,
    Event,
    H264Frame,
    KeyFrameRequested,
    PixelFrame,
    RemoteAudio,
    RemoteVideo,
    Role,
    Room,
    RoomClosed,
    RoomError,
    UserEntered,
    UserLeft,
    VideoAvailable,
    VideoEncodeConfig,
    VideoFormat,
    yuv420p_size,
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

# --- configuration (shared/settings.py reads and validates the variables) ------------------------

# The SDK's own log: SetLogLevel's levels by name (LITEAV_LOG_LEVEL), under CFS_PATH when set, else /tmp.
LOG_LEVELS = LITEAV_LOG_LEVELS
LOG_DIR_NAME = "liteav_log"

# The TRTC scene each use enters with (TRTCScene without its TRTC_SCENE_ prefix; TRTC_PUSH_SCENE and
# TRTC_RECORD_SCENE override them). A member that receives media is a recorder: it needs one PCM
# callback per anchor, which the server SDK's headers document for TRTC_SCENE_RECORD only. A member
# that only publishes (a pusher) is an anchor of a live broadcast.
SCENES = TRTC_SCENES

# The remote streams a member that receives no media unsubscribes from (the SDK subscribes to all).
_UNSUBSCRIBED = ("STREAM_TYPE_AUDIO", "STREAM_TYPE_VIDEO_HIGH", "STREAM_TYPE_VIDEO_LOW", "STREAM_TYPE_VIDEO_AUX")

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
    ERR_FAILED: "an internal failure (see the log)",
    -4: "the SDK does not support this",
    -5: "the SDK licence is invalid",
    -7: "the TRTC server failed to process the request",
    -100013: "the TRTC service is suspended for this application (account in arrears)",
}


def error_text(code: int) -> str:
    """A readable description of a liteav error code."""
    return _ERROR_TEXT.get(code, f"TRTC SDK error {code}")


def log_level(s: Settings) -> int:
    """SetLogLevel's argument from LITEAV_LOG_LEVEL."""
    return LOG_LEVELS[s.liteav_log_level]


def log_directory(s: Settings) -> Path:
    """Where the SDK writes its log: the only writable places on SCF are /tmp and a mounted CFS."""
    return (s.cfs_path or Path("/tmp")) / LOG_DIR_NAME


def scene_name(params: EnterParams, s: Settings) -> str:
    """The TRTC scene for this entry: the recording one for a member that receives media."""
    return s.trtc_record_scene if params.receive.any else s.trtc_push_scene


class _State(enum.Enum):
    NEW = "new"
    ENTERING = "entering"
    IN_ROOM = "in_room"
    EXITING = "exiting"
    DONE = "done"


def enter_room_params(sdk: ModuleType, params: EnterParams, scene: str | None = None) -> Any:
    """liteav.EnterRoomParams for `params` (the room as room_id or str_room_id, role, scene, media formats)."""
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
    erp.scene = getattr(sdk, "TRTC_SCENE_" + (scene or scene_name(params, settings())).upper())
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


_configured: "weakref.WeakSet[ModuleType]" = weakref.WeakSet()
_configure_lock = threading.Lock()


def configure_sdk(sdk: ModuleType, s: Settings, log: RunLogger) -> None:
    """The SDK's process-wide log settings, once per SDK module, before its first cloud.

    Console off first (its lines would mix with our JSON on stderr), then the level, then the log
    file under /tmp or CFS_PATH; where that cannot be had, no log file at all: by default the SDK
    writes to ~/.cache, which SCF does not let it.
    """
    with _configure_lock:
        if sdk in _configured:
            return
        level = log_level(s)
        sdk.DisableConsoleLog()
        sdk.SetLogLevel(level)
        directory = log_directory(s)
        where = "none"
        if level < LOG_LEVELS["none"]:
            try:
                directory.mkdir(parents=True, exist_ok=True)
                if sdk.SetLogPath(str(directory)):
                    where = str(directory)
            except OSError as e:
                log.warning("cannot keep the SDK's log", directory=str(directory), error=str(e))
        if where == "none":
            sdk.DisableLogFile(True)
        _configured.add(sdk)
    log.info("liteav configured", log_level=level, log_directory=where)


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


def _name(value: Any) -> str:
    """An SDK enum's name (VIDEO_CODEC_TYPE_H265), or whatever the value says of itself."""
    return str(getattr(value, "name", value))


# --- the delegate ------------------------------------------------------------------------------

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
                room = self._room()
                if room is not None:
                    room._callback_failed(callback.__name__, e)
            except BaseException:  # noqa: BLE001 - not even reporting may raise into the SDK
                pass

    return callback


class _DelegateMixin:
    """The callbacks liteav calls; each forwards to the TRTCRoom it belongs to.

    All 18 pure virtual methods of liteav.TRTCCloudDelegate are here (a test calls each through
    the real base class). The four with a C++ default (OnSeiMessageReceived, OnReceiveCustomCmdMsg,
    OnMissCustomCmdMsg, OnNetworkQuality) are left to it: we use none of them.
    """

    def __init__(self, room: "TRTCRoom") -> None:
        super().__init__()  # pybind11: the native base must be initialised
        # Weak: the cloud holds the delegate strongly, and the room holds the cloud.
        self._room = weakref.ref(room)

    # Lifecycle
    OnEnterRoom = _guarded(lambda room: room._on_enter_room())
    OnExitRoom = _guarded(lambda room: room._on_exit_room())
    OnError = _guarded(lambda room, error: room._on_error(int(error)))
    OnConnectionStateChanged = _guarded(lambda room, old, new: room._log.debug(
        "trtc connection state", old=_name(old), new=_name(new)))
    OnLocalAudioChannelCreated = _guarded(lambda room: room._audio_ready.set())
    OnLocalAudioChannelDestroyed = _guarded(lambda room: room._audio_ready.clear())
    OnLocalVideoChannelCreated = _guarded(lambda room, stream_type: room._on_video_channel(stream_type, True))
    OnLocalVideoChannelDestroyed = _guarded(lambda room, stream_type: room._on_video_channel(stream_type, False))
    # Remote users
    OnRemoteUserEnterRoom = _guarded(lambda room, info: room._on_user_entered(info.user_id.GetValue()))
    OnRemoteUserExitRoom = _guarded(lambda room, info, reason: room._on_user_left(
        info.user_id.GetValue(), int(reason)))
    OnRemoteAudioAvailable = _guarded(lambda room, user_id, available: room._on_audio_available(
        str(user_id), bool(available)))
    OnRemoteVideoAvailable = _guarded(lambda room, user_id, available, stream_type: room._on_video_available(
        str(user_id), bool(available), stream_type))
    # Remote media
    OnRemoteAudioReceived = _guarded(lambda room, user_id, frame: room._on_remote_audio(str(user_id), frame))
    OnRemoteMixedAudioReceived = _guarded(lambda room, frame: room._drop(
        "", "mixed_audio", "a mix of every remote user's audio, which we never ask for"))
    OnRemoteVideoFrameReceived = _guarded(lambda room, user_id, stream_type, frame: room._on_remote_h264(
        str(user_id), stream_type, frame))
    OnRemotePixelFrameReceived = _guarded(lambda room, user_id, stream_type, frame: room._on_remote_pixels(
        str(user_id), stream_type, frame))
    # Requests about what we publish
    OnRequestKeyFrame = _guarded(lambda room, stream_type: room._on_key_frame_request(stream_type))
    OnRequestChangeVideoEncodeBitrate = _guarded(lambda room, stream_type, bitrate: room._on_bitrate_request(
        stream_type, int(bitrate)))


# Name each callback after the liteav method it implements, so that failures are logged under it.
for _name_, _value in list(vars(_DelegateMixin).items()):
    if _name_.startswith("On") and callable(_value):
        _value.__name__ = _name_
        _value.__qualname__ = f"TRTCRoomDelegate.{_name_}"

CALLBACKS = tuple(n for n in vars(_DelegateMixin) if n.startswith("On"))


# --- the room ----------------------------------------------------------------------------------


class TRTCRoom(Room):
    """A member of one TRTC room through liteav. `sdk` is the liteav module (injected in tests); its
    settings (scene, SDK log) are read from shared.settings when it enters."""

    def __init__(self, sdk: ModuleType | None = None, logger: RunLogger | None = None):
        super().__init__()
        # lazy: only the trtc backend ever loads the native SDK
        self._sdk: ModuleType = importlib.import_module("liteav") if sdk is None else sdk
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
        self._left = threading.Event()  # exit() is done: out of the room, the cloud dropped
        self._audio_ready = threading.Event()
        self._video_ready = threading.Event()
        self._audio_channels = 0
        self._video_config: VideoEncodeConfig | None = None
        # Users whose exit we reported: media from them that a media thread still delivers after
        # it would start a new stay in the recorder, so it is dropped until they enter again.
        self._gone: set[str] = set()
        self._dropped: dict[tuple[str, str], int] = {}
        self._failures: dict[str, int] = {}
        self._tally_lock = threading.Lock()

    @property
    def dropped_frames(self) -> dict[tuple[str, str], int]:
        """Frames from the SDK we could not use, by (user id, problem): codec, sample_rate, size, ..."""
        with self._tally_lock:
            return dict(self._dropped)

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
        try:
            s = settings()
            scene = scene_name(params, s)
            configure_sdk(sdk, s, self._log)
        except ValueError as e:  # a wrong setting; backend_from_env names it earlier
            self._fail_enter(RoomError(ERR_INVALID_PARAMETER, f"cannot enter {where}: {e}"))
        self._log.info("entering trtc room", room=str(params.room), user_id=params.user_id,
                       role=params.role.value, scene=scene)
        try:
            erp = enter_room_params(sdk, params, scene)
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
            if state in (_State.ENTERING, _State.IN_ROOM):
                self._state = _State.EXITING
            elif state is _State.NEW:
                self._state = _State.DONE
        if state is _State.EXITING:  # another thread is leaving: done when it is
            self._left.wait(EXIT_WAIT_S + 1.0)
            return
        if state is _State.DONE:
            return
        self._entered.set()  # an enter() still waiting in another thread gives up now
        try:
            cloud = self._cloud
            # After a dismissal or removal the SDK has already left (OnExitRoom): nothing to wait for.
            if state is not _State.NEW and cloud is not None and not self._sdk_exited.is_set():
                rc = int(cloud.ExitRoom())
                if rc == 0:
                    if not self._sdk_exited.wait(EXIT_WAIT_S):
                        self._log.warning("no OnExitRoom from the SDK; dropping the cloud anyway",
                                          waited_s=EXIT_WAIT_S)
                else:
                    self._log.warning("ExitRoom failed", code=rc, error=error_text(rc))
            del cloud
        finally:
            self._close_and_deliver(RoomClosed(CloseReason.EXITED))
            self._drop_cloud()
            with self._lock:
                self._state = _State.DONE
            self._left.set()
            self._log_tallies()

    def _leave_in_background(self) -> None:
        """The room closed by itself (removed, dismissed, an error): finish leaving on our own thread.

        The SDK may still be in the room (after an error), and the native cloud goes with its last
        reference, which must not be dropped on an SDK thread (its destructor would wait for the
        thread it runs on). So a thread of ours gives the SDK a moment to report OnExitRoom (it
        follows a removal), then calls exit(): ExitRoom if still needed, then the drop.
        """
        def leave() -> None:
            self._sdk_exited.wait(EXIT_WAIT_S)
            self.exit()

        threading.Thread(target=leave, name="trtc-leave", daemon=True).start()

    def _abandon(self) -> None:
        """After a failed enter: leave whatever the SDK half-did and drop the cloud."""
        with self._lock:
            self._state = _State.DONE
        cloud = self._cloud
        try:
            if cloud is not None and not self._sdk_exited.is_set():
                if int(cloud.ExitRoom()) == 0:
                    self._sdk_exited.wait(EXIT_WAIT_S)
        except Exception as e:  # noqa: BLE001 - the enter error is what the caller needs to see
            self._log.warning("ExitRoom after a failed enter failed", error=str(e))
        finally:
            del cloud
            self._drop_cloud()
            self._left.set()

    def _drop_cloud(self) -> None:
        with self._lock:
            cloud, self._cloud = self._cloud, None
        if cloud is not None:
            # A no-op in liteav (kept in case a version does more): the native cloud is destroyed
            # when this, the last reference, goes.
            self._sdk.DestroyTRTCCloud(cloud)

    def _log_tallies(self) -> None:
        with self._tally_lock:
            dropped = {f"{user or '(mix)'}:{problem}": n for (user, problem), n in self._dropped.items()}
            failures = dict(self._failures)
        if dropped:
            self._log.warning("frames from the SDK dropped in this room", dropped=dropped)
        if failures:
            self._log.error("liteav callbacks that failed in this room", failures=failures)

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
            raise RoomError(ERR_INVALID_OPERATION, "send_audio before start_audio (or after the SDK closed the channel)")
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
            raise RoomError(ERR_INVALID_OPERATION, "send_video before start_video (or after the SDK closed the channel)")
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
            v.codec = sdk.VIDEO_CODEC_TYPE_H265 if frame.codec == CODEC_HEVC else sdk.VIDEO_CODEC_TYPE_H264
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

    def _deliver_media(self, user_id: str, event: Event) -> None:
        with self._deliver_lock:
            if self._closed is None and user_id not in self._gone:
                self._emit(event)

    def _close_and_deliver(self, event: RoomClosed) -> bool:
        with self._deliver_lock:
            won = self._close(event)
        if won:
            self._log.info("left trtc room", reason=event.reason.value, code=event.code, message=event.message)
        return won

    def _closed_by_itself(self, event: RoomClosed) -> None:
        """The room closed while we were in it and did not ask to leave."""
        if self._close_and_deliver(event):
            self._leave_in_background()

    def _callback_failed(self, callback: str, error: BaseException) -> None:
        """A callback raised: logged the first time, and the room closes (or the entry fails) with ERR_FAILED."""
        with self._tally_lock:
            n = self._failures[callback] = self._failures.get(callback, 0) + 1
        if n == 1:
            self._log.error("liteav callback failed; the room is closed", callback=callback,
                            error=f"{type(error).__name__}: {error}", exc_info=error)
        self._stay_ended(ERR_FAILED, RoomClosed(CloseReason.ERROR, ERR_FAILED,
                                                f"the trtc adapter failed in {callback}: {type(error).__name__}: {error}"))

    def _stay_ended(self, enter_error: int, closed: RoomClosed) -> None:
        """Our stay ended without our exit: while entering, EnterRoom fails with `enter_error` (unless
        an error came first); in the room, the room closes with `closed`."""
        with self._lock:
            state = self._state
            if state is _State.ENTERING and self._enter_error is None:
                self._enter_error = enter_error
        if state is _State.ENTERING:
            self._entered.set()
        elif state is _State.IN_ROOM:
            self._closed_by_itself(closed)

    def _drop(self, user_id: str, problem: str, detail: str) -> None:
        """A frame we cannot use: counted, and logged the first time per anchor and problem."""
        with self._tally_lock:
            key = (user_id, problem)
            n = self._dropped[key] = self._dropped.get(key, 0) + 1
        if n == 1:
            self._log.warning("dropped a frame from the SDK; more like it from this anchor are only counted",
                              anchor=user_id, problem=problem, detail=detail)

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
            # -205 is every way the server puts us out: RemoveUser, and the same userId entering
            # elsewhere (the SDK says which in neither case).
            reason = CloseReason.REMOVED if code == ERR_BANNED_BY_SERVER else CloseReason.ERROR
            self._closed_by_itself(RoomClosed(reason, code, error_text(code)))

    def _on_exit_room(self) -> None:
        self._sdk_exited.set()
        # In the room, we did not call ExitRoom, yet the SDK left the room. liteav's OnExitRoom() carries
        # no reason (the client SDKs' onExitRoom(reason=2) has no server-SDK counterpart), and the
        # SDK's threads do not order it against OnError: a removal that came as OnError(-205)
        # first has closed the room as REMOVED already; anything else claims only what is known.
        self._stay_ended(ERR_ENTER_ROOM_FAILED, RoomClosed(CloseReason.ENDED_BY_SERVER, 0,
                                                           "the server ended our stay in the room (OnExitRoom; "
                                                           "a dismissal arrives this way)"))

    def _on_video_channel(self, stream_type: Any, created: bool) -> None:
        if stream_type == self._sdk.STREAM_TYPE_VIDEO_HIGH:
            (self._video_ready.set if created else self._video_ready.clear)()

    def _on_user_entered(self, user_id: str) -> None:
        self._unsubscribe(user_id, *_UNSUBSCRIBED)
        with self._deliver_lock:
            self._gone.discard(user_id)
            if self._closed is None:
                self._emit(UserEntered(user_id))

    def _on_user_left(self, user_id: str, reason: int) -> None:
        with self._deliver_lock:
            self._gone.add(user_id)
            if self._closed is None:
                self._emit(UserLeft(user_id, reason))

    def _on_audio_available(self, user_id: str, available: bool) -> None:
        if available:
            self._unsubscribe(user_id, "STREAM_TYPE_AUDIO")
        self._deliver(AudioAvailable(user_id, available))

    def _on_video_available(self, user_id: str, available: bool, stream_type: Any) -> None:
        if available:
            self._unsubscribe(user_id, _name(stream_type))
        # Only the main (camera) stream is recorded; small and screen-share streams are not ours.
        if stream_type == self._sdk.STREAM_TYPE_VIDEO_HIGH:
            self._deliver(VideoAvailable(user_id, available))

    def _takes(self, user_id: str, video: bool) -> bool:
        params = self._params
        return params is None or params.receive.takes(user_id, video)

    def _unsubscribe(self, user_id: str, *stream_types: str) -> None:
        """What EnterParams.receive leaves out (a pusher: everything; a recogniser: video and the
        anchors it does not recognise): stop the SDK receiving and decoding what nobody reads.

        liteav subscribes to every remote stream by itself; asked again whenever a user enters or
        starts a stream, since whether a subscription outlives those is not documented.
        """
        cloud = self._cloud
        if cloud is None or self._state is not _State.IN_ROOM:
            return
        for name in stream_types:
            stream_type = getattr(self._sdk, name, None)
            if stream_type is None or self._takes(user_id, video=name != "STREAM_TYPE_AUDIO"):
                continue
            rc = int(cloud.Unsubscribe(user_id, stream_type))
            if rc != 0:
                self._log.debug("Unsubscribe refused", user_id=user_id, stream_type=name, code=rc)

    def _on_remote_audio(self, user_id: str, frame: Any) -> None:
        if not self._takes(user_id, video=False):
            return  # unsubscribed; what the SDK had in flight is not ours to deliver
        assert self._params is not None
        # Copy everything out now: the SDK reuses its frame once the callback returns.
        pcm = bytes(frame.data)
        rate, channels, codec = int(frame.sample_rate), int(frame.channels), frame.codec
        expected = self._params.audio_output_channels
        if codec != self._sdk.AUDIO_CODEC_TYPE_PCM:
            self._drop(user_id, "codec", f"audio in {_name(codec)}; we asked for PCM")
        elif rate != AUDIO_SAMPLE_RATE:
            self._drop(user_id, "sample_rate", f"audio at {rate} Hz; we asked for {AUDIO_SAMPLE_RATE}")
        elif channels != expected:
            self._drop(user_id, "channels", f"audio with {channels} channel(s); we asked for {expected}")
        elif not pcm or len(pcm) % (2 * channels):
            self._drop(user_id, "size", f"{len(pcm)} bytes are no whole number of s16 x{channels} samples")
        else:
            self._deliver_media(user_id, RemoteAudio(user_id, AudioFrame(pcm, int(frame.pts), rate, channels)))

    def _on_remote_h264(self, user_id: str, stream_type: Any, frame: Any) -> None:
        if stream_type != self._sdk.STREAM_TYPE_VIDEO_HIGH or not self._takes(user_id, video=True):
            return
        data = bytes(frame.data)
        codec = self._codec_name(frame.codec)
        if codec is None:
            self._drop(user_id, "codec", f"video in {_name(frame.codec)}; only H.264 and H.265 are taken")
        elif not data:
            self._drop(user_id, "size", "an empty video frame")
        else:
            self._deliver_media(user_id, RemoteVideo(user_id, H264Frame(
                data, int(frame.pts), bool(frame.is_key_frame), int(frame.dts), codec)))

    def _codec_name(self, sdk_codec: Any) -> str | None:
        """frames.CODEC_* for a liteav VIDEO_CODEC_TYPE_*, None for one we do not take."""
        if sdk_codec == self._sdk.VIDEO_CODEC_TYPE_H264:
            return CODEC_H264
        if sdk_codec == getattr(self._sdk, "VIDEO_CODEC_TYPE_H265", None):
            return CODEC_HEVC
        return None

    def _on_remote_pixels(self, user_id: str, stream_type: Any, frame: Any) -> None:
        if stream_type != self._sdk.STREAM_TYPE_VIDEO_HIGH or not self._takes(user_id, video=True):
            return
        w, h = int(frame.width), int(frame.height)
        data = bytes(frame.data)
        if frame.format != self._sdk.VIDEO_PIXEL_FORMAT_YUV420p:
            self._drop(user_id, "pixel_format", f"a picture in {_name(frame.format)}; we asked for YUV420p")
        elif w <= 0 or h <= 0 or len(data) != yuv420p_size(w, h):
            self._drop(user_id, "size", f"a {w}x{h} YUV420p picture of {len(data)} bytes")
        else:
            self._deliver_media(user_id, RemoteVideo(user_id, PixelFrame(data, w, h, int(frame.pts))))

    def _on_key_frame_request(self, stream_type: Any) -> None:
        if stream_type == self._sdk.STREAM_TYPE_VIDEO_HIGH:
            self._deliver(KeyFrameRequested())

    def _on_bitrate_request(self, stream_type: Any, bitrate_bps: int) -> None:
        if stream_type == self._sdk.STREAM_TYPE_VIDEO_HIGH:
            self._deliver(BitrateRequested(bitrate_bps))
