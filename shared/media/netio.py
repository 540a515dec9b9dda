"""Every byte a source reads, opened by us: FFmpeg never connects to a videoSrc's network by itself.

FFmpeg's own HTTP and HLS code resolves and connects on its own, follows redirects and opens
whatever a playlist names, none of which can be checked per hop from PyAV. So a source is opened
with `av.open(..., io_open=SourceOpener(...))`: FFmpeg then asks us for every URL its demuxers open
(the source, each HLS variant, key, init section and segment), and each is opened here:

- http(s):  `HttpFile`, a small reader over http.client whose every connection (each redirect hop,
            each Range request after a seek, each reconnect) comes from `shared.egress.connect`:
            resolved once, checked against SOURCE_ALLOWLIST, connected to the checked address. TLS
            keeps the URL's host for SNI and certificate checks; Host stays the name.
- local:    only under LOCAL_SOURCE_DIRS, checked on the real path of what was actually opened.
- crypto+X: X opened the same way, decrypted here (HLS AES-128).
- data:     decoded here.

Anything else is refused. A refusal always fails the source (`refuse`); an ordinary failure of a
part the demuxer opened by itself (a segment that 404s or stalls) reads as empty, so FFmpeg skips
that part as it would have itself.

RTMP cannot go through io_open (FFmpeg's RTMP protocol owns its socket): `pinned_rtmp` resolves and
checks the host once and hands FFmpeg the checked IP, with tcUrl keeping the host name.
"""
from __future__ import annotations

import base64
import errno
import http.client
import os
import socket
import ssl
import time
from typing import Any, Callable, Optional
from urllib.parse import unquote, unquote_to_bytes, urljoin, urlsplit, urlunsplit

import av

from shared import egress
from shared.runtime import RunLogger

MAX_REDIRECTS = 5
# Reconnects in a row without a byte of progress before a dropped connection is an error.
MAX_RECONNECTS = 3
RECONNECT_DELAYS_S = (0.0, 0.5, 1.0)
# A forward seek at most this far is read through instead of starting a new Range request.
SKIP_MAX = 256 * 1024
USER_AGENT = "trtc-media-functions"
AVIO_FLAG_WRITE = 2

Refuse = Callable[[str], Exception]


def safe_url(url: str) -> str:
    """The URL as it may be shown: no user:password, no query or fragment (tokens live there)."""
    parts = urlsplit(url)
    if not parts.scheme or len(parts.scheme) == 1:
        return url  # a local path (or a Windows drive letter)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _reason(e: egress.DestinationRefused, what: str) -> str:
    """egress's message without the leading `what` (the caller names the source itself)."""
    text = str(e)
    return text[len(what):].lstrip() if text.startswith(what) else text


# --- errors FFmpeg's callers already know how to word (shared.media.source._reason) ---------------


def _timed_out(timeout_s: float) -> av.FFmpegError:
    return av.error.ExitError(errno.ETIMEDOUT, f"no data within {timeout_s:g} s")


def _http_error(status: int, reason: str) -> av.FFmpegError:
    text = f"Server returned {status} {reason}".strip()
    cls: Optional[type[av.FFmpegError]] = {400: av.error.HTTPBadRequestError, 401: av.error.HTTPUnauthorizedError,
           403: av.error.HTTPForbiddenError, 404: av.error.HTTPNotFoundError,
           429: av.error.HTTPTooManyRequestsError}.get(status)
    if cls is None:
        cls = av.error.HTTPServerError if status >= 500 else av.error.HTTPOtherClientError
    return cls(status, text)


def _network_error(e: BaseException) -> av.FFmpegError:
    if isinstance(e, ConnectionRefusedError):
        return av.error.ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    if isinstance(e, (ConnectionResetError, ConnectionAbortedError, http.client.IncompleteRead,
                      http.client.RemoteDisconnected)):
        return av.error.ConnectionResetError(errno.ECONNRESET, "connection lost")
    if isinstance(e, ssl.SSLError):
        return av.error.OSError(errno.EPROTO, f"TLS failed: {getattr(e, 'reason', None) or e}")
    if isinstance(e, OSError) and e.errno:
        return av.error.OSError(e.errno, e.strerror or str(e))
    return av.error.OSError(errno.EIO, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)


