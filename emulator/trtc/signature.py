"""TRTC UserSig (TLS sig v2): generate and verify.

A UserSig is zlib-compressed JSON {TLS.ver, TLS.identifier, TLS.sdkappid, TLS.expire, TLS.time,
TLS.sig[, TLS.userbuf]}, in TRTC's base64 variant ('+' -> '*', '/' -> '-', '=' -> '_'). TLS.sig is
base64 HMAC-SHA256, keyed by the application's secret key, over the documented fields as
"TLS.<name>:<value>\\n" lines. It is valid from TLS.time for TLS.expire seconds.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import zlib
from dataclasses import dataclass
from typing import Any

DEFAULT_EXPIRE_S = 180 * 86400
VERSION = "2.0"
_TO_TRTC = str.maketrans({"+": "*", "/": "-", "=": "_"})
_FROM_TRTC = str.maketrans({"*": "+", "-": "/", "_": "="})
MAX_USERSIG_LEN = 4096


class UserSigError(ValueError):
    """Why a UserSig is not valid (bad encoding, wrong app or user, expired, bad signature)."""


@dataclass(frozen=True)
class UserSigInfo:
    sdk_app_id: int
    user_id: str
    issued_at: int
    expire_s: int
    userbuf: bytes | None = None

    @property
    def expires_at(self) -> int:
        return self.issued_at + self.expire_s


def _b64_trtc(data: bytes) -> str:
    return base64.b64encode(data).decode().translate(_TO_TRTC)


def _unb64_trtc(text: str) -> bytes:
    return base64.b64decode(text.translate(_FROM_TRTC), validate=True)


def _hmac_field(key: str, user_id: str, sdk_app_id: int, issued: int, expire: int, userbuf_b64: str | None) -> str:
    content = (f"TLS.identifier:{user_id}\n" f"TLS.sdkappid:{sdk_app_id}\n"
               f"TLS.time:{issued}\n" f"TLS.expire:{expire}\n")
    if userbuf_b64 is not None:
        content += f"TLS.userbuf:{userbuf_b64}\n"
    return base64.b64encode(hmac.new(key.encode(), content.encode(), hashlib.sha256).digest()).decode()


def generate(sdk_app_id: int, secret_key: str, user_id: str, expire_s: int = DEFAULT_EXPIRE_S,
             userbuf: bytes | None = None, now: int | None = None) -> str:
    issued = int(time.time()) if now is None else int(now)
    doc: dict[str, object] = {
        "TLS.ver": VERSION,
        "TLS.identifier": str(user_id),
        "TLS.sdkappid": int(sdk_app_id),
        "TLS.expire": int(expire_s),
        "TLS.time": issued,
    }
    userbuf_b64 = None
    if userbuf is not None:
        userbuf_b64 = base64.b64encode(userbuf).decode()
        doc["TLS.userbuf"] = userbuf_b64
    doc["TLS.sig"] = _hmac_field(secret_key, str(user_id), int(sdk_app_id), issued, int(expire_s), userbuf_b64)
    return _b64_trtc(zlib.compress(json.dumps(doc).encode()))


def decode(user_sig: str) -> dict[str, Any]:
    """The UserSig's JSON document, unverified (JSON values: checked by whoever reads them)."""
    if not isinstance(user_sig, str) or not user_sig or len(user_sig) > MAX_USERSIG_LEN:
        raise UserSigError("UserSig is empty or too long")
    try:
        raw = zlib.decompress(_unb64_trtc(user_sig.strip()), bufsize=4096)
        doc = json.loads(raw)
    except (binascii.Error, ValueError, zlib.error) as e:
        raise UserSigError(f"UserSig is not a TLS sig v2 string: {e}") from None
    if not isinstance(doc, dict):
        raise UserSigError("UserSig is not a TLS sig v2 string: not a JSON object")
    return doc


def verify(user_sig: str, sdk_app_id: int, secret_key: str, user_id: str, now: int | None = None) -> UserSigInfo:
    """Check a UserSig for this app and user; raise UserSigError saying what is wrong."""
    doc = decode(user_sig)
    try:
        sig_app = int(doc["TLS.sdkappid"])
        sig_user = str(doc["TLS.identifier"])
        issued = int(doc["TLS.time"])
        expire = int(doc["TLS.expire"])
        sig = str(doc["TLS.sig"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserSigError(f"UserSig lacks a field: {e}") from None
    userbuf_b64 = doc.get("TLS.userbuf")
    if userbuf_b64 is not None and not isinstance(userbuf_b64, str):
        raise UserSigError("UserSig has a malformed TLS.userbuf")
    if sig_app != int(sdk_app_id):
        raise UserSigError(f"UserSig was issued for sdkAppId {sig_app}, not {sdk_app_id}")
    if sig_user != str(user_id):
        raise UserSigError(f"UserSig was issued for userId {sig_user!r}, not {user_id!r}")
    expected = _hmac_field(secret_key, sig_user, sig_app, issued, expire, userbuf_b64)
    if not hmac.compare_digest(expected, sig):
        raise UserSigError("UserSig signature does not match (wrong secret key or tampered)")
    current = int(time.time()) if now is None else int(now)
    if current > issued + expire:
        raise UserSigError(f"UserSig expired {current - issued - expire} s ago")
    userbuf = base64.b64decode(userbuf_b64) if userbuf_b64 else None
    return UserSigInfo(sig_app, sig_user, issued, expire, userbuf)
