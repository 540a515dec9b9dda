"""The liteav fake: the real `liteav` module with only what would reach Tencent's servers replaced.

`make_sdk(host, port)` gives a module object that *is* liteav (TRTCCloudDelegate, EnterRoomParams,
AudioFrame, VideoFrame, PixelFrame, UserInfo, TrtcString, the enums, SetLogPath, ...) except for
`CreateTRTCCloud`, `TRTCCloud` and `DestroyTRTCCloud`: its clouds are members of the emulator's room
server at host:port (a `LocalRoom` each). So the `trtc` adapter is tested on the SDK's own types and
type checks, and the fake keeps what matters about the SDK's behaviour:

- callbacks are made as the SDK makes them, through the real base class
  (`liteav.TRTCCloudDelegate.OnX(delegate, ...)`): pybind11 converts the arguments, calls the Python
  override, and raises "Tried to call pure virtual function" for one the delegate lacks;
- callbacks come from three threads, room events from one, audio frames from another, video frames
  from a third, so no order between kinds holds (none is promised by the SDK);
- EnterRoom, ExitRoom and the channel calls return at once and are answered by a callback;
  ExitRoom fires OnLocalAudioChannelDestroyed / OnLocalVideoChannelDestroyed, then OnExitRoom;
- frames handed to a callback are overwritten once it returns (as the SDK's buffers are);
- the SDK subscribes to every remote stream; Unsubscribe(user_id, type) keeps that stream from the
  delegate until the user enters again; per-user PCM (OnRemoteAudioReceived) comes only in
  TRTC_SCENE_RECORD, as the server SDK's headers document;
- DestroyTRTCCloud does nothing, as in liteav: a cloud ends when its last reference goes (it then
  leaves the room and stops its threads), so a test can see that the adapter lets go of it;
- a delegate callback that raises is fatal with the real SDK (its thread cannot take a Python
  exception): the fake records it, stops the cloud and interrupts the main thread.

Importing this module also guards the real module (`guard_real_sdk`): from then on every way to a
real TRTCCloud raises `RealCloudRefused`. tests/conftest.py imports it before any test runs.
Controls and records that the real SDK does not have are named `fake_*`.

    sdk = make_sdk(host, port)           # a module object standing in for `liteav`
    room = TRTCRoom(sdk=sdk)             # or make_trtc_room(host, port)
"""
from __future__ import annotations

import _thread
import collections
import itertools
import queue
import sys
import threading
import traceback
import types
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import liteav  # the real SDK module (a pinned requirement on Linux); callers skip when it is missing

from shared.room.base import (
    AudioAvailable,
    AudioFrame as RoomAudioFrame,
    BitrateRequested,
    CloseReason,
    EnterParams,
    H264Frame,
    KeyFrameRequested,
    PixelFrame as RoomPixelFrame,
    RemoteAudio,
    RemoteVideo,
    Role,
    RoomClosed,
    RoomError,
    RoomRef,
    UserEntered,
    UserLeft,
    VideoAvailable,
    VideoEncodeConfig,
    VideoFormat,
)
from shared.room.local import LocalRoom

_BASE = liteav.TRTCCloudDelegate
_NATIVE = sys.modules[_BASE.__module__]  # liteav._liteav, where the native TRTCCloud lives
# What a real cloud would do over the network; the fake replaces exactly these.
NETWORK_NAMES = ("CreateTRTCCloud", "TRTCCloud", "DestroyTRTCCloud")
# Process-wide SDK settings: passed to the real module and recorded in `fake_sdk_calls`.
RECORDED_NAMES = ("SetLogPath", "SetLogLevel", "EnableConsoleLog", "DisableConsoleLog", "DisableLogFile")


# --- the guard -------------------------------------------------------------------------------------


class RealCloudRefused(RuntimeError):
    """Something in a test reached the real liteav TRTCCloud, which would contact Tencent's servers."""


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise RealCloudRefused("the real liteav TRTCCloud would contact Tencent's servers; tests use "
                           "tests.fakes.liteav_fake.make_sdk(host, port)")


def _refuse_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _refuse()


