"""The `local` room backend: a member of a room on the emulator's room server (emulator/trtc/).

Media crosses the wire encoded, as with TRTC: audio as Opus (we encode 20 ms PCM frames with
libopus, and decode what we receive back to PCM), video as H.264 access units (we encode YUV with
libx264 when given pictures; access units given to us go out as they are). One reader thread per
room turns what the server sends into events; it never raises.
"""
from __future__ import annotations

import dataclasses
import fractions
import logging
import socket
import threading
import time
from typing import Any, cast

import av

from shared.media.frames import CODEC_H264, CODEC_HEVC
from shared.media.pixels import to_av_frame, to_pixel_frame

from . import wire
from .base import (
    AUDIO_FRAME_MS,
    AUDIO_SAMPLE_RATE,
    ERR_ENTER_ROOM_FAILED,
    ERR_FAILED,
    ERR_INVALID_OPERATION,
    ERR_INVALID_PARAMETER,
    ERR_NETWORK_UNREACHABLE,
    ERR_REQUEST_SERVER_TIMEOUT,
    AudioAvailable,
    AudioFrame,
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
    VideoFrame,
    yuv420p_size,
)
from .wire import Message, WireError

log = logging.getLogger("shared.room.local")

_MS = fractions.Fraction(1, 1000)
_LAYOUTS = {1: "mono", 2: "stereo"}
SAMPLES_PER_FRAME = AUDIO_SAMPLE_RATE * AUDIO_FRAME_MS // 1000
# How long a failed send waits for the reader to learn why the server closed the connection.
READER_VERDICT_S = 1.0


class _OpusEncoder:
    def __init__(self, channels: int, bitrate_bps: int):
        self.channels = channels
        self._ctx = av.CodecContext.create("libopus", "w")
        self._ctx.sample_rate = AUDIO_SAMPLE_RATE
        self._ctx.layout = _LAYOUTS[channels]
        self._ctx.format = "s16"
        self._ctx.bit_rate = bitrate_bps or (48000 * channels)
        self._ctx.time_base = fractions.Fraction(1, AUDIO_SAMPLE_RATE)
        self._ctx.open()
        self._next_pts = 0

    def encode(self, frame: AudioFrame) -> list[bytes]:
        # libopus gives one packet per 20 ms frame at once; the packet carries our pts (in the header).
        af = av.AudioFrame(format="s16", layout=_LAYOUTS[self.channels], samples=frame.samples)
        af.planes[0].update(frame.data)
        af.sample_rate = AUDIO_SAMPLE_RATE
        af.pts = self._next_pts
        self._next_pts += frame.samples
        return [bytes(p) for p in self._ctx.encode(af)]


class _OpusDecoder:
    def __init__(self, channels: int):
        self._ctx = av.CodecContext.create("opus", "r")
        self._ctx.sample_rate = AUDIO_SAMPLE_RATE
        self._ctx.layout = _LAYOUTS[channels]
        self._resampler = av.AudioResampler(format="s16", layout=_LAYOUTS[channels], rate=AUDIO_SAMPLE_RATE)
        self._channels = channels

    def decode(self, packet: bytes, pts_ms: int) -> AudioFrame | None:
        pcm = bytearray()
        for frame in self._ctx.decode(av.Packet(packet)):
            for out in self._resampler.resample(frame):
                pcm += bytes(out.planes[0])[:out.samples * 2 * self._channels]
        if not pcm:
            return None
        return AudioFrame(bytes(pcm), pts_ms, AUDIO_SAMPLE_RATE, self._channels)


