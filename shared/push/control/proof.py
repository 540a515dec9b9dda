"""What a push_control call must prove: that it speaks for whoever started the push.

A push keeps in its registration only salted hashes of what its starter holds: the `userSig` it
entered the room with, and the `controlToken` the starter chose (optional). A control call presents
either one; naming a requestId is not proof (request ids show in logs, consoles and callbacks).

The hash is scrypt (n=2**14, r=8, p=1: the scrypt paper's interactive-login cost, ~16 MiB and tens of
ms once per call) with a random 16-byte salt per push. Why not a plain salted SHA-256: whoever can
read the Redis could then try guesses at a weak controlToken at billions a second; a userSig is
high-entropy, but a token is whatever the caller chose. The comparison is hmac.compare_digest, and
a call for a push that does not exist does the same hash work against a dummy record, so the time
of an answer tells nothing about whether the push exists.

A warm instance (SCF keeps one between calls) remembers the credentials it has already proven, by
(salt, stored hash, SHA-256 of the credential), so a controller's second call skips the scrypt work:
push_control's round trip is most of the AI class's answer-to-feedback latency. Only successes are
remembered; a refusal always costs the full hash, so timing still tells nothing to a guesser.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections import OrderedDict
from typing import Mapping, Optional

SALT_BYTES = 16
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1, "dklen": 32, "maxmem": 64 * 1024 * 1024}
SALT_FIELD, SIG_FIELD, TOKEN_FIELD = "authSalt", "userSigHash", "controlTokenHash"


def _digest(secret: str, salt_hex: str) -> str:
    return hashlib.scrypt(secret.encode("utf-8"), salt=bytes.fromhex(salt_hex), **_SCRYPT).hex()


_PROVEN: OrderedDict[tuple[str, str, str], None] = OrderedDict()
_PROVEN_MAX = 256
_proven_lock = threading.Lock()


def _matches(secret: str, salt_hex: str, expected: str) -> bool:
    key = (salt_hex, expected, hashlib.sha256(secret.encode("utf-8")).hexdigest())
    with _proven_lock:
        if key in _PROVEN:
            _PROVEN.move_to_end(key)
            return True
    ok = hmac.compare_digest(_digest(secret, salt_hex), expected)
    if ok:
        with _proven_lock:
            _PROVEN[key] = None
            while len(_PROVEN) > _PROVEN_MAX:
                _PROVEN.popitem(last=False)
    return ok


# Stands in for a push that is not there (or has no token): same work, never a match.
_DUMMY_SALT = os.urandom(SALT_BYTES).hex()
_NEVER = os.urandom(32).hex()


def registration_fields(user_sig: Optional[str], control_token: Optional[str]) -> dict[str, str]:
    """The fields a push keeps in its registration: the salt and the hashes (empty when absent)."""
    salt = os.urandom(SALT_BYTES).hex()
    return {SALT_FIELD: salt,
            SIG_FIELD: _digest(user_sig, salt) if user_sig else "",
            TOKEN_FIELD: _digest(control_token, salt) if control_token else ""}


def proves(record: Optional[Mapping[str, str]], user_sig: Optional[str], control_token: Optional[str]) -> bool:
    """True when `user_sig` or `control_token` matches the registration `record`. Hashes every
    credential presented, whether the record exists or has that hash, so the time is the same."""
    salt = (record or {}).get(SALT_FIELD) or ""
    try:
        bytes.fromhex(salt)
    except ValueError:
        salt = ""
    if len(salt) != SALT_BYTES * 2:
        record, salt = None, _DUMMY_SALT
    ok = False
    for secret, name in ((user_sig, SIG_FIELD), (control_token, TOKEN_FIELD)):
        if not secret:
            continue
        expected = (record or {}).get(name) or _NEVER
        ok = _matches(secret, salt, expected) or ok
    return ok and record is not None
