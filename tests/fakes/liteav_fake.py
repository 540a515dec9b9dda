"""A fake of Tencent's `liteav` SDK with liteav's own names, running on the emulator's rooms.

The real SDK cannot run here (it talks to Tencent's servers), so the `trtc` room backend is tested
against this module-shaped stand-in. It keeps what matters about the real one:

- the same class, method, attribute, enum and constant names (a test checks each against the real
  module), and the same strictness: struct fields accept only their declared type (an enum field
  refuses a plain int, a `TrtcString` field refuses a str, 32-bit fields refuse what overflows),
  unknown attributes cannot be set, `SetData` takes `bytes` only;
- asynchronous answers: `EnterRoom`, `ExitRoom` and `CreateLocal*Channel` return at once and the
  result comes later as a delegate callback, from the cloud's own "SDK" thread;
- frames handed to a callback are reused as soon as it returns (as the SDK's buffers are), so a
  delegate that keeps the object instead of copying out gets garbage;
- a delegate callback that raises is fatal: the real SDK's director terminates the process. The
  fake records it, stops the cloud and interrupts the main thread (pytest stops loudly).

Underneath, each cloud is a `LocalRoom` member of the emulator's room server, so rooms, UserSigs,
kicks, dismissals and media relay behave as the emulator makes them behave. Controls that the
real SDK does not have are named `fake_*`.

    sdk = make_sdk(host, port)           # a module object standing in for `liteav`
    room = TRTCRoom(sdk=sdk)             # or make_trtc_room(host, port)
"""
from __future__ import annotations

import _thread
import copy
import enum
import itertools
import queue
import sys
import threading
import traceback
import types
from dataclasses import dataclass
from typing import Any, Callable

from shared.room.base import (
    AudioAvailable, AudioFrame as RoomAudioFrame, BitrateRequested, CloseReason, EnterParams, H264Frame,
    KeyFrameRequested, PixelFrame as RoomPixelFrame, RemoteAudio, RemoteVideo, Role, Room, RoomClosed,
    RoomError, RoomRef, UserEntered, UserLeft, VideoAvailable, VideoEncodeConfig, VideoFormat,
)
from shared.room.local import LocalRoom

_U32_MAX = 0xFFFFFFFF
_I32 = (-(1 << 31), (1 << 31) - 1)


# --- enums (pybind11 enums in the real module; IntEnum here: int() and == int work in both) -----


class Error(enum.IntEnum):
    ERR_OK = 0
    ERR_FAILED = -1
    ERR_INVALID_PARAMETER = -2
    ERR_INVALID_OPERATION = -3
    ERR_NOT_SUPPORTED = -4
    ERR_INVALID_LICENSE = -5
    ERR_REQUEST_SERVER_TIMEOUT = -6
    ERR_SERVER_PROCESS_FAILED = -7
    ERR_READ_TRY_AGAIN = -102
    ERR_NETWORK_UNREACHABLE = -103
    ERR_ENTER_ROOM_FAILED = -3301
    ERR_INVALID_SDK_APP_ID = -3317
    ERR_INVALID_ROOM_ID = -3318
    ERR_INVALID_USER_ID = -3319
    ERR_INVALID_USER_SIG = -3320
    ERR_SERVICE_SUSPENDED = -100013
    ERR_BANNED_BY_SERVER = -205


class StreamType(enum.IntEnum):
    STREAM_TYPE_UNKNOWN = -1
    STREAM_TYPE_AUDIO = 1
    STREAM_TYPE_VIDEO_HIGH = 2
    STREAM_TYPE_VIDEO_LOW = 3
    STREAM_TYPE_VIDEO_AUX = 7


class TRTCRole(enum.IntEnum):
    TRTC_ROLE_ANCHOR = 0
    TRTC_ROLE_AUDIENCE = 1


class TRTCScene(enum.IntEnum):
    TRTC_SCENE_VIDEO_CALL = 0
    TRTC_SCENE_AUDIO_CALL = 1
    TRTC_SCENE_LIVE = 2
    TRTC_SCENE_VOICE_CHAT = 3
    TRTC_SCENE_RECORD = 4


class AudioCodecType(enum.IntEnum):
    AUDIO_CODEC_TYPE_PCM = 0
    AUDIO_CODEC_TYPE_OPUS = 1
    AUDIO_CODEC_TYPE_AAC = 2