def guard_real_sdk() -> None:
    """Every way to a real TRTCCloud raises from now on: the module's factory functions, the
    native class (whatever name it is reached by: liteav.TRTCCloud, TRTCCloud.Create,
    liteav._liteav.TRTCCloud) and its constructor."""
    _NATIVE.TRTCCloud.__init__ = _refuse_init
    _NATIVE.TRTCCloud.Create = staticmethod(_refuse)
    liteav.CreateTRTCCloud = _refuse
    liteav.DestroyTRTCCloud = _refuse


def real_sdk_guarded() -> bool:
    """True when guard_real_sdk() is in force (checked without calling anything real)."""
    return (_NATIVE.TRTCCloud.__dict__.get("__init__") is _refuse_init and liteav.CreateTRTCCloud is _refuse
            and getattr(liteav.TRTCCloud.Create, "__func__", liteav.TRTCCloud.Create) is _refuse)


guard_real_sdk()


# --- argument checks (what pybind11 does to a call into the real TRTCCloud) -----------------------


def _check(value: Any, kind: type | tuple[type, ...], where: str) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " | ".join(k.__name__ for k in kind)
        raise TypeError(f"{where}(): incompatible function arguments; got {value!r} "
                        f"({type(value).__name__}), expected {names}")


def _error(code: int) -> Any:
    """liteav.Error for `code` (pybind11 enums take any int and name the unknown ones `???`)."""
    return liteav.Error(int(code))


_OK = int(liteav.ERR_OK)
_HIGH = liteav.STREAM_TYPE_VIDEO_HIGH
_AUDIO = liteav.STREAM_TYPE_AUDIO
_MEDIA_THREAD = {"OnRemoteAudioReceived": "audio", "OnRemoteMixedAudioReceived": "audio",
                 "OnRemoteVideoFrameReceived": "video", "OnRemotePixelFrameReceived": "video"}
_cloud_ids = itertools.count(1)


@dataclass(frozen=True)
class DelegateError:
    """A delegate callback raised: with the real SDK, the process would have died here."""

    callback: str
    error: BaseException
    traceback: str


# --- the cloud -------------------------------------------------------------------------------------


