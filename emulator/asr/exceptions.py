"""The errors of the emulated speech recognition service, with the real service's codes (shared.asr.wire)."""
from __future__ import annotations

from shared.asr import wire


class AsrError(Exception):
    """A refusal or failure the service answers with `{"code": code, "message": ...}` and a close."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message


def auth_failed(why: str) -> AsrError:
    return AsrError(wire.AUTH_FAILED, f"authentication failed: {why}")


def invalid(why: str) -> AsrError:
    return AsrError(wire.INVALID_PARAMETER, f"invalid parameter: {why}")


def concurrency(app: str, limit: int) -> AsrError:
    return AsrError(wire.CONCURRENCY_LIMIT,
                    f"the account's concurrent recognitions exceed its limit ({limit} for {app})")


def too_fast(ahead_ms: int) -> AsrError:
    return AsrError(wire.TOO_FAST, f"audio sent faster than real time ({ahead_ms} ms ahead of the clock); "
                                   "send 40 ms of audio every 40 ms")


def upload_timeout(seconds: float) -> AsrError:
    return AsrError(wire.UPLOAD_TIMEOUT, f"no audio from the client for {seconds:g} s")


def unknown_text(text: str) -> AsrError:
    return AsrError(wire.UNKNOWN_TEXT, f"unknown text message from the client: {text[:80]!r}")