class VideoCodecType(enum.IntEnum):
    VIDEO_CODEC_TYPE_H264 = 0
    VIDEO_CODEC_TYPE_H265 = 1


class VideoPixelFormat(enum.IntEnum):
    VIDEO_PIXEL_FORMAT_YUV420p = 0
    VIDEO_PIXEL_FORMAT_YUVA420p = 1
    VIDEO_PIXEL_FORMAT_RGBA = 2


class VideoRotation(enum.IntEnum):
    VIDEO_ROTATION_0 = 0
    VIDEO_ROTATION_90 = 1
    VIDEO_ROTATION_180 = 2
    VIDEO_ROTATION_270 = 3


class AudioObtainMethod(enum.IntEnum):
    AUDIO_OBTAIN_METHOD_GET = 0
    AUDIO_OBTAIN_METHOD_CALLBACK = 1


class ConnectionState(enum.IntEnum):
    CONNECTION_STATE_INIT = 0
    CONNECTION_STATE_DISCONNECTED = 1
    CONNECTION_STATE_CONNECTING = 2
    CONNECTION_STATE_CONNECTED = 3


ENUMS: tuple[type[enum.IntEnum], ...] = (
    Error, StreamType, TRTCRole, TRTCScene, AudioCodecType, VideoCodecType, VideoPixelFormat, VideoRotation,
    AudioObtainMethod, ConnectionState,
)
# The real module exports every enum member at the top level too (liteav.ERR_BANNED_BY_SERVER).
globals().update({m.name: m for e in ENUMS for m in e})


# --- typed fields: what pybind11 accepts, and nothing more --------------------------------------


def _refuse(where: str, value: Any, expected: str) -> TypeError:
    return TypeError(f"{where}: incompatible value {value!r} ({type(value).__name__}); expected {expected}")


def _u32(value: Any, where: str) -> int:
    if not isinstance(value, int) or not 0 <= value <= _U32_MAX:
        raise _refuse(where, value, "an int in 0..2**32-1")
    return int(value)


def _i32(value: Any, where: str) -> int:
    if not isinstance(value, int) or not _I32[0] <= value <= _I32[1]:
        raise _refuse(where, value, "a 32-bit int")
    return int(value)


def _bool(value: Any, where: str) -> bool:
    # pybind11's bool caster takes None and anything with a numeric truth value, not str.
    if value is None or isinstance(value, (bool, int, float)):
        return bool(value)
    raise _refuse(where, value, "bool")


def _enum(kind: type[enum.IntEnum]) -> Callable[[Any, str], Any]:
    def check(value: Any, where: str) -> Any:
        if not isinstance(value, kind):
            raise _refuse(where, value, f"{kind.__name__} (a plain int is refused, as by pybind11)")
        return value
    return check


def _struct(kind: type) -> Callable[[Any, str], Any]:
    def check(value: Any, where: str) -> Any:
        if not isinstance(value, kind):
            raise _refuse(where, value, kind.__name__)
        return copy.deepcopy(value)  # C++ assignment copies
    return check


class _Field:
    def __init__(self, check: Callable[[Any, str], Any], default: Callable[[], Any]):
        self.check, self.default = check, default
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._fake_values[self.name]

    def __set__(self, obj: Any, value: Any) -> None:
        obj._fake_values[self.name] = self.check(value, f"{type(obj).__name__}.{self.name}")


def u32(default: int = 0) -> _Field:
    return _Field(_u32, lambda: default)


def i32(default: int = 0) -> _Field:
    return _Field(_i32, lambda: default)


def boolean(default: bool = False) -> _Field:
    return _Field(_bool, lambda: default)


def of_enum(default: enum.IntEnum) -> _Field:
    return _Field(_enum(type(default)), lambda: default)


def of_struct(kind: type) -> _Field:
    return _Field(_struct(kind), kind)


class _Struct:
    """A pybind11-bound struct: declared fields only, each checked on assignment."""

    _fake_fields: tuple[str, ...] = ()

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        names = [n for k in reversed(cls.__mro__) for n, v in vars(k).items() if isinstance(v, _Field)]
        cls._fake_fields = tuple(dict.fromkeys(names))

    def __init__(self) -> None:
        values = {}
        for name in self._fake_fields:
            values[name] = getattr(type(self), name).default()
        object.__setattr__(self, "_fake_values", values)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_fake_") or name in self._fake_fields or isinstance(
                getattr(type(self), name, None), property):
            object.__setattr__(self, name, value)
            return
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __deepcopy__(self, memo: dict) -> Any:
        clone = object.__new__(type(self))
        object.__setattr__(clone, "_fake_values", copy.deepcopy(self._fake_values, memo))
        for k, v in self.__dict__.items():
            if k != "_fake_values":
                object.__setattr__(clone, k, copy.deepcopy(v, memo))
        return clone