class TRTCCloud:
    """What CreateTRTCCloud returns: the real TRTCCloud's methods, over a `FakeCloud` that does the
    work. Nothing but the caller holds it; once the last reference goes, the cloud leaves the room
    and stops (as the native one is destroyed with its Python object)."""

    _fake_sdk: "FakeLiteav"  # set on the per-SDK subclass that FakeLiteav builds

    def __init__(self, delegate: Any) -> None:
        _check(delegate, _BASE, "TRTCCloud.__init__")
        self._fake = FakeCloud(self._fake_sdk, delegate)
        weakref.finalize(self, self._fake.destroy)

    @property
    def fake(self) -> "FakeCloud":
        return self._fake

    def EnterRoom(self, params: Any) -> int:
        _check(params, liteav.EnterRoomParams, "EnterRoom")
        return self._fake.enter(params)

    def ExitRoom(self) -> int:
        return self._fake.exit()

    def Subscribe(self, user_id: str, type: Any) -> int:
        _check(user_id, str, "Subscribe")
        _check(type, liteav.StreamType, "Subscribe")
        return self._fake.subscribe(user_id, type, True)

    def Unsubscribe(self, user_id: str, type: Any) -> int:
        _check(user_id, str, "Unsubscribe")
        _check(type, liteav.StreamType, "Unsubscribe")
        return self._fake.subscribe(user_id, type, False)

    def CreateLocalAudioChannel(self, params: Any) -> int:
        _check(params, liteav.AudioEncodeParams, "CreateLocalAudioChannel")
        return self._fake.create_audio(params)

    def DestroyLocalAudioChannel(self) -> int:
        return self._fake.destroy_audio()

    def SendAudioFrame(self, frame: Any) -> int:
        _check(frame, liteav.AudioFrame, "SendAudioFrame")
        return self._fake.send_audio(frame)

    def CreateLocalVideoChannel(self, type: Any) -> int:
        _check(type, liteav.StreamType, "CreateLocalVideoChannel")
        return self._fake.create_video(type)

    def DestroyLocalVideoChannel(self, type: Any) -> int:
        _check(type, liteav.StreamType, "DestroyLocalVideoChannel")
        return self._fake.destroy_video(type)

    def SetVideoEncodeParam(self, type: Any, param: Any) -> None:
        _check(type, liteav.StreamType, "SetVideoEncodeParam")
        _check(param, liteav.VideoEncodeParams, "SetVideoEncodeParam")
        self._fake.set_video_encode(param)

    def SendPixelFrame(self, type: Any, frame: Any) -> int:
        _check(type, liteav.StreamType, "SendPixelFrame")
        _check(frame, liteav.PixelFrame, "SendPixelFrame")
        return self._fake.send_pixels(frame)

    def SendVideoFrame(self, type: Any, frame: Any) -> int:
        _check(type, liteav.StreamType, "SendVideoFrame")
        _check(frame, liteav.VideoFrame, "SendVideoFrame")
        return self._fake.send_h264(frame)

    # Real methods the adapter does not use; the fake refuses them loudly rather than pretend.
    def GetAudioFrame(self, frame: Any) -> int:
        raise NotImplementedError("the liteav fake has no GetAudioFrame")

    def SendContinuousAudioFrame(self, frame: Any, clear_send_queue: bool) -> int:
        raise NotImplementedError("the liteav fake has no SendContinuousAudioFrame")

    def SendSeiMessage(self, message_type: int, message: bytes) -> int:
        raise NotImplementedError("the liteav fake has no SendSeiMessage")

    def SendCustomCmdMsg(self, cmd_id: int, message: bytes, reliable: bool, ordered: bool) -> int:
        raise NotImplementedError("the liteav fake has no SendCustomCmdMsg")

    def EnableVoiceActivityDetection(self, params: Any) -> None:
        raise NotImplementedError("the liteav fake has no EnableVoiceActivityDetection")


