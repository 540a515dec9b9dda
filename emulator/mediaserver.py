"""Media served on loopback, as the sources a push reads are served in the wild: an HTTP server
(files with Range requests, stalls, drops, a growing live HLS playlist, HTTP-FLV) and a minimal RTMP
server. Beside emulator/httpserver.py (which the HTTP one runs on); the tests' fixtures and the
benchmarks start them.

- `MediaHTTPServer(root)`: serves `root`; routes below.
- `RtmpServer(flv)`: plays an FLV clip to the first client, in real time.
"""
from __future__ import annotations

import http.server
import os
import re
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from emulator.httpserver import HttpServer
from shared.worker import Worker, spawn

# --- HTTP ----------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):
            pass  # the client went away (a reconnect, a closed source): nothing to report

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:
        path, _, query = self.path.partition("?")
        root: Path = self.server.root
        with self.server.lock:
            self.server.requests.append((path, self.headers.get("Range")))
        try:
            if path == "/redirect":
                return self._redirect(urllib.parse.parse_qs(query).get("to", ["/"])[0])
            if path.startswith("/stall/"):
                return self._stall()
            if path.startswith("/stallbody/"):
                return self._stall_body(root / path[len("/stallbody/"):])
            if path.startswith("/drop/"):
                return self._drop_once(root / path[len("/drop/"):], head)
            if path.startswith("/live/") and path.endswith(".m3u8"):
                return self._live_playlist(root / path[len("/live/"):-len(".m3u8")])
            if path.startswith("/live/"):
                return self._file(root / path[len("/live/"):], head)
            if path.startswith("/flvlive/"):
                return self._flv_live(root / path[len("/flvlive/"):])
            return self._file(root / path.lstrip("/"), head)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _not_found(self) -> None:
        body = b"not found\n"
        self.send_response(404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _file(self, file: Path, head: bool) -> None:
        if not file.is_file():
            return self._not_found()
        size = file.stat().st_size
        start, end = 0, size - 1
        m = re.match(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else size - 1
            else:
                start = max(0, size - int(m.group(2)))
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            end = min(end, size - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        if head:
            return
        with open(file, "rb") as fh:
            fh.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = fh.read(min(65536, left))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)

    def _stall(self) -> None:
        # Accept the request and never answer (until the server stops, at most 60 s).
        self.server.stopping.wait(60)
        self.close_connection = True

    def _stall_body(self, file: Path) -> None:
        if not file.is_file():
            return self._not_found()
        data = file.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 3])
        self.wfile.flush()
        self.server.stopping.wait(60)
        self.close_connection = True

    def _drop_once(self, file: Path, head: bool) -> None:
        """The first GET gets a third of the body and a closed connection; later ones are served."""
        if not file.is_file():
            return self._not_found()
        with self.server.lock:
            first = str(file) not in self.server.dropped
            self.server.dropped.add(str(file))
        if not first or head:
            return self._file(file, head)
        data = file.read_bytes()
        self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 3])
        self.wfile.flush()
        self.close_connection = True

    def _live_playlist(self, directory: Path) -> None:
        """A live window over an HLS VOD's segments that grows with time, without ENDLIST."""
        vod = directory / "index.m3u8"
        if not vod.is_file():
            return self._not_found()
        lines = vod.read_text().splitlines()
        segments = []
        target = 1
        for i, line in enumerate(lines):
            if line.startswith("#EXT-X-TARGETDURATION:"):
                target = int(line.split(":")[1])
            if line.startswith("#EXTINF:"):
                segments.append((line, lines[i + 1]))
        started = self.server.live_started.setdefault(str(directory), time.monotonic())
        elapsed = time.monotonic() - started
        available = min(len(segments), 3 + int(elapsed / max(target, 1) * self.server.live_speed))
        first = max(0, available - 4)
        body = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}",
                f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        for inf, uri in segments[first:available]:
            body += [inf, f"{directory.name}/{uri}"]
        data = ("\n".join(body) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.apple.mpegurl")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _flv_live(self, file: Path) -> None:
        """An FLV file sent as a stream: no Content-Length, no Range, a little faster than real time."""
        if not file.is_file():
            return self._not_found()
        data = file.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "video/x-flv")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk = 16384
        for i in range(0, len(data), chunk):
            if self.server.stopping.is_set():
                return
            self.wfile.write(data[i:i + chunk])
            self.wfile.flush()
            time.sleep(0.02)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    stopping: threading.Event
    live_started: dict[str, float]
    live_speed: float
    dropped: set[str]
    lock: threading.Lock
    requests: list[tuple[str, str | None]]