def _check_arg(value: Any, kind: type, where: str) -> None:
    if not isinstance(value, kind):
        raise _refuse(where, value, kind.__name__)


# --- data structures --------------------------------------------------------------------------


class TrtcString:
    def __init__(self, value: str | bytes = "") -> None:
        self._fake_value = ""
        self.SetValue(value)

    def GetValue(self) -> str:
        return self._fake_value

    def SetValue(self, value: str | bytes) -> None:
        if isinstance(value, bytes):
            value = value.decode()
        if not isinstance(value, str):
            raise _refuse("TrtcString", value, "str")
        self._fake_value = value

    def __repr__(self) -> str:
        return f"TrtcString({self._fake_value!r})"


def trtc_string() -> _Field:
    return _Field(_struct(TrtcString), TrtcString)


class RoomParams(_Struct):
    sdk_app_id = u32()
    user_id = trtc_string()
    room_id = u32()
    user_sig = trtc_string()
    str_room_id = trtc_string()


class AudioObtainParams(_Struct):
    audio_obtain_method = of_enum(AudioObtainMethod.AUDIO_OBTAIN_METHOD_CALLBACK)
    enable_remote_audio_mix = boolean(False)
    output_sample_rate = i32(16000)
    output_channels = i32(1)
    output_frame_length_ms = i32(20)
    output_audio_codec_type = of_enum(AudioCodecType.AUDIO_CODEC_TYPE_PCM)


class EnterRoomParams(_Struct):
    room = of_struct(RoomParams)
    role = of_enum(TRTCRole.TRTC_ROLE_ANCHOR)
    scene = of_enum(TRTCScene.TRTC_SCENE_VIDEO_CALL)
    audio_obtain_params = of_struct(AudioObtainParams)
    private_map_key = trtc_string()
    use_pixel_frame_input = boolean(False)
    use_pixel_frame_output = boolean(False)


class AudioEncodeParams(_Struct):
    channels = i32(1)
    sample_rate = i32(48000)
    frame_length_ms = i32(20)
    bitrate_bps = i32(51200)
    need_encode = boolean(True)


class VideoEncodeParams(_Struct):
    frame_rate = i32(15)
    bitrate_bps = i32(0)
    gop_in_seconds = i32(3)


class UserInfo(_Struct):
    user_id = trtc_string()