class FakeCloud:
    """The working part of one fake cloud: its SDK threads, its room link, and what tests inspect."""

    def __init__(self, sdk: "FakeLiteav", delegate: Any) -> None:
        self._sdk = sdk
        self._delegate = delegate  # strongly, as liteav's TRTCCloud holds it
        self._lock = threading.Lock()
        self._state = "idle"  # idle -> entering -> in_room -> exiting -> out
        self._link: LocalRoom | None = None
        self._pixel_input = False
        self._scene: Any = None
        self._audio_open = False
        self._video_open = False
        self._unsubscribed: set[tuple[str, int]] = set()
        self._dead = False  # a callback raised: the real process would be gone
        self._destroyed = threading.Event()
        n = next(_cloud_ids)
        self.name = f"liteav-fake-{n}"
        self._queues: dict[str, queue.SimpleQueue[Callable[[], None] | None]] = {
            kind: queue.SimpleQueue() for kind in ("signal", "audio", "video")}
        self._threads = [threading.Thread(target=self._run, args=(q,), name=f"{self.name}-{kind}", daemon=True)
                         for kind, q in self._queues.items()]
        # What the cloud was asked and did, for tests.
        self.fake_entered_with: EnterParams | None = None
        self.fake_scene: Any = None
        self.fake_audio_params: types.SimpleNamespace | None = None
        self.fake_video_encode_params: types.SimpleNamespace | None = None
        self.fake_refusals: list[str] = []
        self.fake_internal_errors: list[str] = []
        self.fake_frames_delivered: collections.Counter[str] = collections.Counter()
        self.fake_callback_threads: dict[str, set[str]] = collections.defaultdict(set)
        for t in self._threads:
            t.start()
        sdk.fake_clouds.append(self)

    # --- what tests look at and do ----------------------------------------------------------------

    @property
    def fake_alive(self) -> bool:
        """True until the cloud is destroyed (its last reference gone), or killed by a raising callback."""
        return not self._dead and not self._destroyed.is_set()

    @property
    def fake_destroyed(self) -> bool:
        return self._destroyed.is_set()

    @property
    def fake_unsubscribed(self) -> set[tuple[str, int]]:
        with self._lock:
            return set(self._unsubscribed)

    def fake_deliver(self, callback: str, *args: Any, thread: str | None = None, timeout: float = 5.0) -> None:
        """Call a delegate callback on one of this cloud's SDK threads, as the SDK would, and wait.

        `thread` is "signal", "audio" or "video"; by default media callbacks go on their media
        thread and everything else on the signal thread."""
        done = threading.Event()

        def job() -> None:
            try:
                self._call(callback, *args)
            finally:
                done.set()

        self._queues[thread or _MEDIA_THREAD.get(callback, "signal")].put(job)
        if not done.wait(timeout):
            raise TimeoutError(f"the fake SDK thread did not run {callback} within {timeout} s")

    # --- the API (called through TRTCCloud) --------------------------------------------------------

    def enter(self, params: Any) -> int:
        if self._dead:
            return int(liteav.ERR_FAILED)
        entry = self._entry(params)
        if isinstance(entry, int):
            return entry
        with self._lock:
            if self._state != "idle":
                return self._refused(liteav.ERR_INVALID_OPERATION, f"EnterRoom while {self._state}")
            self._state = "entering"
            self._pixel_input = bool(params.use_pixel_frame_input)
            self._scene = params.scene
        self.fake_entered_with = entry
        self.fake_scene = params.scene
        self._post("signal", lambda: self._do_enter(entry))
        return _OK

    def exit(self) -> int:
        if self._dead:
            return int(liteav.ERR_FAILED)
        with self._lock:
            if self._state not in ("entering", "in_room"):
                return self._refused(liteav.ERR_INVALID_OPERATION, f"ExitRoom while {self._state}")
            self._state = "exiting"
        self._post("signal", self._do_exit)
        return _OK

    def subscribe(self, user_id: str, stream_type: Any, on: bool) -> int:
        link = self._in_room()
        if isinstance(link, int):
            return link
        with self._lock:
            (self._unsubscribed.discard if on else self._unsubscribed.add)((user_id, int(stream_type)))
        return _OK

    def create_audio(self, params: Any) -> int:
        link = self._in_room()
        if isinstance(link, int):
            return link
        if not params.need_encode or params.sample_rate != 48000 or params.frame_length_ms != 20:
            return self._refused(liteav.ERR_NOT_SUPPORTED, "the fake SDK takes 48 kHz PCM in 20 ms frames only")
        if params.channels not in (1, 2):
            return self._refused(liteav.ERR_INVALID_PARAMETER, f"audio channels {params.channels}")
        self.fake_audio_params = types.SimpleNamespace(
            channels=params.channels, sample_rate=params.sample_rate, frame_length_ms=params.frame_length_ms,
            bitrate_bps=params.bitrate_bps, need_encode=params.need_encode)
        channels, bitrate = params.channels, params.bitrate_bps

        def create() -> None:
            try:
                link.start_audio(channels, bitrate)
            except RoomError as e:
                self._call("OnError", _error(e.code))
                return
            self._audio_open = True
            self._call("OnLocalAudioChannelCreated")

        self._post("signal", create)
        return _OK

    def destroy_audio(self) -> int:
        if not self._audio_open:
            return self._refused(liteav.ERR_INVALID_OPERATION, "no local audio channel")
        self._audio_open = False
        self._post("signal", lambda: self._call("OnLocalAudioChannelDestroyed"))
        return _OK

    def send_audio(self, frame: Any) -> int:
        link = self._in_room()
        if isinstance(link, int):
            return link
        if not self._audio_open:
            return self._refused(liteav.ERR_INVALID_OPERATION, "SendAudioFrame before OnLocalAudioChannelCreated")
        if frame.codec != liteav.AUDIO_CODEC_TYPE_PCM:
            return self._refused(liteav.ERR_NOT_SUPPORTED, "the fake SDK sends PCM audio only")
        return self._send(lambda: link.send_audio(
            RoomAudioFrame(frame.data, frame.pts, frame.sample_rate, frame.channels)))

    def create_video(self, stream_type: Any) -> int:
        link = self._in_room()
        if isinstance(link, int):
            return link
        if stream_type != _HIGH:
            return self._refused(liteav.ERR_NOT_SUPPORTED, "the fake SDK publishes the HIGH video stream only")

        def create() -> None:
            try:
                link.start_video(None)
            except RoomError as e:
                self._call("OnError", _error(e.code))
                return
            self._video_open = True
            self._call("OnLocalVideoChannelCreated", stream_type)

        self._post("signal", create)
        return _OK

    def destroy_video(self, stream_type: Any) -> int:
        if stream_type != _HIGH or not self._video_open:
            return self._refused(liteav.ERR_INVALID_OPERATION, "no such local video channel")
        self._video_open = False
        self._post("signal", lambda: self._call("OnLocalVideoChannelDestroyed", stream_type))
        return _OK

    def set_video_encode(self, param: Any) -> None:
        self.fake_video_encode_params = types.SimpleNamespace(
            frame_rate=param.frame_rate, bitrate_bps=param.bitrate_bps, gop_in_seconds=param.gop_in_seconds)
        link = self._link
        if link is not None and not self._dead:
            link.set_video_encode(VideoEncodeConfig(param.frame_rate, param.bitrate_bps, param.gop_in_seconds))

    def send_pixels(self, frame: Any) -> int:
        link = self._video_link(pixels=True)
        if isinstance(link, int):
            return link
        if frame.format != liteav.VIDEO_PIXEL_FORMAT_YUV420p:
            return self._refused(liteav.ERR_NOT_SUPPORTED, "the fake SDK takes YUV420p pictures only")
        return self._send(lambda: link.send_video(RoomPixelFrame(frame.data, frame.width, frame.height, frame.pts)))

    def send_h264(self, frame: Any) -> int:
        link = self._video_link(pixels=False)
        if isinstance(link, int):
            return link
        if frame.codec != liteav.VIDEO_CODEC_TYPE_H264:
            return self._refused(liteav.ERR_NOT_SUPPORTED, "the fake SDK sends H.264 only")
        return self._send(lambda: link.send_video(
            H264Frame(frame.data, frame.pts, bool(frame.is_key_frame), frame.dts)))

    def destroy(self) -> None:
        """The native cloud's destructor: runs when the last TRTCCloud reference goes."""
        if self._destroyed.is_set():
            return
        if threading.current_thread() in self._threads:
            # The real destructor would wait for the very thread it runs on.
            self._sdk.fake_misuse.append(f"{self.name} was destroyed on its own SDK thread "
                                         f"{threading.current_thread().name}")
        self._destroyed.set()
        link = self._link
        if link is not None and link.closed is None:
            try:
                link.exit()
            except Exception as e:  # noqa: BLE001 - a destructor does not raise
                self.fake_internal_errors.append(f"leaving the room on destroy: {e}")
        for q in self._queues.values():
            q.put(None)

    # --- inside ----------------------------------------------------------------------------------------

    def _post(self, kind: str, job: Callable[[], None]) -> None:
        self._queues[kind].put(job)

    def _refused(self, code: Any, why: str) -> int:
        self.fake_refusals.append(f"{code.name}: {why}")
        return int(code)

    def _in_room(self) -> LocalRoom | int:
        if self._dead:
            return int(liteav.ERR_FAILED)
        link = self._link
        if self._state != "in_room" or link is None:
            return self._refused(liteav.ERR_INVALID_OPERATION, f"not in the room ({self._state})")
        return link

    def _video_link(self, pixels: bool) -> LocalRoom | int:
        link = self._in_room()
        if isinstance(link, int):
            return link
        if not self._video_open:
            return self._refused(liteav.ERR_INVALID_OPERATION, "video sent before OnLocalVideoChannelCreated")
        if self._pixel_input != pixels:
            return self._refused(liteav.ERR_INVALID_OPERATION,
                                 f"use_pixel_frame_input is {self._pixel_input}: wrong Send*Frame")
        return link

    def _send(self, send: Callable[[], None]) -> int:
        try:
            send()
        except RoomError as e:
            return self._refused(_error(e.code), e.message)
        return _OK

    def _entry(self, params: Any) -> EnterParams | int:
        """What EnterRoomParams ask of the room server, or the code EnterRoom returns at once."""
        room = params.room
        obtain = params.audio_obtain_params
        if not room.user_id.GetValue():
            return self._refused(liteav.ERR_INVALID_PARAMETER, "EnterRoomParams.room.user_id is empty")
        try:
            ref = RoomRef(room.room_id) if room.room_id else RoomRef(room.str_room_id.GetValue())
        except ValueError as e:
            return self._refused(liteav.ERR_INVALID_PARAMETER, f"no usable room_id or str_room_id: {e}")
        if obtain.audio_obtain_method != liteav.AUDIO_OBTAIN_METHOD_CALLBACK \
                or obtain.enable_remote_audio_mix or obtain.output_sample_rate != 48000 \
                or obtain.output_frame_length_ms != 20 \
                or obtain.output_audio_codec_type != liteav.AUDIO_CODEC_TYPE_PCM \
                or obtain.output_channels not in (1, 2):
            return self._refused(liteav.ERR_NOT_SUPPORTED,
                                 "the fake SDK delivers unmixed 48 kHz PCM per user in 20 ms frames by callback only")
        return EnterParams(
            sdk_app_id=room.sdk_app_id, room=ref, user_id=room.user_id.GetValue(),
            user_sig=room.user_sig.GetValue(),
            role=Role.ANCHOR if params.role == liteav.TRTC_ROLE_ANCHOR else Role.AUDIENCE,
            timeout=self._sdk.fake_enter_timeout,
            video_input=VideoFormat.YUV420P if params.use_pixel_frame_input else VideoFormat.H264,
            video_output=VideoFormat.YUV420P if params.use_pixel_frame_output else VideoFormat.H264,
            audio_output_channels=obtain.output_channels,
        )

    def _run(self, jobs: "queue.SimpleQueue[Callable[[], None] | None]") -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            if self._dead:
                continue
            try:
                job()
            except Exception:  # a bug in the fake itself: keep it visible, keep the thread alive
                text = traceback.format_exc()
                self.fake_internal_errors.append(text)
                print(f"liteav fake: internal error on an SDK thread:\n{text}", file=sys.__stderr__)

    def _call(self, name: str, *args: Any) -> None:
        """One callback, the way the SDK makes it: through the real base class's virtual method."""
        if self._dead or self._destroyed.is_set():
            return
        self.fake_callback_threads[name].add(threading.current_thread().name)
        try:
            getattr(_BASE, name)(self._delegate, *args)
        except BaseException as e:  # noqa: BLE001 - exactly what the real SDK cannot survive
            self._dead = True
            self._sdk.fake_delegate_raised(self, name, e)

    def _do_enter(self, entry: EnterParams) -> None:
        if self._sdk.fake_never_answer_enter:
            return  # a server that never answers: neither OnEnterRoom nor OnError
        with self._lock:
            if self._state != "entering":
                return  # ExitRoom came first; _do_exit reports it
        link = LocalRoom(*self._sdk.fake_address)
        self._call("OnConnectionStateChanged", liteav.CONNECTION_STATE_DISCONNECTED,
                   liteav.CONNECTION_STATE_CONNECTING)
        try:
            link.enter(entry)
        except RoomError as e:
            with self._lock:
                if self._state == "entering":
                    self._state = "idle"
            self._call("OnConnectionStateChanged", liteav.CONNECTION_STATE_CONNECTING,
                       liteav.CONNECTION_STATE_DISCONNECTED)
            self._call("OnError", _error(e.code))
            return
        self._link = link
        with self._lock:
            if self._state == "entering":
                self._state = "in_room"
        self._call("OnConnectionStateChanged", liteav.CONNECTION_STATE_CONNECTING,
                   liteav.CONNECTION_STATE_CONNECTED)
        self._call("OnEnterRoom")
        threading.Thread(target=self._pump, args=(link,), name=f"{self.name}-net", daemon=True).start()

    def _do_exit(self) -> None:
        link = self._link
        if link is not None:
            link.exit()  # its RoomClosed(EXITED) comes through the pump
            return
        with self._lock:
            self._state = "out"
        self._call("OnExitRoom")

    def _pump(self, link: LocalRoom) -> None:
        """The network side: what the room server says goes to the SDK thread of its kind."""
        while not self._destroyed.is_set():
            event = link.poll(0.2)
            if event is None:
                continue
            if isinstance(event, RemoteAudio):
                self._post("audio", lambda event=event: self._relay_audio(event))
            elif isinstance(event, RemoteVideo):
                self._post("video", lambda event=event: self._relay_video(event))
            else:
                self._post("signal", lambda event=event: self._relay(event))
            if isinstance(event, RoomClosed):
                return

    def _subscribed(self, user_id: str, stream_type: Any) -> bool:
        with self._lock:
            return (user_id, int(stream_type)) not in self._unsubscribed

    def _relay_audio(self, event: RemoteAudio) -> None:
        if self._scene != liteav.TRTC_SCENE_RECORD:
            if not self.fake_refusals or "per-user PCM" not in self.fake_refusals[-1]:
                self.fake_refusals.append(f"per-user PCM is only delivered in TRTC_SCENE_RECORD, not {self._scene}")
            return
        if not self._subscribed(event.user_id, _AUDIO):
            return
        frame = liteav.AudioFrame()
        frame.SetData(bytes(event.frame.data))
        frame.pts = event.frame.pts_ms
        frame.sample_rate = event.frame.sample_rate
        frame.channels = event.frame.channels
        self.fake_frames_delivered["audio"] += 1
        self._call("OnRemoteAudioReceived", event.user_id, frame)
        _reuse(frame)

    def _relay_video(self, event: RemoteVideo) -> None:
        if not self._subscribed(event.user_id, _HIGH):
            return
        self.fake_frames_delivered["video"] += 1
        if isinstance(event.frame, H264Frame):
            unit = liteav.VideoFrame()
            unit.SetData(bytes(event.frame.data))
            unit.pts = event.frame.pts_ms
            unit.dts = event.frame.pts_ms if event.frame.dts_ms is None else event.frame.dts_ms
            unit.is_key_frame = event.frame.key
            unit.codec = liteav.VIDEO_CODEC_TYPE_H265 if event.frame.codec == "hevc" else liteav.VIDEO_CODEC_TYPE_H264
            self._call("OnRemoteVideoFrameReceived", event.user_id, _HIGH, unit)
            _reuse(unit)
        else:
            picture = liteav.PixelFrame()
            picture.SetData(bytes(event.frame.data))
            picture.width, picture.height = event.frame.width, event.frame.height
            picture.pts = event.frame.pts_ms
            self._call("OnRemotePixelFrameReceived", event.user_id, _HIGH, picture)
            _reuse(picture)

    def _relay(self, event: Any) -> None:
        if isinstance(event, UserEntered):
            with self._lock:  # entering again: the SDK subscribes to everything anew
                self._unsubscribed = {k for k in self._unsubscribed if k[0] != event.user_id}
            self._call("OnRemoteUserEnterRoom", _user_info(event.user_id))
        elif isinstance(event, UserLeft):
            self._call("OnRemoteUserExitRoom", _user_info(event.user_id), event.reason)
        elif isinstance(event, AudioAvailable):
            self._call("OnRemoteAudioAvailable", event.user_id, event.available)
        elif isinstance(event, VideoAvailable):
            self._call("OnRemoteVideoAvailable", event.user_id, event.available, _HIGH)
        elif isinstance(event, KeyFrameRequested):
            self._call("OnRequestKeyFrame", _HIGH)
        elif isinstance(event, BitrateRequested):
            self._call("OnRequestChangeVideoEncodeBitrate", _HIGH, event.bitrate_bps)
        elif isinstance(event, RoomClosed):
            self._relay_closed(event)

    def _relay_closed(self, event: RoomClosed) -> None:
        with self._lock:
            self._state = "out"
        # The server SDK has no kick or dismiss callback: a removal (also by the same userId entering
        # elsewhere) is OnError(-205); either way the SDK then closes its channels and reports that it
        # is out of the room with OnExitRoom, which carries no reason.
        if event.reason in (CloseReason.REMOVED, CloseReason.REPLACED):
            self._call("OnError", liteav.ERR_BANNED_BY_SERVER)
        elif event.reason is CloseReason.ERROR:
            self._call("OnError", _error(event.code or int(liteav.ERR_FAILED)))
        if self._audio_open:
            self._audio_open = False
            self._call("OnLocalAudioChannelDestroyed")
        if self._video_open:
            self._video_open = False
            self._call("OnLocalVideoChannelDestroyed", _HIGH)
        self._call("OnConnectionStateChanged", liteav.CONNECTION_STATE_CONNECTED,
                   liteav.CONNECTION_STATE_DISCONNECTED)
        self._call("OnExitRoom")