class _H264Encoder:
    """libx264 (or libx265 for codec "hevc") for real-time: ultrafast, zerolatency (one access unit
    out per picture in), no B-frames, parameter sets on every key frame."""

    def __init__(self, width: int, height: int, config: VideoEncodeConfig, codec: str = CODEC_H264):
        self.width, self.height = width, height
        self.codec = codec
        fps = max(1, int(config.fps or 25))
        ctx = av.CodecContext.create("libx265" if codec == CODEC_HEVC else "libx264", "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = _MS
        ctx.framerate = fractions.Fraction(fps, 1)
        ctx.gop_size = max(1, fps * max(1, int(config.gop_seconds or 2)))
        ctx.max_b_frames = 0
        ctx.bit_rate = config.bitrate_bps or _default_bitrate(width, height)
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "bframes": "0", "repeat-headers": "1"}
        if codec == CODEC_HEVC:
            ctx.options = {"preset": "ultrafast", "tune": "zerolatency",
                           "x265-params": "bframes=0:repeat-headers=1:log-level=none"}
        ctx.open()
        self._ctx = ctx

    def encode(self, frame: PixelFrame, force_key: bool) -> list[H264Frame]:
        vf = to_av_frame(frame)
        vf.pts = frame.pts_ms
        vf.time_base = _MS
        if force_key:
            vf.pict_type = av.video.frame.PictureType.I
        out = []
        for packet in self._ctx.encode(vf):
            pts = int(packet.pts) if packet.pts is not None else frame.pts_ms
            out.append(H264Frame(bytes(packet), pts, bool(packet.is_keyframe),
                                 int(packet.dts) if packet.dts is not None else pts, self.codec))
        return out


def _default_bitrate(width: int, height: int) -> int:
    # Roughly what TRTC picks: ~1.2 Mbit/s at 720p, scaled by area, at least 200 kbit/s.
    return max(200_000, int(1_200_000 * width * height / (1280 * 720)))


class _H264Decoder:
    def __init__(self, codec: str = CODEC_H264) -> None:
        self.codec = codec
        self._ctx = cast(av.VideoCodecContext, av.CodecContext.create(codec, "r"))
        self._ctx.flags |= av.codec.context.Flags.low_delay

    def decode(self, data: bytes, pts_ms: int) -> list[PixelFrame]:
        packet = av.Packet(data)
        packet.pts = pts_ms
        packet.time_base = _MS
        return [to_pixel_frame(f, int(f.pts) if f.pts is not None else pts_ms) for f in self._ctx.decode(packet)]