class _Media(_Struct):
    """What the three frame types share: a data buffer set with SetData (bytes only)."""

    def __init__(self) -> None:
        super().__init__()
        self._fake_data = b""

    @property
    def data(self) -> bytes:
        return self._fake_data

    @property
    def size(self) -> int:
        return len(self._fake_data)

    def SetData(self, data: bytes) -> None:
        if type(data) is not bytes:
            raise _refuse(f"{type(self).__name__}.SetData", data, "bytes")
        self._fake_data = data

    def _fake_reuse(self) -> None:
        # The SDK refills its frame buffers once a callback returns.
        self._fake_data = b"\xde\xad" * (len(self._fake_data) // 2)
        for name in self._fake_fields:
            value = self._fake_values[name]
            if isinstance(value, int) and not isinstance(value, (bool, enum.Enum)):
                self._fake_values[name] = 0


class AudioFrame(_Media):
    pts = u32()
    sample_rate = i32(48000)
    channels = i32(1)
    bits_per_sample = i32(16)
    codec = of_enum(AudioCodecType.AUDIO_CODEC_TYPE_PCM)
    has_voice = boolean(False)

    def PcmData(self) -> bytes:
        return self.data

    def SetExtraData(self, extra_data: bytes) -> None:
        if type(extra_data) is not bytes:
            raise _refuse("AudioFrame.SetExtraData", extra_data, "bytes")


class VideoFrame(_Media):
    pts = u32()
    dts = u32()
    codec = of_enum(VideoCodecType.VIDEO_CODEC_TYPE_H264)
    is_key_frame = boolean(False)
    rotation = of_enum(VideoRotation.VIDEO_ROTATION_0)

    def H264Data(self) -> bytes:
        return self.data


class PixelFrame(_Media):
    pts = u32()
    format = of_enum(VideoPixelFormat.VIDEO_PIXEL_FORMAT_YUV420p)
    height = u32()
    width = u32()
    rotation = of_enum(VideoRotation.VIDEO_ROTATION_0)

    def YuvData(self) -> bytes:
        return self.data


# --- the delegate and the cloud ------------------------------------------------------------------


class TRTCCloudDelegate:
    """Every callback is a no-op here, as in the real base class; subclasses override some."""

    def __init__(self) -> None:
        # pybind11 refuses a delegate whose subclass forgot to call the base __init__.
        self._fake_initialised = True

    def OnError(self, error: Error) -> None: ...
    def OnConnectionStateChanged(self, old_state: ConnectionState, new_state: ConnectionState) -> None: ...
    def OnEnterRoom(self) -> None: ...
    def OnExitRoom(self) -> None: ...
    def OnLocalAudioChannelCreated(self) -> None: ...
    def OnLocalAudioChannelDestroyed(self) -> None: ...
    def OnLocalVideoChannelCreated(self, stream_type: StreamType) -> None: ...
    def OnLocalVideoChannelDestroyed(self, stream_type: StreamType) -> None: ...
    def OnRequestChangeVideoEncodeBitrate(self, stream_type: StreamType, bitrate_bps: int) -> None: ...
    def OnRequestKeyFrame(self, stream_type: StreamType) -> None: ...
    def OnRemoteUserEnterRoom(self, info: UserInfo) -> None: ...
    def OnRemoteUserExitRoom(self, info: UserInfo, reason: int) -> None: ...
    def OnRemoteAudioAvailable(self, user_id: str, available: bool) -> None: ...
    def OnRemoteVideoAvailable(self, user_id: str, available: bool, stream_type: StreamType) -> None: ...
    def OnRemoteVideoFrameReceived(self, user_id: str, stream_type: StreamType, frame: VideoFrame) -> None: ...
    def OnRemotePixelFrameReceived(self, user_id: str, stream_type: StreamType, frame: PixelFrame) -> None: ...
    def OnRemoteAudioReceived(self, user_id: str, frame: AudioFrame) -> None: ...
    def OnRemoteMixedAudioReceived(self, frame: AudioFrame) -> None: ...


@dataclass(frozen=True)
class DelegateError:
    """A delegate callback raised: with the real SDK, the process would have died here."""

    callback: str
    error: BaseException
    traceback: str


def _error(code: int) -> Error:
    try:
        return Error(code)
    except ValueError:
        return Error.ERR_FAILED


_HIGH = StreamType.STREAM_TYPE_VIDEO_HIGH
_cloud_ids = itertools.count(1)


class TRTCCloud:
    """One member of one room. Calls return at once; answers come on the cloud's SDK thread."""

    _fake_sdk: "FakeLiteav"  # set on the per-SDK subclass that make_sdk() builds

    def __init__(self, delegate: TRTCCloudDelegate) -> None:
        _check_arg(delegate, TRTCCloudDelegate, "TRTCCloud(delegate)")
        if not getattr(delegate, "_fake_initialised", False):
            raise TypeError(f"{type(delegate).__name__}.__init__() must call TRTCCloudDelegate.__init__()")
        self._delegate = delegate
        self._lock = threading.Lock()
        self._jobs: "queue.SimpleQueue[Callable[[], None] | None]" = queue.SimpleQueue()
        self._state = "idle"  # idle -> entering -> in_room -> exiting -> out; or dead / destroyed
        self._link: LocalRoom | None = None
        self._pixel_input = False
        self._audio_open = False
        self._video_open = False
        self._dead = False
        self._destroyed = threading.Event()
        # What the cloud was asked to do, for tests (names the real SDK does not have).
        self.fake_entered_with: EnterParams | None = None
        self.fake_audio_params: AudioEncodeParams | None = None
        self.fake_video_encode_params: VideoEncodeParams | None = None
        self.fake_refusals: list[str] = []
        self.fake_internal_errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name=f"liteav-fake-sdk-{next(_cloud_ids)}", daemon=True)
        self._thread.start()
        self._fake_sdk.fake_clouds.append(self)

    # --- the API ------------------------------------------------------------------------------

    def EnterRoom(self, params: EnterRoomParams) -> int:
        _check_arg(params, EnterRoomParams, "TRTCCloud.EnterRoom(params)")
        if self._dead:
            return Error.ERR_FAILED
        entry = self._entry(params)
        if isinstance(entry, int):
            return entry
        with self._lock:
            if self._state != "idle":
                return self._refused(Error.ERR_INVALID_OPERATION, f"EnterRoom while {self._state}")
            self._state = "entering"
            self._pixel_input = bool(params.use_pixel_frame_input)
        self.fake_entered_with = entry
        self._jobs.put(lambda: self._do_enter(entry))
        return Error.ERR_OK

    def ExitRoom(self) -> int:
        if self._dead:
            return Error.ERR_FAILED
        with self._lock:
            if self._state not in ("entering", "in_room"):
                return self._refused(Error.ERR_INVALID_OPERATION, f"ExitRoom while {self._state}")
            self._state = "exiting"
        self._jobs.put(self._do_exit)
        return Error.ERR_OK

    def CreateLocalAudioChannel(self, params: AudioEncodeParams) -> int:
        _check_arg(params, AudioEncodeParams, "TRTCCloud.CreateLocalAudioChannel(params)")
        link = self._in_room()
        if isinstance(link, int):
            return link
        if not params.need_encode or params.sample_rate != 48000 or params.frame_length_ms != 20:
            return self._refused(Error.ERR_NOT_SUPPORTED, "the fake SDK takes 48 kHz PCM in 20 ms frames only")
        if params.channels not in (1, 2):
            return self._refused(Error.ERR_INVALID_PARAMETER, f"audio channels {params.channels}")
        self.fake_audio_params = copy.deepcopy(params)
        channels, bitrate = params.channels, params.bitrate_bps

        def create() -> None:
            try:
                link.start_audio(channels, bitrate)
            except RoomError as e:
                self._callback("OnError", _error(e.code))
                return
            self._audio_open = True
            self._callback("OnLocalAudioChannelCreated")

        self._jobs.put(create)
        return Error.ERR_OK

    def SendAudioFrame(self, frame: AudioFrame) -> int:
        _check_arg(frame, AudioFrame, "TRTCCloud.SendAudioFrame(frame)")
        link = self._in_room()
        if isinstance(link, int):
            return link
        if not self._audio_open:
            return self._refused(Error.ERR_INVALID_OPERATION, "SendAudioFrame before OnLocalAudioChannelCreated")
        if frame.codec != AudioCodecType.AUDIO_CODEC_TYPE_PCM:
            return self._refused(Error.ERR_NOT_SUPPORTED, "the fake SDK sends PCM audio only")
        return self._send(lambda: link.send_audio(
            RoomAudioFrame(frame.data, frame.pts, frame.sample_rate, frame.channels)))

    def CreateLocalVideoChannel(self, stream_type: StreamType) -> int:
        _enum(StreamType)(stream_type, "TRTCCloud.CreateLocalVideoChannel(type)")
        link = self._in_room()
        if isinstance(link, int):
            return link
        if stream_type != _HIGH:
            return self._refused(Error.ERR_NOT_SUPPORTED, "the fake SDK publishes the HIGH video stream only")

        def create() -> None:
            try:
                link.start_video(None)
            except RoomError as e:
                self._callback("OnError", _error(e.code))
                return
            self._video_open = True
            self._callback("OnLocalVideoChannelCreated", stream_type)

        self._jobs.put(create)
        return Error.ERR_OK

    def SetVideoEncodeParam(self, stream_type: StreamType, param: VideoEncodeParams) -> None:
        _enum(StreamType)(stream_type, "TRTCCloud.SetVideoEncodeParam(type)")
        _check_arg(param, VideoEncodeParams, "TRTCCloud.SetVideoEncodeParam(param)")
        self.fake_video_encode_params = copy.deepcopy(param)
        link = self._link
        if link is not None and not self._dead:
            link.set_video_encode(VideoEncodeConfig(param.frame_rate, param.bitrate_bps, param.gop_in_seconds))

    def SendPixelFrame(self, stream_type: StreamType, frame: PixelFrame) -> int:
        _enum(StreamType)(stream_type, "TRTCCloud.SendPixelFrame(type)")
        _check_arg(frame, PixelFrame, "TRTCCloud.SendPixelFrame(frame)")
        link = self._video_link(pixels=True)
        if isinstance(link, int):
            return link
        if frame.format != VideoPixelFormat.VIDEO_PIXEL_FORMAT_YUV420p:
            return self._refused(Error.ERR_NOT_SUPPORTED, "the fake SDK takes YUV420p pictures only")
        return self._send(lambda: link.send_video(RoomPixelFrame(frame.data, frame.width, frame.height, frame.pts)))

    def SendVideoFrame(self, stream_type: StreamType, frame: VideoFrame) -> int:
        _enum(StreamType)(stream_type, "TRTCCloud.SendVideoFrame(type)")
        _check_arg(frame, VideoFrame, "TRTCCloud.SendVideoFrame(frame)")
        link = self._video_link(pixels=False)
        if isinstance(link, int):
            return link
        if frame.codec != VideoCodecType.VIDEO_CODEC_TYPE_H264:
            return self._refused(Error.ERR_NOT_SUPPORTED, "the fake SDK sends H.264 only")
        return self._send(lambda: link.send_video(
            H264Frame(frame.data, frame.pts, bool(frame.is_key_frame), frame.dts)))

    # --- fake-only controls -------------------------------------------------------------------

    def fake_deliver(self, callback: str, *args: Any, timeout: float = 5.0) -> None:
        """Call a delegate callback on this cloud's SDK thread (as the SDK would) and wait for it."""
        done = threading.Event()

        def job() -> None:
            try:
                self._callback(callback, *args)
            finally:
                done.set()

        self._jobs.put(job)
        if not done.wait(timeout):
            raise TimeoutError(f"the fake SDK thread did not run {callback} within {timeout} s")

    def fake_destroy(self) -> None:
        """DestroyTRTCCloud: leave the room if still in it and stop the SDK thread."""
        if self._destroyed.is_set():
            return
        self._destroyed.set()
        link = self._link
        if link is not None and link.closed is None:
            link.exit()
        self._jobs.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(5)

    @property
    def fake_alive(self) -> bool:
        """True while the SDK thread runs (until destroyed, or killed by a raising callback)."""
        return self._thread.is_alive() and not self._dead

    # --- inside ------------------------------------------------------------------------------

    def _refused(self, code: Error, why: str) -> int:
        self.fake_refusals.append(f"{code.name}: {why}")
        return code

    def _in_room(self) -> LocalRoom | int:
        if self._dead:
            return Error.ERR_FAILED
        link = self._link
        if self._state != "in_room" or link is None:
            return self._refused(Error.ERR_INVALID_OPERATION, f"not in the room ({self._state})")
        return link

    def _video_link(self, pixels: bool) -> LocalRoom | int:
        link = self._in_room()
        if isinstance(link, int):
            return link
        if not self._video_open:
            return self._refused(Error.ERR_INVALID_OPERATION, "video sent before OnLocalVideoChannelCreated")
        if self._pixel_input != pixels:
            return self._refused(Error.ERR_INVALID_OPERATION,
                                 f"use_pixel_frame_input is {self._pixel_input}: wrong Send*Frame")
        return link

    def _send(self, send: Callable[[], None]) -> int:
        try:
            send()
        except RoomError as e:
            return self._refused(_error(e.code), e.message)
        return Error.ERR_OK

    def _entry(self, params: EnterRoomParams) -> EnterParams | int:
        """What EnterRoomParams ask of the room server, or the code EnterRoom returns at once."""
        room = params.room
        obtain = params.audio_obtain_params
        if not room.user_id.GetValue():
            return self._refused(Error.ERR_INVALID_PARAMETER, "EnterRoomParams.room.user_id is empty")
        try:
            ref = RoomRef(room.room_id) if room.room_id else RoomRef(room.str_room_id.GetValue())
        except ValueError as e:
            return self._refused(Error.ERR_INVALID_PARAMETER, f"no usable room_id or str_room_id: {e}")
        if obtain.audio_obtain_method != AudioObtainMethod.AUDIO_OBTAIN_METHOD_CALLBACK \
                or obtain.enable_remote_audio_mix or obtain.output_sample_rate != 48000 \
                or obtain.output_frame_length_ms != 20 \
                or obtain.output_audio_codec_type != AudioCodecType.AUDIO_CODEC_TYPE_PCM \
                or obtain.output_channels not in (1, 2):
            return self._refused(Error.ERR_NOT_SUPPORTED,
                                 "the fake SDK delivers unmixed 48 kHz PCM per user in 20 ms frames by callback only")
        return EnterParams(
            sdk_app_id=room.sdk_app_id, room=ref, user_id=room.user_id.GetValue(),
            user_sig=room.user_sig.GetValue(),
            role=Role.ANCHOR if params.role == TRTCRole.TRTC_ROLE_ANCHOR else Role.AUDIENCE,
            timeout=self._fake_sdk.fake_enter_timeout,
            video_input=VideoFormat.YUV420P if params.use_pixel_frame_input else VideoFormat.H264,
            video_output=VideoFormat.YUV420P if params.use_pixel_frame_output else VideoFormat.H264,
            audio_output_channels=obtain.output_channels,
        )

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self._dead:
                continue
            try:
                job()
            except Exception:  # a bug in the fake itself: keep it visible, keep the thread alive
                text = traceback.format_exc()
                self.fake_internal_errors.append(text)
                print(f"liteav fake: internal error on the SDK thread:\n{text}", file=sys.__stderr__)

    def _callback(self, name: str, *args: Any) -> None:
        if self._dead or self._destroyed.is_set():
            return
        try:
            getattr(self._delegate, name)(*args)
        except BaseException as e:  # noqa: BLE001 - exactly what the real SDK cannot survive
            self._dead = True
            self._fake_sdk.fake_delegate_raised(self, name, e)

    def _do_enter(self, entry: EnterParams) -> None:
        if self._fake_sdk.fake_never_answer_enter:
            return  # a server that never answers: neither OnEnterRoom nor OnError
        with self._lock:
            if self._state != "entering":
                return  # ExitRoom came first; _do_exit reports it
        link = LocalRoom(*self._fake_sdk.fake_address)
        self._callback("OnConnectionStateChanged", ConnectionState.CONNECTION_STATE_DISCONNECTED,
                       ConnectionState.CONNECTION_STATE_CONNECTING)
        try:
            link.enter(entry)
        except RoomError as e:
            with self._lock:
                if self._state == "entering":
                    self._state = "idle"
            self._callback("OnConnectionStateChanged", ConnectionState.CONNECTION_STATE_CONNECTING,
                           ConnectionState.CONNECTION_STATE_DISCONNECTED)
            self._callback("OnError", _error(e.code))
            return
        self._link = link
        with self._lock:
            if self._state == "entering":
                self._state = "in_room"
        self._callback("OnConnectionStateChanged", ConnectionState.CONNECTION_STATE_CONNECTING,
                       ConnectionState.CONNECTION_STATE_CONNECTED)
        self._callback("OnEnterRoom")
        threading.Thread(target=self._pump, args=(link,), name=f"{self._thread.name}-net", daemon=True).start()

    def _do_exit(self) -> None:
        link = self._link
        if link is not None:
            link.exit()  # its RoomClosed(EXITED) comes through the pump as OnExitRoom
            return
        with self._lock:
            self._state = "out"
        self._callback("OnExitRoom")

    def _pump(self, link: Room) -> None:
        """The network side: what the room server says becomes callbacks on the SDK thread."""
        while not self._destroyed.is_set():
            event = link.poll(0.2)
            if event is None:
                continue
            self._jobs.put(lambda event=event: self._relay(event))
            if isinstance(event, RoomClosed):
                return

    def _relay(self, event: Any) -> None:
        if isinstance(event, RemoteAudio):
            frame = AudioFrame()
            frame.SetData(event.frame.data)
            frame.pts = event.frame.pts_ms
            frame.sample_rate = event.frame.sample_rate
            frame.channels = event.frame.channels
            self._callback("OnRemoteAudioReceived", event.user_id, frame)
            frame._fake_reuse()
        elif isinstance(event, RemoteVideo) and isinstance(event.frame, H264Frame):
            unit = VideoFrame()
            unit.SetData(event.frame.data)
            unit.pts = event.frame.pts_ms
            unit.dts = event.frame.pts_ms if event.frame.dts_ms is None else event.frame.dts_ms
            unit.is_key_frame = event.frame.key
            self._callback("OnRemoteVideoFrameReceived", event.user_id, _HIGH, unit)
            unit._fake_reuse()
        elif isinstance(event, RemoteVideo):
            picture = PixelFrame()
            picture.SetData(event.frame.data)
            picture.width, picture.height = event.frame.width, event.frame.height
            picture.pts = event.frame.pts_ms
            self._callback("OnRemotePixelFrameReceived", event.user_id, _HIGH, picture)
            picture._fake_reuse()
        elif isinstance(event, UserEntered):
            info = UserInfo()
            info.user_id = TrtcString(event.user_id)
            self._callback("OnRemoteUserEnterRoom", info)
        elif isinstance(event, UserLeft):
            info = UserInfo()
            info.user_id = TrtcString(event.user_id)
            self._callback("OnRemoteUserExitRoom", info, event.reason)
        elif isinstance(event, AudioAvailable):
            self._callback("OnRemoteAudioAvailable", event.user_id, event.available)
        elif isinstance(event, VideoAvailable):
            self._callback("OnRemoteVideoAvailable", event.user_id, event.available, _HIGH)
        elif isinstance(event, KeyFrameRequested):
            self._callback("OnRequestKeyFrame", _HIGH)
        elif isinstance(event, BitrateRequested):
            self._callback("OnRequestChangeVideoEncodeBitrate", _HIGH, event.bitrate_bps)
        elif isinstance(event, RoomClosed):
            self._relay_closed(event)

    def _relay_closed(self, event: RoomClosed) -> None:
        with self._lock:
            self._state = "out"
        self._audio_open = self._video_open = False
        # The server SDK has no kick or dismiss callback: a removal is OnError(-205), and either
        # way the SDK then reports that it is out of the room with OnExitRoom.
        if event.reason in (CloseReason.REMOVED, CloseReason.REPLACED):
            self._callback("OnError", Error.ERR_BANNED_BY_SERVER)
        elif event.reason is CloseReason.ERROR:
            self._callback("OnError", _error(event.code or Error.ERR_FAILED))
        self._callback("OnConnectionStateChanged", ConnectionState.CONNECTION_STATE_CONNECTED,
                       ConnectionState.CONNECTION_STATE_DISCONNECTED)
        self._callback("OnExitRoom")


