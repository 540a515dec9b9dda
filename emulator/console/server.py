"""The console's wire: a small werkzeug app on 127.0.0.1 serving the page (static/, no outside
asset), JSON for the lists, Server-Sent Events for what updates live (runs, a run's log, rooms) and
one chunked binary stream per watched member (the room's own framing, see media.py).

    GET  /                              the page (index.html + console.js + watch.js + console.css)
    GET  /api/info                      the emulator's application, bucket, Redis, functions
    GET  /api/runs | /api/runs/events   every run, newest first (events: the list each time it changes)
    GET  /api/runs/<id>                 one run: event (redacted), result, error
    GET  /api/runs/<id>/log             SSE: the log's lines as they are written, then "end"
    GET  /api/runs/<id>/transcript[/events]  a recognize_stream run's sentences and COS files (events: live)
    POST /api/runs/<id>/terminate       {"grace": bool} -> TerminateAsyncEvent
    GET  /api/rooms | /api/rooms/events every room, its members, each stream's live figures, each anchor's captions
    POST /api/rooms/remove-user         {"sdkAppId", "roomId", "strRoom", "userIds"} -> RemoveUser
    POST /api/rooms/dismiss             {"sdkAppId", "roomId", "strRoom"} -> DismissRoom
    GET  /api/watch?app=&room=&str=&user=   a member's H.264 + Opus as relayed, from a key frame on
    GET  /api/captions[/events]?app=&room=&str=&user=   the member's last recognised sentences (captions.py)
    GET  /api/recordings                every bucket's objects
    GET  /api/cos/<bucket>/<key>        an object (Range requests: the page's <video> seeks)
    GET  /api/usersig?userId=           a UserSig for the emulator's application
    POST /api/start/<function>          the body, POSTed to the gateway; its x-scf-reqid

Only 127.0.0.1 / localhost Host headers are served (no DNS rebinding), and a POST must be JSON
from the console's own origin (a page elsewhere cannot press its buttons).
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler
from werkzeug.wrappers import Request, Response

from emulator.asr.models import AsrBackend
from emulator.cos.models import CosState
from emulator.httpserver import HttpServer
from emulator.scf.exceptions import ScfError
from emulator.scf.models import Scf
from emulator.trtc.models import Rooms
from shared.room.base import RoomRef

from . import views
from .actions import ActionError, Actions
from .captions import Captions
from .media import MediaTap

log = logging.getLogger("emulator.console")

STATIC = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
POLL_S = 0.25  # how often a live list looks at the models for a change
CAPTIONS_EVERY_S = 0.25
TRANSCRIPT_EVERY_S = 0.5
ROOMS_EVERY_S = 1.0
KEEPALIVE_S = 5.0
MAX_POST = 256 * 1024


class _Handler(WSGIRequestHandler):
    def setup(self) -> None:
        super().setup()
        # Media goes out as many small writes; without this Nagle holds them back for an ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log_error(self, *args: Any) -> None:
        pass


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False, default=str), status, mimetype="application/json",
                    headers={"Cache-Control": "no-store"})


def _error(status: int, code: str, message: str) -> Response:
    return _json({"error": {"code": code, "message": message}}, status)


def _sse(payload: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(payload, ensure_ascii=False, default=str)}\n\n".encode()


class Console:
    def __init__(self, *, scf: Scf, rooms: Rooms, buckets: list[CosState], gateway_url: str, sdk_app_id: int,
                 sdk_secret_key: str, redis: dict[str, Any] | None = None, host: str = "127.0.0.1", port: int = 0,
                 asr: AsrBackend | None = None):
        self.scf, self.rooms, self.buckets = scf, rooms, buckets
        self.tap = MediaTap()
        self.captions = Captions(scf, buckets, asr)
        self.actions = Actions(scf, rooms, gateway_url, sdk_app_id, sdk_secret_key)
        self.info = {"sdkAppId": sdk_app_id, "gateway": gateway_url, "redis": redis,
                     "cos": [{"bucket": b.bucket, "region": b.region} for b in buckets]}
        self._host, self._port = host, port
        self._closing = threading.Event()
        self._http: HttpServer | None = None
        self._routes = Map([
            Rule("/", endpoint="index"),
            Rule("/static/<name>", endpoint="static"),
            Rule("/api/info", endpoint="info"),
            Rule("/api/runs", endpoint="runs"),
            Rule("/api/runs/events", endpoint="runs_events"),
            Rule("/api/runs/<request_id>", endpoint="run"),
            Rule("/api/runs/<request_id>/log", endpoint="run_log"),
            Rule("/api/runs/<request_id>/terminate", endpoint="terminate", methods=["POST"]),
            Rule("/api/runs/<request_id>/transcript", endpoint="transcript"),
            Rule("/api/runs/<request_id>/transcript/events", endpoint="transcript_events"),
            Rule("/api/rooms", endpoint="rooms"),
            Rule("/api/rooms/events", endpoint="rooms_events"),
            Rule("/api/rooms/remove-user", endpoint="remove_user", methods=["POST"]),
            Rule("/api/rooms/dismiss", endpoint="dismiss", methods=["POST"]),
            Rule("/api/watch", endpoint="watch"),
            Rule("/api/captions", endpoint="captions"),
            Rule("/api/captions/events", endpoint="captions_events"),
            Rule("/api/recordings", endpoint="recordings"),
            Rule("/api/cos/<bucket>/<path:key>", endpoint="cos_object"),
            Rule("/api/usersig", endpoint="usersig"),
            Rule("/api/start/<function>", endpoint="start", methods=["POST"]),
        ], strict_slashes=False)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "Console":
        # A new list rather than a change to the one a relay may be going through on its thread.
        self.rooms.taps = [*self.rooms.taps, self.tap.on_media]
        self._http = HttpServer(self, self._host, self._port, name="console", poll_interval=0.1,
                                request_handler=_Handler).start()
        return self

    def stop(self) -> None:
        self._closing.set()  # every live stream ends at its next look
        self.rooms.taps = [t for t in self.rooms.taps if t != self.tap.on_media]
        if self._http is not None:
            self._http.stop()
            self._http = None

    @property
    def port(self) -> int:
        assert self._http is not None
        return self._http.port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}/"

    # --- WSGI --------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = MAX_POST
        try:
            refused = self._refuse(request)
            if refused is not None:
                response = refused
            else:
                endpoint, args = self._routes.bind_to_environ(environ).match()
                response = getattr(self, f"_{endpoint}")(request, **args)
        except NotFound:
            response = _error(404, "NotFound", f"nothing at {request.path}")
        except HTTPException as e:
            response = _error(e.code or 400, type(e).__name__, e.description or str(e))
        except ActionError as e:
            response = _error(e.status, e.code, e.message)
        except ScfError as e:
            response = _error(e.status if 400 <= e.status < 500 else 409, e.code, e.message)
        except Exception as e:  # a console bug is a 500 with its message, never a stack trace in the page
            log.exception("console request %s failed", request.path)
            response = _error(500, "InternalError", f"{type(e).__name__}: {e}")
        return response(environ, start_response)

    def _refuse(self, request: Request) -> Response | None:
        host = (request.host or "").lower()
        allowed = {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}
        if host not in allowed:
            return _error(403, "Forbidden", f"the console answers to {self.url} only (Host was {request.host!r})")
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if origin is not None and origin.lower().rstrip("/") not in {f"http://{h}" for h in allowed}:
                return _error(403, "Forbidden", "a POST must come from the console's own page")
            if request.mimetype != "application/json":
                return _error(415, "UnsupportedMediaType", "send the request body as application/json")
        return None

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(request.get_data() or b"{}")
        except ValueError as e:
            raise ActionError("InvalidParameter", f"the body is not valid JSON: {e}", 400) from None
        if not isinstance(body, dict):
            raise ActionError("InvalidParameter", "the body must be a JSON object", 400)
        return body

    def _stream(self, chunks: Iterator[bytes], mimetype: str) -> Response:
        return Response(chunks, mimetype=mimetype, direct_passthrough=True,
                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    def _live(self, snapshot: Callable[[], Any], every: float, event: str) -> Response:
        """SSE: the snapshot now, then again whenever it changes (looked at every `every` s)."""
        def chunks() -> Iterator[bytes]:
            last, last_sent = None, 0.0
            while not self._closing.is_set():
                text = json.dumps(snapshot(), ensure_ascii=False, default=str)
                now = time.monotonic()
                if text != last:
                    last, last_sent = text, now
                    yield f"event: {event}\ndata: {text}\n\n".encode()
                elif now - last_sent > KEEPALIVE_S:
                    last_sent = now
                    yield b": keep-alive\n\n"  # also how a closed tab is noticed
                self._closing.wait(every)
        return self._stream(chunks(), "text/event-stream")

    # --- the page ----------------------------------------------------------------------------

    def _index(self, request: Request) -> Response:
        return self._static(request, "index.html")

    def _static(self, request: Request, name: str) -> Response:
        path = (STATIC / name).resolve()
        if path.parent != STATIC or not path.is_file():
            raise NotFound()
        return Response(path.read_bytes(), mimetype=STATIC_TYPES.get(path.suffix, "application/octet-stream"),
                        headers={"Cache-Control": "no-cache"})

    def _info(self, request: Request) -> Response:
        return _json({**self.info, "functions": sorted(self.scf.functions)})

    # --- runs --------------------------------------------------------------------------------

    def _runs(self, request: Request) -> Response:
        return _json({"runs": views.runs_list(self.scf)})

    def _runs_events(self, request: Request) -> Response:
        return self._live(lambda: {"runs": views.runs_list(self.scf)}, POLL_S, "runs")

    def _run(self, request: Request, request_id: str) -> Response:
        return _json(views.run_detail(self.scf.get(request_id)))

    def _run_log(self, request: Request, request_id: str) -> Response:
        run = self.scf.get(request_id)
        tail = views.LogTail(run.log_path)
        tail.start_near_end()
        skipped = tail.skipped

        def chunks() -> Iterator[bytes]:
            if skipped:
                yield _sse({"omitted": True})
            last_sent = time.monotonic()
            while not self._closing.is_set():
                done = run.done.is_set()  # read before the file: nothing is written after done
                lines = tail.rest() if done else tail.read()
                if lines:
                    last_sent = time.monotonic()
                    yield _sse({"lines": [views.parse_log_line(ln) for ln in lines]})
                if done:
                    yield _sse(views.run_detail(run), "end")
                    return
                if time.monotonic() - last_sent > KEEPALIVE_S:
                    last_sent = time.monotonic()
                    yield b": keep-alive\n\n"
                run.done.wait(POLL_S)
        return self._stream(chunks(), "text/event-stream")

    def _transcript(self, request: Request, request_id: str) -> Response:
        return _json(self.captions.transcript(self.scf.get(request_id)))

    def _transcript_events(self, request: Request, request_id: str) -> Response:
        run = self.scf.get(request_id)
        return self._live(lambda: self.captions.transcript(run), TRANSCRIPT_EVERY_S, "transcript")

    def _terminate(self, request: Request, request_id: str) -> Response:
        grace = self._body(request).get("grace")
        if not isinstance(grace, bool):
            raise ActionError("InvalidParameter.GraceShutdown", "`grace` must be true or false", 400)
        self.actions.terminate(request_id, grace)
        return _json(views.run_detail(self.scf.get(request_id)))

    # --- rooms -------------------------------------------------------------------------------

    def _rooms(self, request: Request) -> Response:
        return _json({"rooms": views.rooms_view(self.rooms, self.tap, self.captions)})

    def _rooms_events(self, request: Request) -> Response:
        return self._live(lambda: {"rooms": views.rooms_view(self.rooms, self.tap, self.captions)}, ROOMS_EVERY_S, "rooms")

    def _remove_user(self, request: Request) -> Response:
        b = self._body(request)
        return _json(self.actions.remove_users(b.get("sdkAppId"), b.get("roomId"), bool(b.get("strRoom")),
                                               b.get("userIds")))

    def _dismiss(self, request: Request) -> Response:
        b = self._body(request)
        return _json(self.actions.dismiss(b.get("sdkAppId"), b.get("roomId"), bool(b.get("strRoom"))))

    @staticmethod
    def _member(request: Request, what: str) -> tuple[int, RoomRef, str]:
        """(app, room, user) from ?app=&room=&str=&user= (the Watch page's query)."""
        q = request.args
        try:
            app = int(q.get("app", ""))
            room_id: int | str = q.get("room", "")
            ref = RoomRef(room_id if q.get("str") == "1" else int(room_id))
        except ValueError:
            raise ActionError("InvalidParameter", f"{what} needs app (an integer), room, str (0 or 1) and user",
                              400) from None
        return app, ref, q.get("user", "")

    def _captions(self, request: Request) -> Response:
        app, ref, user = self._member(request, "captions")
        return _json({"userId": user, "captions": self.captions.for_anchor((app, ref.key), user)})

    def _captions_events(self, request: Request) -> Response:
        app, ref, user = self._member(request, "captions")
        return self._live(lambda: {"userId": user, "captions": self.captions.for_anchor((app, ref.key), user)},
                          CAPTIONS_EVERY_S, "captions")

    def _watch(self, request: Request) -> Response:
        app, ref, user = self._member(request, "watch")
        key = (app, ref.key, user)
        member = views.find_member(self.rooms, app, ref.key, user)
        if member is None:
            raise ActionError("FailedOperation.UserNotExist", f"{user!r} is not in room {ref.id!r} (any more)", 404)
        if not (member["audio"] or member["video"]):
            raise ActionError("FailedOperation.NotPublishing", f"{user!r} publishes nothing", 409)
        watcher = self.tap.watch(key)

        def chunks() -> Iterator[bytes]:
            from shared.room import wire

            try:
                yield wire.encode({"t": "hello", "user": user, "room": ref.id, "app": app,
                                   "video": bool(member["video"]), "audio": bool(member["audio"])})
                last_look = time.monotonic()
                while not self._closing.is_set():
                    messages = watcher.take(0.5)
                    if messages:
                        yield b"".join(m.encode() for m in messages)
                    if time.monotonic() - last_look > 1.0:
                        last_look = time.monotonic()
                        now = views.find_member(self.rooms, app, ref.key, user)
                        if now is None or not (now["audio"] or now["video"]):
                            yield wire.encode({"t": "closed", "msg": f"{user} left the room or stopped publishing"})
                            return
                        if not messages:
                            yield wire.encode({"t": "idle"})  # also how a closed tab is noticed
            finally:
                self.tap.unwatch(watcher)
        return self._stream(chunks(), "application/octet-stream")

    # --- recordings --------------------------------------------------------------------------

    def _recordings(self, request: Request) -> Response:
        return _json({"buckets": views.recordings_view(self.buckets)})

    def _cos_object(self, request: Request, bucket: str, key: str) -> Response:
        state = next((b for b in self.buckets if b.bucket == bucket), None)
        data = state.read(key) if state is not None else None
        if data is None:
            raise ActionError("NoSuchKey", f"no object {key!r} in bucket {bucket!r} (any more)", 404)
        response = Response(data, mimetype=views.content_type(key), headers={"Cache-Control": "no-store"})
        return response.make_conditional(request, accept_ranges=True, complete_length=len(data))

    # --- start -------------------------------------------------------------------------------

    def _usersig(self, request: Request) -> Response:
        user = request.args.get("userId", "")
        return _json({"sdkAppId": self.actions.sdk_app_id, "userId": user, "userSig": self.actions.usersig(user)})

    def _start(self, request: Request, function: str) -> Response:
        self._body(request)  # JSON, or refused here with the reason
        return _json(self.actions.start(function, request.get_data()))
