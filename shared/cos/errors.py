"""COS errors, classified once: every failure of a COS call becomes an `UploadError` naming COS's
error code, what was being done, and what to check (in the terms of record_stream's parameters).

- `UploadError`     "upload failed: <COS error code>: <what to check>"; `.retryable` for 5xx, 408,
                    429 and network errors (the only ones a retry can fix)
- `AlreadyExists`   a create-once write (x-cos-forbid-overwrite) found its key taken
- `classify(exc)`   the SDK's CosServiceError / CosClientError (or an OSError) as an UploadError
"""
from __future__ import annotations

from typing import Any

# What to check, per COS error code, said in the terms of the function's parameters.
HINTS = {
    "SignatureDoesNotMatch": "check CosConfig.SecretKey",
    "InvalidAccessKeyId": "check CosConfig.SecretId (temporary credentials also need their session token)",
    "AccessDenied": "the credentials may not use this bucket and path: a recording needs cos:HeadBucket, "
                    "cos:PutObject and the multipart upload actions on it",
    "NoSuchBucket": "check CosConfig.Bucket (name-APPID) and CosConfig.Region",
    "RequestTimeTooSkewed": "the machine's clock is off",
    "InvalidToken": "the temporary credentials' session token is invalid or expired",
    "ExpiredToken": "the temporary credentials have expired",
}


UPLOAD_FAILED = "upload failed"
CHECK_FAILED = "CosConfig cannot be used"  # the start check's prefix (check_access)


class UploadError(Exception):
    """An upload that did not succeed. `str(e)` starts with "upload failed: " and a COS error code."""

    def __init__(self, message: str, code: str, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.retryable = retryable

    @property
    def detail(self) -> str:
        """The message without its "upload failed: " (or "CosConfig cannot be used: ") prefix."""
        return self.message.split(": ", 1)[-1]


class AlreadyExists(UploadError):
    """A create-once write (x-cos-forbid-overwrite) found the key taken."""


def _error_code(exc: Any, status: int | None) -> str:
    try:  # a HEAD answer has no body: the SDK then holds the headers, which have no code
        code = exc.get_error_code()
    except (KeyError, TypeError):
        code = None
    if code == "Unknown":  # what the SDK says when it found no code
        code = None
    if code == "NoSuchResource":  # the SDK's name for a HEAD 404
        code = "NoSuchKey"
    return code or (f"HTTP{status}" if status else "Unknown")


def classify(exc: Exception, what: str, prefix: str = UPLOAD_FAILED) -> UploadError:
    from qcloud_cos.cos_exception import CosClientError, CosServiceError

    if isinstance(exc, UploadError):
        return exc
    if isinstance(exc, CosServiceError):
        status = exc.get_status_code()
        code = _error_code(exc, status)
        try:
            msg = (exc.get_error_msg() or "").strip()
        except (KeyError, TypeError):
            msg = ""
        if msg == "Unknown":
            msg = ""
        hint = HINTS.get(code)
        text = f"{prefix}: {code}"
        if msg:
            text += f": {msg}"
        text += f" (HTTP {status} on {what}" + (f"; {hint})" if hint else ")")
        retryable = status is None or status >= 500 or status in (408, 429)
        return UploadError(text, code, status, retryable)
    if isinstance(exc, CosClientError):
        return UploadError(f"{prefix}: network error on {what}: {exc}", "NetworkError", None, True)
    if isinstance(exc, OSError):
        return UploadError(f"{prefix}: cannot read the file: {exc}", "FileError", None, False)
    return UploadError(f"{prefix}: {type(exc).__name__}: {exc}", "InternalError", None, False)