# --- the module ---------------------------------------------------------------------------------

# Everything the fake shares with the real `liteav` (checked name by name against it in tests).
API_CLASSES: tuple[type, ...] = (
    TrtcString, RoomParams, AudioObtainParams, EnterRoomParams, AudioEncodeParams, VideoEncodeParams, UserInfo,
    AudioFrame, VideoFrame, PixelFrame, TRTCCloudDelegate, TRTCCloud,
)


class FakeLiteav(types.ModuleType):
    """A module object that stands in for `liteav`, bound to one emulator room server."""

    def __init__(self, host: str, port: int):
        super().__init__("liteav", "Fake liteav SDK over the emulator's room server (tests only).")
        for kind in ENUMS:
            setattr(self, kind.__name__, kind)
            for member in kind:
                setattr(self, member.name, member)
        for kind in API_CLASSES:
            setattr(self, kind.__name__, kind)
        # TRTCCloud bound to this SDK's room server.
        self.TRTCCloud = type("TRTCCloud", (TRTCCloud,), {"_fake_sdk": self, "__module__": __name__})
        self.fake_address = (host, int(port))
        self.fake_never_answer_enter = False
        self.fake_enter_timeout = 10.0  # the SDK's own limit for reaching the room server
        # "abort": a raising callback interrupts the main thread (pytest stops); "record": only recorded.
        self.fake_on_delegate_error = "abort"
        self.fake_delegate_errors: list[DelegateError] = []
        self.fake_clouds: list[TRTCCloud] = []

    def CreateTRTCCloud(self, delegate: TRTCCloudDelegate) -> TRTCCloud:
        return self.TRTCCloud(delegate)

    def DestroyTRTCCloud(self, cloud: TRTCCloud) -> None:
        _check_arg(cloud, TRTCCloud, "DestroyTRTCCloud(cloud)")
        cloud.fake_destroy()

    def fake_delegate_raised(self, cloud: TRTCCloud, callback: str, error: BaseException) -> None:
        text = "".join(traceback.format_exception(error))
        self.fake_delegate_errors.append(DelegateError(callback, error, text))
        if self.fake_on_delegate_error == "abort":
            print(f"\nliteav fake: delegate callback {callback} raised; the real SDK would have terminated "
                  f"the process here. Stopping the test run.\n{text}", file=sys.__stderr__, flush=True)
            _thread.interrupt_main()


def make_sdk(host: str, port: int) -> FakeLiteav:
    """A fresh fake `liteav` whose clouds live on the room server at host:port."""
    return FakeLiteav(host, port)


def make_trtc_room(host: str, port: int) -> Room:
    """A TRTCRoom (the `trtc` backend) over the fake SDK, on the emulator's room server at host:port."""
    from shared.room.trtc import TRTCRoom

    return TRTCRoom(sdk=make_sdk(host, port))