class MediaHTTPServer:
    """Serves `root` on 127.0.0.1 with Range requests.

    Routes: /NAME (a file; 404 when missing), /stall/ANY (never answers), /stallbody/NAME (a third
    of the body, then nothing), /drop/NAME (the first request is cut after a third of the body and
    the connection closed; later ones, with Range, are served), /live/DIR.m3u8 (a growing live playlist over DIR's HLS VOD; the
    segments at /live/DIR/seg_N.ts), /flvlive/NAME (an FLV streamed without a length),
    /redirect?to=URL (a 302 to URL).

    `host` may be any loopback address (127.0.0.2 serves as "another host" in egress tests), and
    `port` a given one (the same port on two addresses).
    """

    def __init__(self, root: str | os.PathLike, live_speed: float = 1.0, host: str = "127.0.0.1", port: int = 0):
        self.root = Path(root)
        self.host = host
        self._http = HttpServer(_Handler, host, port, name="media-http", poll_interval=0.1, server_class=_Server)
        self._httpd: _Server = self._http.server  # type: ignore[assignment]
        self._httpd.root = self.root
        self._httpd.stopping = threading.Event()
        self._httpd.live_started = {}
        self._httpd.live_speed = live_speed
        self._httpd.dropped = set()
        self._httpd.lock = threading.Lock()
        self._httpd.requests = []
        self.port = self._http.port

    def requests(self, path: str) -> list[str | None]:
        """The Range header of each request made for `path` so far (None: no Range)."""
        with self._httpd.lock:
            return [r for p, r in self._httpd.requests if p == "/" + path.lstrip("/")]

    def all_requests(self) -> list[str]:
        """The path of every request this server has had."""
        with self._httpd.lock:
            return [p for p, _ in self._httpd.requests]

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}/{path.lstrip('/')}"

    def start(self) -> "MediaHTTPServer":
        self._http.start()
        return self

    def stop(self) -> None:
        self._httpd.stopping.set()  # a stalled answer ends rather than hold the stop up
        self._http.stop()


# --- RTMP ----------------------------------------------------------------------------------------
# PyAV opens outputs without protocol options, so FFmpeg's own RTMP listen mode is out of reach from
# Python; this is the small part of RTMP a player needs (handshake, connect, createStream, play),
# serving the tags of an FLV file in real time.


def _amf_string(s: str) -> bytes:
    b = s.encode()
    return b"\x02" + struct.pack(">H", len(b)) + b


def _amf_number(n: float) -> bytes:
    return b"\x00" + struct.pack(">d", n)


def _amf_object(d: dict) -> bytes:
    out = b"\x03"
    for k, v in d.items():
        kb = k.encode()
        out += struct.pack(">H", len(kb)) + kb + (_amf_string(v) if isinstance(v, str) else _amf_number(v))
    return out + b"\x00\x00\x09"


def _amf_head(payload: bytes) -> tuple[str, float]:
    """The command name and transaction id at the start of an AMF0 command."""
    if payload[:1] != b"\x02":
        return "", 0.0
    n = struct.unpack(">H", payload[1:3])[0]
    name = payload[3:3 + n].decode(errors="replace")
    rest = payload[3 + n:]
    txn = struct.unpack(">d", rest[1:9])[0] if rest[:1] == b"\x00" else 0.0
    return name, txn


def flv_tags(data: bytes) -> list[tuple[int, int, bytes]]:
    """(tag type, timestamp ms, body) for each tag of an FLV file."""
    tags = []
    i = struct.unpack(">I", data[5:9])[0] + 4
    while i + 11 <= len(data):
        kind = data[i]
        size = int.from_bytes(data[i + 1:i + 4], "big")
        ts = int.from_bytes(data[i + 4:i + 7], "big") | (data[i + 7] << 24)
        body = data[i + 11:i + 11 + size]
        if len(body) < size:
            break
        tags.append((kind, ts, body))
        i += 11 + size + 4
    return tags


