"""UserSig: cross-checked against Tencent's own tls-sig-api-v2 package."""
import base64
import json
import time
import zlib

import pytest
import TLSSigAPIv2

from emulator.trtc import signature as usersig
from emulator.trtc.signature import UserSigError

APP = 1400000001
KEY = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"


def test_tencent_generated_sig_verifies_with_ours():
    sig = TLSSigAPIv2.TLSSigAPIv2(APP, KEY).gen_sig("alice", 3600)
    info = usersig.verify(sig, APP, KEY, "alice")
    assert (info.sdk_app_id, info.user_id, info.expire_s) == (APP, "alice", 3600)


def test_ours_matches_tencent_byte_for_byte_at_the_same_second(monkeypatch):
    now = int(time.time())
    monkeypatch.setattr(time, "time", lambda: now)
    theirs = TLSSigAPIv2.TLSSigAPIv2(APP, KEY).gen_sig("bob", 86400)
    ours = usersig.generate(APP, KEY, "bob", 86400, now=now)
    assert ours == theirs


def test_userbuf_round_trip_matches_tencent(monkeypatch):
    now = int(time.time())
    monkeypatch.setattr(time, "time", lambda: now)
    theirs = TLSSigAPIv2.TLSSigAPIv2(APP, KEY).gen_sig_with_userbuf("carol", 600, b"room-7")
    assert usersig.generate(APP, KEY, "carol", 600, userbuf=b"room-7", now=now) == theirs
    assert usersig.verify(theirs, APP, KEY, "carol").userbuf == b"room-7"


def test_expired():
    sig = usersig.generate(APP, KEY, "dave", expire_s=10, now=int(time.time()) - 20)
    with pytest.raises(UserSigError, match="expired"):
        usersig.verify(sig, APP, KEY, "dave")


@pytest.mark.parametrize("app,key,user,match", [
    (APP, "another-key", "erin", "signature does not match"),
    (1400000002, KEY, "erin", "sdkAppId 1400000001"),
    (APP, KEY, "mallory", "userId 'erin'"),
])
def test_wrong_key_app_or_user(app, key, user, match):
    sig = usersig.generate(APP, KEY, "erin")
    with pytest.raises(UserSigError, match=match):
        usersig.verify(sig, app, key, user)


def test_tampered_fields_are_refused():
    sig = usersig.generate(APP, KEY, "frank", expire_s=60)
    raw = json.loads(zlib.decompress(base64.b64decode(sig.replace("*", "+").replace("-", "/").replace("_", "="))))
    raw["TLS.expire"] = 10**9  # stretch the lifetime without re-signing
    forged = base64.b64encode(zlib.compress(json.dumps(raw).encode())).decode()
    forged = forged.replace("+", "*").replace("/", "-").replace("=", "_")
    with pytest.raises(UserSigError, match="signature does not match"):
        usersig.verify(forged, APP, KEY, "frank")


@pytest.mark.parametrize("garbage", ["", "not-a-sig", "eJw_", "x" * 5000])
def test_garbage_is_a_clear_error(garbage):
    with pytest.raises(UserSigError):
        usersig.verify(garbage, APP, KEY, "x")