def _user_info(user_id: str) -> Any:
    info = liteav.UserInfo()
    info.user_id = liteav.TrtcString(user_id)
    return info


def _reuse(frame: Any) -> None:
    """The SDK refills its frame buffers once a callback returns: what was kept is garbage now."""
    frame.SetData(b"\xde\xad" * (len(frame.data) // 2))
    frame.pts = 0


# --- the module ---------------------------------------------------------------------------------


class FakeLiteav(types.ModuleType):
    """A module object standing in for `liteav`: the real module but for its network part, with
    its clouds on one emulator room server."""

    def __init__(self, host: str, port: int):
        super().__init__("liteav", "The real liteav module, its clouds on the emulator's room server (tests only).")
        for name in dir(liteav):
            if not name.startswith("__") and name not in NETWORK_NAMES:
                setattr(self, name, getattr(liteav, name))
        self.fake_sdk_calls: list[tuple[Any, ...]] = []
        for name in RECORDED_NAMES:
            setattr(self, name, self._recorded(name, getattr(liteav, name)))
        # TRTCCloud bound to this SDK's room server.
        self.TRTCCloud = type("TRTCCloud", (TRTCCloud,), {"_fake_sdk": self, "__module__": __name__})
        self.fake_address = (host, int(port))
        self.fake_never_answer_enter = False
        self.fake_enter_timeout = 10.0  # the SDK's own limit for reaching the room server
        # "abort": a raising callback interrupts the main thread (pytest stops); "record": only recorded.
        self.fake_on_delegate_error = "abort"
        self.fake_delegate_errors: list[DelegateError] = []
        self.fake_misuse: list[str] = []
        self.fake_clouds: list[FakeCloud] = []

    def _recorded(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            self.fake_sdk_calls.append((name, *args))
            return real(*args)

        call.__name__ = name
        return call

    def CreateTRTCCloud(self, delegate: Any) -> TRTCCloud:
        return self.TRTCCloud(delegate)

    def DestroyTRTCCloud(self, cloud: Any) -> None:
        """Nothing, as in liteav: the cloud goes with its last reference."""
        _check(cloud, TRTCCloud, "DestroyTRTCCloud")
        self.fake_sdk_calls.append(("DestroyTRTCCloud",))

    def fake_delegate_raised(self, cloud: FakeCloud, callback: str, error: BaseException) -> None:
        text = "".join(traceback.format_exception(error))
        self.fake_delegate_errors.append(DelegateError(callback, error, text))
        if self.fake_on_delegate_error == "abort":
            print(f"\nliteav fake: delegate callback {callback} raised; the real SDK would have terminated "
                  f"the process here. Stopping the test run.\n{text}", file=sys.__stderr__, flush=True)
            _thread.interrupt_main()


def make_sdk(host: str, port: int) -> FakeLiteav:
    """A fresh fake `liteav` whose clouds live on the room server at host:port."""
    return FakeLiteav(host, port)


def make_trtc_room(host: str, port: int) -> Any:
    """A TRTCRoom (the `trtc` backend) over the fake SDK, on the emulator's room server at host:port."""
    from shared.room.trtc import TRTCRoom

    return TRTCRoom(sdk=make_sdk(host, port))