@dataclass
class RtmpServer:
    """An RTMP server on 127.0.0.1 that plays `flv` (an FLV file) to each client, in real time x speed.

    `url` is what a client opens. Every wait is bounded: the thread ends after `accept_timeout_s`
    without a client, or after the clip; `stop()` ends it early.
    """

    flv: Path
    stream: str = "live/test"
    accept_timeout_s: float = 10.0
    speed: float = 1.0
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(4)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.url = f"rtmp://127.0.0.1:{self.port}/{self.stream}"
        self.sent = 0
        self._chunk = 128  # RTMP's chunk sizes, outgoing and incoming, until either side sets another
        self._in_chunk = 128
        self.played: list[str] = []
        self.tc_urls: list[str] = []  # the tcUrl of each connect command
        self._tags = flv_tags(Path(self.flv).read_bytes())
        self._stop = threading.Event()
        self._serving: Worker | None = None

    def start(self) -> "RtmpServer":
        if self._serving is None:
            self._serving = spawn(self._run, "rtmp-server")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._serving is not None:
            self._serving.join(5)
        self._sock.close()

    def _run(self) -> None:
        deadline = time.monotonic() + self.accept_timeout_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            try:
                conn.settimeout(10)
                self._serve(conn)
            except BaseException as e:  # reported to the test through .error
                self.error = e
            finally:
                conn.close()
            return

    # wire ---------------------------------------------------------------------------------------
    def _recv(self, conn: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("client closed")
            buf += chunk
        return buf

    def _send(self, conn, csid: int, kind: int, payload: bytes, ts: int = 0, sid: int = 0) -> None:
        ext = ts >= 0xFFFFFF
        head = bytes([csid]) + (0xFFFFFF if ext else ts).to_bytes(3, "big") + len(payload).to_bytes(3, "big")
        head += bytes([kind]) + struct.pack("<I", sid) + (struct.pack(">I", ts) if ext else b"")
        out = [head + payload[: self._chunk]]
        for i in range(self._chunk, len(payload), self._chunk):
            out.append(bytes([0xC0 | csid]) + (struct.pack(">I", ts) if ext else b"") + payload[i:i + self._chunk])
        conn.sendall(b"".join(out))

    def _read_message(self, conn, state: dict) -> tuple[int, bytes]:
        """One whole message from the client (type, payload), reassembling chunks."""
        while True:
            b = self._recv(conn, 1)[0]
            fmt, csid = b >> 6, b & 0x3F
            if csid == 0:
                csid = 64 + self._recv(conn, 1)[0]
            elif csid == 1:
                x = self._recv(conn, 2)
                csid = 64 + x[0] + x[1] * 256
            st = state.setdefault(csid, {"len": 0, "type": 0, "buf": b"", "ts": 0})
            if fmt <= 2:
                h = self._recv(conn, [11, 7, 3][fmt])
                ts = int.from_bytes(h[0:3], "big")
                if fmt <= 1:
                    st["len"] = int.from_bytes(h[3:6], "big")
                    st["type"] = h[6]
                if ts == 0xFFFFFF:
                    self._recv(conn, 4)
            take = min(self._in_chunk, st["len"] - len(st["buf"]))
            st["buf"] += self._recv(conn, take)
            if len(st["buf"]) >= st["len"]:
                payload, st["buf"] = st["buf"], b""
                if st["type"] == 1:  # Set Chunk Size
                    self._in_chunk = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
                    continue
                return st["type"], payload

    def _serve(self, conn: socket.socket) -> None:
        self._chunk = 128
        self._in_chunk = 128
        c0c1 = self._recv(conn, 1537)
        # S1 with a zero version: the client then skips digest validation (plain handshake).
        conn.sendall(b"\x03" + bytes(8) + os.urandom(1528) + c0c1[1:])
        self._recv(conn, 1536)  # C2
        state: dict = {}
        playing = False
        while not playing:
            kind, payload = self._read_message(conn, state)
            if kind not in (17, 20):
                continue
            name, txn = _amf_head(payload[1:] if kind == 17 else payload)
            if name == "connect":
                at = payload.find(b"\x00\x05tcUrl\x02")
                if at >= 0:
                    n = int.from_bytes(payload[at + 8:at + 10], "big")
                    self.tc_urls.append(payload[at + 10:at + 10 + n].decode())
                self._send(conn, 2, 5, struct.pack(">I", 2_500_000))  # window ack size
                self._send(conn, 2, 6, struct.pack(">IB", 2_500_000, 2))  # peer bandwidth
                self._send(conn, 2, 1, struct.pack(">I", 60000))  # our chunk size
                self._chunk = 60000
                self._send(conn, 3, 20, _amf_string("_result") + _amf_number(txn)
                           + _amf_object({"fmsVer": "FMS/3,0,1,123", "capabilities": 31})
                           + _amf_object({"level": "status", "code": "NetConnection.Connect.Success",
                                          "description": "Connection succeeded.", "objectEncoding": 0}))
            elif name == "createStream":
                self._send(conn, 3, 20, _amf_string("_result") + _amf_number(txn) + b"\x05" + _amf_number(1))
            elif name == "getStreamLength":
                self._send(conn, 3, 20, _amf_string("_result") + _amf_number(txn) + b"\x05" + _amf_number(0))
            elif name == "play":
                rest = payload[payload.index(b"\x05", 3) + 1:]
                self.played.append(_amf_head(rest)[0] if rest[:1] == b"\x02" else "")
                self._send(conn, 2, 4, struct.pack(">HI", 0, 1))  # user control: stream begin
                self._send(conn, 5, 20, _amf_string("onStatus") + _amf_number(0) + b"\x05"
                           + _amf_object({"level": "status", "code": "NetStream.Play.Start",
                                          "description": "Started playing."}), sid=1)
                playing = True
        conn.settimeout(0.5)
        t0 = time.monotonic()
        for kind, ts, body in self._tags:
            if self._stop.is_set():
                return
            delay = t0 + ts / 1000 / self.speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._send(conn, 4 if kind == 9 else 6, kind, body, ts=ts, sid=1)
            self.sent += 1
        self._send(conn, 5, 20, _amf_string("onStatus") + _amf_number(0) + b"\x05"
                   + _amf_object({"level": "status", "code": "NetStream.Play.Stop", "description": "Stopped."}),
                   sid=1)
        time.sleep(0.2)  # the client reads the last message before the connection closes