class LocalRoom(Room):
    """A member of a room on the local room server at host:port."""

    def __init__(self, host: str, port: int, video_codec: str = CODEC_H264):
        """`video_codec` ("h264", or "hevc": libx265) is what pictures sent as PixelFrame are encoded in."""
        super().__init__()
        if video_codec not in wire.VIDEO_CODECS:
            raise ValueError(f"video_codec must be one of {', '.join(wire.VIDEO_CODECS)}, not {video_codec!r}")
        self.host, self.port = host, int(port)
        self.video_codec = video_codec
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._sock_lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._params: EnterParams | None = None
        self._decoder = wire.Decoder()
        self._audio_encoder: _OpusEncoder | None = None
        self._audio_bitrate = 0
        self._audio_channels = 1
        self._video_started = False
        self._video_config = VideoEncodeConfig()
        self._video_encoder: _H264Encoder | None = None
        self._force_key_frame = False
        self._audio_decoders: dict[str, _OpusDecoder] = {}
        self._video_decoders: dict[str, _H264Decoder] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    def enter(self, params: EnterParams) -> None:
        if self._params is not None:
            raise RoomError(ERR_INVALID_OPERATION, "this room object has already been entered; make a new one")
        if params.audio_output_channels not in _LAYOUTS:
            raise RoomError(ERR_INVALID_PARAMETER, "audio_output_channels must be 1 or 2")
        try:  # callers may pass the enums' string values
            params = dataclasses.replace(params, role=Role(params.role), video_input=VideoFormat(params.video_input),
                                         video_output=VideoFormat(params.video_output))
        except ValueError as e:
            raise RoomError(ERR_INVALID_PARAMETER, f"invalid entry parameter: {e}") from None
        self._params = params
        where = f"the local room server at {self.host}:{self.port}"
        deadline = time.monotonic() + max(0.1, params.timeout)
        try:
            sock = socket.create_connection((self.host, self.port), timeout=max(0.1, params.timeout))
        except socket.timeout:
            raise RoomError(ERR_REQUEST_SERVER_TIMEOUT, f"no connection to {where} within {params.timeout:g} s") from None
        except OSError as e:
            raise RoomError(ERR_NETWORK_UNREACHABLE, f"cannot reach {where}: {e.strerror or e}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        header: dict[str, Any] = {"t": wire.ENTER, "app": params.sdk_app_id, "room": params.room.id,
                                  "user": params.user_id, "sig": params.user_sig, "role": params.role.value,
                                  "recv": params.receive.to_wire()}
        try:
            sock.sendall(wire.encode(header))
            pending = self._await_entered(sock, deadline, where, params.timeout)
        except BaseException:
            self._shutdown_socket()
            raise
        sock.settimeout(None)
        for message in pending:
            self._dispatch(message)
        self._reader = threading.Thread(target=self._read_loop, name=f"local-room-{params.user_id}", daemon=True)
        self._reader.start()

    def _await_entered(self, sock: socket.socket, deadline: float, where: str, timeout: float) -> list[Message]:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RoomError(ERR_REQUEST_SERVER_TIMEOUT, f"{where} did not answer within {timeout:g} s")
            sock.settimeout(remaining)
            try:
                data = sock.recv(1 << 16)
            except socket.timeout:
                raise RoomError(ERR_REQUEST_SERVER_TIMEOUT, f"{where} did not answer within {timeout:g} s") from None
            except OSError as e:
                raise RoomError(ERR_ENTER_ROOM_FAILED, f"lost the connection to {where}: {e}") from None
            if not data:
                raise RoomError(ERR_ENTER_ROOM_FAILED, f"{where} closed the connection before answering")
            try:
                messages = self._decoder.feed(data)
            except WireError as e:
                raise RoomError(ERR_ENTER_ROOM_FAILED, f"{where} answered with something unreadable: {e}") from None
            for i, message in enumerate(messages):
                if message.type == wire.ENTERED:
                    return messages[i + 1:]
                if message.type == wire.ERROR:
                    code = message.header.get("code")
                    raise RoomError(code if isinstance(code, int) else ERR_ENTER_ROOM_FAILED,
                                    str(message.header.get("msg") or "entering the room failed"))

    def exit(self) -> None:
        said_bye = False
        if self._sock is not None and self._closed is None:
            try:
                self._send(Message({"t": wire.EXIT}))
                said_bye = True
            except RoomError:
                pass
        self._close(RoomClosed(CloseReason.EXITED, 0, "exited"))
        reader = self._reader
        if said_bye and reader is not None and reader is not threading.current_thread():
            # Let the server read our goodbye and hang up first: closing a socket with unread data
            # sends a reset, which could make the server see a lost connection instead of an exit.
            reader.join(2)
        self._shutdown_socket()
        if reader is not None and reader is not threading.current_thread():
            reader.join(2)

    def _shutdown_socket(self) -> None:
        with self._sock_lock:
            sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def _emit(self, event: Event) -> None:
        # Nothing may follow RoomClosed, even media the reader was handing over as we exited.
        with self._close_lock:
            if self._closed is None:
                self._events.put(event)

    # --- publishing --------------------------------------------------------------------------

    def _check_anchor(self, what: str) -> None:
        self._check_entered()
        assert self._params is not None
        if self._params.role is not Role.ANCHOR:
            raise RoomError(ERR_INVALID_OPERATION, f"an audience member cannot {what}; enter as anchor")

    def _check_entered(self) -> None:
        self._check_open()
        if self._sock is None or self._params is None:
            raise RoomError(ERR_INVALID_OPERATION, "not in a room: call enter() first")

    def start_audio(self, channels: int = 1, bitrate_bps: int = 0) -> None:
        self._check_anchor("publish audio")
        if channels not in _LAYOUTS:
            raise RoomError(ERR_INVALID_PARAMETER, f"audio channels must be 1 or 2 (got {channels})")
        with self._send_lock:
            self._audio_channels, self._audio_bitrate = channels, bitrate_bps
            self._audio_encoder = _OpusEncoder(channels, bitrate_bps)
        self._send(Message({"t": wire.AUDIO_START, "ch": channels}))

    def start_video(self, config: VideoEncodeConfig | None = None) -> None:
        self._check_anchor("publish video")
        if config is not None:
            self.set_video_encode(config)
        self._video_started = True
        self._send(Message({"t": wire.VIDEO_START}))

    def set_video_encode(self, config: VideoEncodeConfig) -> None:
        with self._send_lock:
            self._video_config = config
            self._video_encoder = None  # rebuilt with the new settings at the next picture

    def send_audio(self, frame: AudioFrame) -> None:
        self._check_anchor("publish audio")
        encoder = self._audio_encoder
        if encoder is None:
            raise RoomError(ERR_INVALID_OPERATION, "call start_audio() before send_audio()")
        if frame.sample_rate != AUDIO_SAMPLE_RATE or frame.channels != encoder.channels \
                or frame.samples != SAMPLES_PER_FRAME or len(frame.data) != SAMPLES_PER_FRAME * 2 * frame.channels:
            raise RoomError(ERR_INVALID_PARAMETER,
                            f"audio frames must be 20 ms of {AUDIO_SAMPLE_RATE} Hz s16 with {encoder.channels} channel(s) "
                            f"({SAMPLES_PER_FRAME * 2 * encoder.channels} bytes); got {len(frame.data)} bytes at "
                            f"{frame.sample_rate} Hz, {frame.channels} channel(s)")
        with self._send_lock:
            packets = encoder.encode(frame)
            for packet in packets:
                self._send_locked(Message({"t": wire.AUDIO, "pts": int(frame.pts_ms)}, packet))

    def send_video(self, frame: VideoFrame) -> None:
        self._check_anchor("publish video")
        if not self._video_started:
            raise RoomError(ERR_INVALID_OPERATION, "call start_video() before send_video()")
        assert self._params is not None
        want = self._params.video_input
        if want is VideoFormat.H264:
            if not isinstance(frame, H264Frame):
                raise RoomError(ERR_INVALID_PARAMETER, "this room was entered with video_input=h264: send H264Frame")
            with self._send_lock:
                self._send_video_locked(frame)
            return
        if not isinstance(frame, PixelFrame):
            raise RoomError(ERR_INVALID_PARAMETER, "this room was entered with video_input=yuv420p: send PixelFrame")
        if frame.width <= 0 or frame.height <= 0 or frame.width % 2 or frame.height % 2:
            raise RoomError(ERR_INVALID_PARAMETER, f"picture size must be even and positive (got {frame.width}x{frame.height})")
        if len(frame.data) != yuv420p_size(frame.width, frame.height):
            raise RoomError(ERR_INVALID_PARAMETER, f"a {frame.width}x{frame.height} YUV420p picture is "
                            f"{yuv420p_size(frame.width, frame.height)} bytes (got {len(frame.data)})")
        with self._send_lock:
            enc = self._video_encoder
            if enc is None or (enc.width, enc.height) != (frame.width, frame.height):
                enc = self._video_encoder = _H264Encoder(frame.width, frame.height, self._video_config,
                                                         self.video_codec)
                self._force_key_frame = False  # a new encoder starts with one anyway
            force, self._force_key_frame = self._force_key_frame, False
            for unit in enc.encode(frame, force):
                self._send_video_locked(unit)

    def _send_video_locked(self, unit: H264Frame) -> None:
        header: dict[str, Any] = {"t": wire.VIDEO, "pts": int(unit.pts_ms), "k": 1 if unit.key else 0}
        if unit.dts_ms is not None and unit.dts_ms != unit.pts_ms:
            header["dts"] = int(unit.dts_ms)
        if unit.codec != wire.DEFAULT_VIDEO_CODEC:
            header["c"] = unit.codec
        self._send_locked(Message(header, unit.data))

    def request_key_frame(self, user_id: str) -> None:
        self._check_entered()
        self._send(Message({"t": wire.KEY_FRAME, "u": str(user_id)}))

    def _send(self, message: Message) -> None:
        with self._send_lock:
            self._send_locked(message)

    def _send_locked(self, message: Message) -> None:
        self._check_open()
        sock = self._sock
        if sock is None:
            raise RoomError(ERR_INVALID_OPERATION, "not in a room")
        try:
            data = message.encode()
        except WireError as e:
            raise RoomError(ERR_INVALID_PARAMETER, str(e)) from None
        try:
            sock.sendall(data)
        except OSError as e:
            # The server may have put us out (replaced, removed) just before: its reason is on its
            # way to the reader, and wins over the broken connection it explains.
            reader = self._reader
            if reader is not None and reader is not threading.current_thread():
                reader.join(READER_VERDICT_S)
            self._close(RoomClosed(CloseReason.ERROR, ERR_NETWORK_UNREACHABLE, f"lost the room server: {e}"))
            raise RoomError(ERR_NETWORK_UNREACHABLE, f"lost the connection to the room server: {e}") from None

    # --- receiving (reader thread) -----------------------------------------------------------

    def _read_loop(self) -> None:
        sock = self._sock
        lost = "the room server closed the connection"
        try:
            while sock is not None:
                try:
                    data = sock.recv(1 << 18)
                except OSError as e:
                    lost = f"lost the room server: {e}"
                    break
                if not data:
                    break
                try:
                    messages = self._decoder.feed(data)
                except WireError as e:
                    lost = f"the room server sent something unreadable: {e}"
                    break
                for message in messages:
                    self._dispatch(message)
        except Exception as e:  # the reader must end with a RoomClosed, never a traceback in a thread
            log.exception("local room reader failed")
            lost = f"local room reader failed: {e}"
        self._close(RoomClosed(CloseReason.ERROR, ERR_NETWORK_UNREACHABLE, lost))
        if self._closed is not None and self._closed.reason is not CloseReason.EXITED:
            self._shutdown_socket()

    def _dispatch(self, message: Message) -> None:
        if self._closed is not None and message.type != wire.CLOSED:
            return
        try:
            self._handle(message)
        except Exception:
            log.exception("dropping a %r message from the room server", message.type)

    def _handle(self, message: Message) -> None:
        h = message.header
        t = message.type
        if t == wire.AUDIO:
            self._on_audio(h["u"], message.payload, int(h["pts"]))
        elif t == wire.VIDEO:
            self._on_video(h["u"], message.payload, int(h["pts"]), bool(h.get("k")), h.get("dts"),
                           str(h.get("c", wire.DEFAULT_VIDEO_CODEC)))
        elif t == wire.USER_ENTERED:
            self._emit(UserEntered(h["u"]))
        elif t == wire.USER_LEFT:
            self._audio_decoders.pop(h["u"], None)
            self._video_decoders.pop(h["u"], None)
            self._emit(UserLeft(h["u"], int(h["r"])))
        elif t == wire.AUDIO_AVAILABLE:
            self._emit(AudioAvailable(h["u"], bool(h["on"])))
        elif t == wire.VIDEO_AVAILABLE:
            self._emit(VideoAvailable(h["u"], bool(h["on"])))
        elif t == wire.KEY_FRAME_REQUESTED:
            self._force_key_frame = True
            self._emit(KeyFrameRequested())
        elif t == wire.CLOSED:
            try:
                reason = CloseReason(h.get("reason"))
            except ValueError:
                reason = CloseReason.ERROR
            self._close(RoomClosed(reason, int(h.get("code") or 0), str(h.get("msg") or "")))
        elif t == wire.ERROR:
            self._close(RoomClosed(CloseReason.ERROR, int(h.get("code") or ERR_FAILED), str(h.get("msg") or "")))
        else:
            log.warning("ignoring unknown message type %r from the room server", t)

    def _on_audio(self, user_id: str, packet: bytes, pts_ms: int) -> None:
        assert self._params is not None
        decoder = self._audio_decoders.get(user_id)
        if decoder is None:
            decoder = self._audio_decoders[user_id] = _OpusDecoder(self._params.audio_output_channels)
        frame = decoder.decode(packet, pts_ms)
        if frame is not None:
            self._emit(RemoteAudio(user_id, frame))

    def _on_video(self, user_id: str, data: bytes, pts_ms: int, key: bool, dts: Any, codec: str) -> None:
        assert self._params is not None
        if self._params.video_output is VideoFormat.H264:
            self._emit(RemoteVideo(user_id, H264Frame(data, pts_ms, key, int(dts) if dts is not None else pts_ms,
                                                      codec)))
            return
        decoder = self._video_decoders.get(user_id)
        if decoder is None or decoder.codec != codec:
            decoder = self._video_decoders[user_id] = _H264Decoder(codec)
        for picture in decoder.decode(data, pts_ms):
            self._emit(RemoteVideo(user_id, picture))