# --- HTTP -----------------------------------------------------------------------------------------

_TLS: Optional[ssl.SSLContext] = None


def _tls_context() -> ssl.SSLContext:
    global _TLS
    if _TLS is None:
        try:
            import certifi  # the CA bundle requests uses, so sources and callbacks trust the same CAs

            _TLS = ssl.create_default_context(cafile=certifi.where())
        except ImportError:
            _TLS = ssl.create_default_context()
    return _TLS


def _connection(url: str, timeout_s: float, allowlist_env: str, what: str) -> http.client.HTTPConnection:
    """An http.client connection whose socket is made by egress.connect (the checked address)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(host, parts.port or 443, timeout=timeout_s, context=_tls_context())
    else:
        conn = http.client.HTTPConnection(host, parts.port or 80, timeout=timeout_s)

    def create_connection(address: tuple[str, int], timeout: Any = None, source_address: Any = None) -> socket.socket:
        return egress.connect(address[0], address[1], allowlist_env, what, timeout_s)

    conn._create_connection = create_connection  # type: ignore[attr-defined]  # http.client's hook for how it connects; not in the stub
    return conn


class HttpFile:
    """One HTTP resource as a file PyAV reads: Range requests for seeks, reconnects after a dropped
    connection, redirects followed here (each hop checked), timeouts as `timeout_s` per wait.

    `start`/`end` restrict it to a byte window (an HLS EXT-X-BYTERANGE segment): positions are
    relative to `start`, as FFmpeg's own http protocol presents them.
    """

    def __init__(self, url: str, *, timeout_s: float, label: str, refuse: Refuse,
                 allowlist_env: str = egress.SOURCE_ALLOWLIST_ENV, start: int = 0, end: Optional[int] = None,
                 on_read_error: Optional[Callable[[BaseException], None]] = None):
        self.url = url
        # Given: a read error (not a refusal) is reported to it and the part reads as ended.
        self.on_read_error = on_read_error
        self.timeout_s = timeout_s
        self.label = label  # "" for the source itself, else "refers to <url>"
        self.refuse = refuse
        self.allowlist_env = allowlist_env
        self._start = max(0, start)
        self._end = end  # exclusive, absolute
        self.final_url = url  # after redirects: where Range requests go
        self.content_type = ""
        self._conn: Optional[http.client.HTTPConnection] = None
        self._resp: Optional[http.client.HTTPResponse] = None
        self._resp_pos = 0  # the open response's position (relative)
        self._pos = 0  # where the reader is (relative)
        self._size: Optional[int] = None  # relative
        self._ranges = False
        self._closed = False
        self._request(0)  # fail at open, as FFmpeg would: 404, refused, timed out

    # --- the file interface PyAV uses ----------------------------------------------------------

    def seekable(self) -> bool:
        return self._ranges and self._size is not None

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        # Lazy: only remember the position; the next read decides whether to skip or reconnect.
        # Never raises (PyAV would keep the exception and raise it at an unrelated later call).
        if whence == 0:
            target = offset
        elif whence == 1:
            target = self._pos + offset
        elif whence == 2 and self._size is not None:
            target = self._size + offset
        else:
            return -1
        if target < 0:
            return -1
        self._pos = target
        return target

    def read(self, n: int = -1) -> bytes:
        if self._closed:
            return b""
        try:
            return self._read(n)
        except av.FFmpegError as e:
            self.close()
            if self.on_read_error is None:
                raise
            self.on_read_error(e)
            return b""
        except BaseException:
            # PyAV keeps the exception for its caller; FFmpeg may read again before that, and a
            # second exception would replace the first: after a failure this part reads as ended.
            self.close()
            raise

    def _read(self, n: int) -> bytes:
        if n is None or n < 0:
            n = 1 << 20
        if self._size is not None and self._pos >= self._size:
            return b""
        failures = 0
        while True:
            try:
                self._align()
                if self._resp is None:
                    self._request(self._pos)
                    if self._resp is None:  # the server says there is nothing at this position
                        return b""
                data = self._resp.read1(n)
            except socket.timeout:
                self._drop()
                raise _timed_out(self.timeout_s) from None
            except (OSError, http.client.HTTPException) as e:
                if isinstance(e, av.FFmpegError) and not isinstance(e, av.error.ConnectionResetError):
                    raise
                self._drop()
                failures += 1
                if not self._may_reconnect(failures):
                    raise e if isinstance(e, av.FFmpegError) else _network_error(e) from None
                continue
            if data:
                self._pos += len(data)
                self._resp_pos = self._pos
                return data
            self._drop()
            if self._size is None or self._pos >= self._size:
                return b""  # the end (a live stream without a length ends when the server closes it)
            failures += 1  # the connection closed before the announced length: reconnect there
            if not self._may_reconnect(failures):
                raise av.error.ConnectionResetError(
                    errno.ECONNRESET, f"connection lost at byte {self._start + self._pos}")

    def read_at_most(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while total < limit:
            chunk = self.read(limit - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self._closed = True
        self._drop()

    def __del__(self) -> None:
        try:
            self._drop()
        except Exception:
            pass

    # --- inside ----------------------------------------------------------------------------------

    def _may_reconnect(self, failures: int) -> bool:
        if not self.seekable() or failures > MAX_RECONNECTS:
            return False
        time.sleep(RECONNECT_DELAYS_S[min(failures, len(RECONNECT_DELAYS_S)) - 1])
        return True

    def _align(self) -> None:
        """Bring the open response to the reader's position: read through a short skip forward,
        else drop it (the next request starts at the position)."""
        if self._resp is None or self._resp_pos == self._pos:
            return
        gap = self._pos - self._resp_pos
        if not 0 < gap <= SKIP_MAX:
            self._drop()
            return
        while gap > 0:
            chunk = self._resp.read1(min(gap, 65536))
            if not chunk:
                self._drop()
                return
            gap -= len(chunk)
            self._resp_pos += len(chunk)

    def _drop(self) -> None:
        resp, conn, self._resp, self._conn = self._resp, self._conn, None, None
        if resp is not None:
            resp.close()
        if conn is not None:
            conn.close()

    # Complexity (~25) stays: one redirect loop; each HTTP answer and network failure is one branch in it.
    def _request(self, pos: int) -> None:
        """GET from `pos` (relative), following redirects; sets _resp, or leaves it None at the end."""
        # Complexity above 20 on purpose: each redirect hop is checked and connected here, in one
        # loop, so that no hop can reach an address the egress rules did not see.
        absolute = self._start + pos
        last = None if self._end is None else self._end - 1
        headers = {"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "identity",
                   "Range": f"bytes={absolute}-{'' if last is None else last}"}
        url = self.final_url
        origin = urlsplit(self.url)
        for hop in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            hops = f"{self.label}, which " if self.label else ""
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise self.refuse(f"{hops}redirects to {safe_url(url)}, which is not an http(s) URL")
            if hop == 0 and url == self.url:
                what = f"videoSrc {self.label}, whose" if self.label else "videoSrc"
            else:
                what = f"videoSrc {hops}redirects to {safe_url(url)}, whose"
            auth = dict(headers)
            if parts.username is not None and (parts.hostname, parts.port) == (origin.hostname, origin.port):
                token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
                auth["Authorization"] = "Basic " + base64.b64encode(token).decode()
            conn = _connection(url, self.timeout_s, self.allowlist_env, what)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            try:
                conn.request("GET", target, headers=auth)
                resp = conn.getresponse()
            except egress.DestinationRefused as e:
                conn.close()
                raise self.refuse(_reason(e, "videoSrc")) from None
            except socket.timeout:
                conn.close()
                raise _timed_out(self.timeout_s) from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise _network_error(e) from None
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                location = resp.getheader("Location") or ""
                resp.close()
                conn.close()
                url = urljoin(url, location.strip())
                continue
            if resp.status == 416:
                resp.close()
                conn.close()
                self._size = pos if self._size is None else self._size
                self._resp = None
                return
            if resp.status not in (200, 206):
                resp.close()
                conn.close()
                raise _http_error(resp.status, resp.reason)
            self.final_url = url
            self.content_type = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
            self._take(resp, conn, pos)
            return
        raise av.error.HTTPOtherClientError(310, f"more than {MAX_REDIRECTS} redirects")

    def _take(self, resp: http.client.HTTPResponse, conn: http.client.HTTPConnection, pos: int) -> None:
        length = resp.getheader("Content-Length")
        window = None if self._end is None else self._end - self._start
        if resp.status == 206:
            self._ranges = True
            total = (resp.getheader("Content-Range") or "").rpartition("/")[2].strip()
            if total.isdigit():
                size = int(total) - self._start
                self._size = size if window is None else min(window, size)
            self._resp_pos = pos
        else:
            self._ranges = (resp.getheader("Accept-Ranges") or "").strip().lower() == "bytes"
            if length and length.isdigit() and not resp.chunked:
                self._size = int(length) - self._start if window is None else window
            skip = self._start + pos
            while skip > 0:  # a server that ignores Range sends it all: read through to the position
                chunk = resp.read1(min(skip, 65536))
                if not chunk:
                    break
                skip -= len(chunk)
            self._resp_pos = pos
        self._resp, self._conn = resp, conn


HLS_MIME_TYPES = frozenset({"application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl",
                            "audio/x-mpegurl"})
MAX_PLAYLIST_BYTES = 4 << 20


def _is_playlist(f: HttpFile) -> bool:
    path = urlsplit(f.final_url).path.lower()
    return f.content_type in HLS_MIME_TYPES or path.endswith((".m3u8", ".m3u"))


def _absolutized(playlist: bytes, base: str) -> bytes:
    """A playlist with every URI made absolute against `base`. FFmpeg resolves relative entries
    against where a playlist was redirected to, which it learns from its own HTTP code only."""
    def uri(ref: str) -> str:
        return urljoin(base, ref) if ref and not ref.lower().startswith("data:") else ref

    out = []
    for line in playlist.decode("utf-8", "replace").splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            line = uri(stripped)
        elif 'URI="' in line:
            head, _, rest = line.partition('URI="')
            ref, quote, tail = rest.partition('"')
            line = f'{head}URI="{uri(ref)}{quote}{tail}'
        out.append(line)
    return ("\n".join(out) + "\n").encode()


# --- the other kinds of part ---------------------------------------------------------------------


class _Empty:
    """A part that could not be had, read as empty: FFmpeg's HLS code moves on, as on its own errors."""

    def read(self, n: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


class _Bytes:
    def __init__(self, data: bytes):
        self._data, self._pos = data, 0

    def read(self, n: int = -1) -> bytes:
        n = len(self._data) if n is None or n < 0 else n
        out = self._data[self._pos:self._pos + n]
        self._pos += len(out)
        return out

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else self._pos + offset if whence == 1 else len(self._data) + offset
        if target < 0:
            return -1
        self._pos = target
        return target

    def close(self) -> None:
        pass


class _Aes128Cbc:
    """HLS AES-128: the inner part decrypted as it is read (CBC, PKCS#7 padding on the last block)."""

    def __init__(self, inner: Any, key: bytes, iv: bytes):
        from Crypto.Cipher import AES

        self._inner = inner
        self._cipher = AES.new(key, AES.MODE_CBC, iv)
        self._held = b""  # ciphertext not decrypted yet: the last whole block may carry the padding
        self._out = b""
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        n = 1 << 20 if n is None or n < 0 else n
        while not self._out and not self._eof:
            data = self._inner.read(max(n, 65536))
            if not data:
                self._eof = True
                if self._held and len(self._held) % 16 == 0:
                    plain = self._cipher.decrypt(self._held)
                    pad = plain[-1]
                    self._out += plain[:-pad] if 1 <= pad <= 16 else plain
                self._held = b""
                break
            buf = self._held + data
            keep = len(buf) % 16 or 16
            self._out += self._cipher.decrypt(buf[:len(buf) - keep])
            self._held = buf[len(buf) - keep:]
        out, self._out = self._out[:n], self._out[n:]
        return out

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close:
            close()


def _data_url(url: str) -> bytes:
    head, sep, payload = url[5:].partition(",")
    if not sep:
        raise ValueError("a data: URL without a comma")
    return base64.b64decode(payload) if head.endswith(";base64") else unquote_to_bytes(payload)


def _opened_path(f: Any, path: str) -> str:
    """The real path of the file actually opened (a symlink swapped after the check shows here)."""
    try:
        return os.readlink(f"/proc/self/fd/{f.fileno()}")
    except OSError:
        return os.path.realpath(path)


# --- the opener -------------------------------------------------------------------------------------


class SourceOpener:
    """PyAV's io_open for one source. The first URL opened is the source itself: its failures are
    the source's (raised, and worded by the caller); later ones are parts its demuxer found.

    `refuse(reason)` makes the exception for a refused destination (the caller's SourceError, so
    that a refusal in the middle of a push ends it as a source failure naming the reason).
    """

    def __init__(self, *, local: bool, timeout_s: float, log: RunLogger, refuse: Refuse):
        self.local = local
        self.timeout_s = timeout_s
        self.log = log
        self.refuse = refuse
        self.refused = False
        self._first = True
        self._prepared: Optional[HttpFile] = None
        self._files: list[Any] = []  # the source itself, closed by close()

    def prepare(self, url: str) -> tuple[str, Optional[str]]:
        """Open a network source before FFmpeg asks (its failures are the source's, raised here).

        Returns the URL to give av.open — where redirects led, so that FFmpeg resolves a playlist's
        relative entries there — and the format when only the Content-Type tells it (an HLS
        playlist at a URL without .m3u8: FFmpeg's probe cannot see the type through io_open).
        """
        if self.local:
            return url, None
        self._first = False
        f = self._open(url, {}, True)
        self._prepared = f
        self._files.append(f)
        return f.final_url, "hls" if f.content_type in HLS_MIME_TYPES else None

    def __call__(self, url: str, flags: int, options: dict[str, str]) -> Any:
        if self._prepared is not None and url == self._prepared.final_url:
            prepared, self._prepared = self._prepared, None
            return prepared
        main, self._first = self._first, False
        if self.refused:
            return _Empty()  # the refusal is already on its way to the caller; open nothing more
        try:
            if flags & AVIO_FLAG_WRITE:
                raise self.refuse(f"refers to {safe_url(url)} for writing")
            f = self._open(url, options, main)
        except av.FFmpegError as e:
            if main:
                raise
            self.log.warning("source part unavailable; skipped", part=safe_url(url),
                             error=getattr(e, "strerror", None) or str(e))
            return _Empty()
        except OSError as e:
            if main:
                raise
            self.log.warning("source part unavailable; skipped", part=safe_url(url), error=e.strerror or str(e))
            return _Empty()
        except Exception:
            self.refused = True
            raise
        if main:
            self._files.append(f)  # FFmpeg closes the parts it opened; the source itself (custom I/O) it does not
        return f

    def close(self) -> None:
        """Close the source itself (after a failed open; otherwise it closes with its container)."""
        files, self._files = self._files, []
        for f in files:
            try:
                f.close()
            except Exception:
                pass

    # Complexity (~22) stays: one branch per URL kind FFmpeg may ask for (crypto, data, http(s), file).
    def _open(self, url: str, options: dict[str, str], main: bool) -> Any:
        # Complexity above 20 on purpose: every kind of URL FFmpeg may ask for is decided here, in
        # one place (anything not named here is refused), which is what makes the egress check whole.
        low = url[:10].lower()
        if low.startswith(("crypto+", "crypto:")):
            try:
                key, iv = bytes.fromhex(options.get("key", "")), bytes.fromhex(options.get("iv", ""))
            except ValueError:
                key = iv = b""
            if len(key) != 16 or len(iv) != 16:
                raise av.error.InvalidDataError(errno.EINVAL, "AES-128 segment without a usable key")
            return _Aes128Cbc(self._open(url[7:], options, main), key, iv)
        if low.startswith("data:"):
            try:
                return _Bytes(_data_url(url))
            except ValueError as e:
                raise av.error.InvalidDataError(errno.EINVAL, f"bad data: URL ({e})") from None
        scheme = urlsplit(url).scheme.lower()
        if scheme in ("http", "https"):
            if self.local:
                raise self.refuse(f"refers to {safe_url(url)}, and a local source may only refer to local files")
            start = int(options.get("offset") or 0)
            end = int(options["end_offset"]) if options.get("end_offset") else None
            label = "" if main else f"refers to {safe_url(url)}"

            def skipped(e: BaseException) -> None:  # as FFmpeg ends a segment on a read error
                self.log.warning("source part cut short; skipped", part=safe_url(url),
                                 error=getattr(e, "strerror", None) or str(e))

            f = HttpFile(url, timeout_s=self.timeout_s, label=label, refuse=self.refuse, start=start,
                         end=end if end and end > start else None, on_read_error=None if main else skipped)
            if main or f.final_url == url or not _is_playlist(f):
                return f
            try:  # a playlist the demuxer found, redirected: its entries resolve where it went
                return _Bytes(_absolutized(f.read_at_most(MAX_PLAYLIST_BYTES), f.final_url))
            finally:
                f.close()
        if scheme in ("", "file") or len(scheme) == 1:
            if not self.local:
                raise self.refuse(f"refers to the local file {safe_url(url)}; a network source may not")
            return self._open_file(unquote(urlsplit(url).path) if scheme == "file" else url, main)
        raise self.refuse(f"refers to {safe_url(url)}: only http(s) and local files are read")

    def _open_file(self, path: str, main: bool) -> Any:
        shown = "" if main else f"refers to {path}: "
        try:
            egress.check_local_path(path)
        except egress.DestinationRefused as e:
            raise self.refuse(f"{shown}{e}") from None
        f = open(path, "rb", buffering=0)  # FileIO: reads go straight to the kernel, in FFmpeg's block size
        try:
            egress.check_local_path(_opened_path(f, path))
        except egress.DestinationRefused as e:
            f.close()
            raise self.refuse(f"{shown}{e}") from None
        return f


# --- RTMP -------------------------------------------------------------------------------------------


def _rtmp_app(path: str) -> str:
    """The application name FFmpeg's RTMP client takes from a URL path (libavformat/rtmpproto.c)."""
    q = path.find("?")
    if q >= 0 and "slist=" in path[q:]:
        return path[1:q]
    if path.startswith("/ondemand/"):
        return "ondemand"
    p = path.find("/", 1 if path else 0)
    if p < 0:
        return ""
    rest = path[p + 1:]
    colon, slash = rest.find(":"), rest.find("/")
    if slash < 0 or (0 <= colon < slash):
        return path[1:p]
    return path[1:p + 1 + slash]


def pinned_rtmp(url: str, allowlist_env: str = egress.SOURCE_ALLOWLIST_ENV) -> tuple[str, dict[str, str]]:
    """The URL FFmpeg opens for an RTMP source, and its options: the host resolved once, checked,
    and replaced by the checked address, so FFmpeg never resolves it. The server still sees the
    name where RTMP carries it (tcUrl); the app and stream name are unchanged.

    RTMPS to an address loses SNI (FFmpeg's RTMP client cannot be given a TLS server name) and
    FFmpeg does not verify RTMPS certificates in any case. Raises DestinationRefused.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if scheme == "rtmps" else 1935)
    address = egress.resolve_checked(host, port, allowlist_env, "videoSrc")[0]
    ip = address.ip.split("%")[0]
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (f"{userinfo}@" if userinfo else "") + (f"[{ip}]" if ":" in ip else ip) + f":{port}"
    target = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    shown_host = f"[{host}]" if ":" in host else host
    return target, {"rtmp_tcurl": f"{scheme}://{shown_host}:{port}/{_rtmp_app(path)}"}
