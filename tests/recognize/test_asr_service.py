"""The emulated speech recognition service on the wire, with the real client: what it refuses
and the codes it answers with (Tencent's documented ones)."""
from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from emulator.asr import AsrService
from emulator.trtc import DEFAULT_SDK_APP_ID, DEFAULT_SDK_SECRET_KEY, usersig
from shared.asr import AsrConnection, AsrCredentials, AsrError, AsrOptions, wire

SECRET_ID, SECRET_KEY = "AKIDasrtest", "asr-test-secret-key"


@pytest.fixture(scope="module")
def service():
    s = AsrService(SECRET_ID, SECRET_KEY, {DEFAULT_SDK_APP_ID: DEFAULT_SDK_SECRET_KEY}, max_concurrency=2).start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _endpoint(service, monkeypatch):
    monkeypatch.setenv("ASR_ENDPOINT", service.endpoint)
    monkeypatch.setenv("ASR_ALLOWLIST", "127.0.0.0/8")


V3 = AsrCredentials(DEFAULT_SDK_APP_ID, usersig("asr-user"))
OPTIONS = AsrOptions("16k_en", 500)


def _error_of(conn: AsrConnection, timeout: float = 5.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for msg in conn.poll(0.2):
            if msg["code"] != 0:
                return msg
    raise AssertionError("no error answer")


def test_v3_and_v2_handshakes_answer_code_0_and_the_endpoint_is_checked(service):
    for creds in (V3, AsrCredentials(0, "", app_id=1250000000, secret_id=SECRET_ID, secret_key=SECRET_KEY)):
        conn = AsrConnection.open(creds, OPTIONS)
        conn.send_end()
        assert any(m.get("final") == 1 for m in conn.poll(2.0))
        conn.close()


@pytest.mark.parametrize("creds,why", [
    (AsrCredentials(DEFAULT_SDK_APP_ID, usersig("x", sdk_secret_key="another-key")), "usersig: UserSig signature does not match"),
    (AsrCredentials(1400000999, usersig("x")), "sdkappid 1400000999 has no speech recognition here"),
    (AsrCredentials(0, "", app_id=1250000000, secret_id=SECRET_ID, secret_key="wrong"), "signature does not match"),
])
def test_bad_credentials_are_4002(creds, why):
    with pytest.raises(AsrError) as e:
        AsrConnection.open(creds, OPTIONS)
    assert e.value.code == wire.AUTH_FAILED and why in e.value.message and e.value.fatal


def test_an_unknown_engine_is_4001():
    with pytest.raises(AsrError) as e:
        AsrConnection.open(V3, AsrOptions("8k_zh", 500))
    assert e.value.code == wire.INVALID_PARAMETER and "engine_model_type" in e.value.message


def test_the_concurrency_limit_is_4006_and_named(service):
    held = [AsrConnection.open(V3, OPTIONS) for _ in range(2)]
    try:
        with pytest.raises(AsrError) as e:
            AsrConnection.open(V3, OPTIONS)
        assert e.value.code == wire.CONCURRENCY_LIMIT and "limit (2 for sdkappid" in e.value.message
        assert "concurrency limit" in e.value.explain()
    finally:
        for c in held:
            c.close()


def test_audio_faster_than_real_time_is_4000():
    conn = AsrConnection.open(V3, OPTIONS)
    for _ in range(100):  # 4 s of audio at once: more than the 3 s lead the service allows
        try:
            conn.send_audio(bytes(wire.CHUNK_BYTES))
        except ConnectionClosed:  # refused and closed before the last chunk: its answer is already here
            break
    err = _error_of(conn)
    assert err["code"] == wire.TOO_FAST and "faster than real time" in err["message"]
    conn.close()


def test_no_audio_for_the_idle_limit_is_4008(service):
    service.backend.idle_timeout_s = 0.5
    try:
        conn = AsrConnection.open(V3, OPTIONS)
        assert _error_of(conn)["code"] == wire.UPLOAD_TIMEOUT
        conn.close()
    finally:
        service.backend.idle_timeout_s = 15.0


def test_unknown_text_is_4010_and_a_missing_start_frame_is_4001(service, monkeypatch):
    conn = AsrConnection.open(V3, OPTIONS)
    conn.ws.send('{"type": "pause"}')
    assert _error_of(conn)["code"] == wire.UNKNOWN_TEXT
    conn.close()
    monkeypatch.setattr(wire, "START_TIMEOUT_S", 0.3)
    with connect(f"{service.endpoint}/asr/v3?voice_id=quiet", open_timeout=5) as ws:
        msg = json.loads(ws.recv(timeout=5))
    assert msg["code"] == wire.INVALID_PARAMETER and "no start frame" in msg["message"]


def test_the_recogniser_hears_a_sentence_the_same_way_whatever_it_heard_before():
    """The emulated recogniser is deterministic: fresh feature computation and a fixed dither for
    every sentence, on a borrowed decoder as on a fresh one. (With pocketsphinx's own random dither
    and its cepstral mean carried over, the same "square" scored differently each time, and one run
    in a dozen of a classroom test heard something else.)"""
    import av

    from emulator.asr.recogniser import DecoderPool, Recogniser
    from emulator.classroom import speech

    def at_16k(text: str) -> bytes:
        pcm = speech(text)
        frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
        frame.planes[0].update(pcm)
        frame.sample_rate = 48000
        to_16k = av.AudioResampler(format="s16", layout="mono", rate=16000)
        out = to_16k.resample(frame) + to_16k.resample(None)
        return bytes(16000) + b"".join(bytes(f.planes[0])[:f.samples * 2] for f in out) + bytes(16000)

    def heard(pool: DecoderPool, pcm: bytes) -> tuple[list, float]:
        rec = Recogniser(pool, ["triangle", "square", "circle"])
        rec.begin()
        for i in range(0, len(pcm), 1280):  # 40 ms chunks, as the service is fed
            rec.feed(pcm[i:i + 1280])
        words = rec.end(0)
        score = rec._general.hyp().score
        rec.close()
        return [(w.word, w.start_time, w.end_time) for w in words], score

    square, other = at_16k("square"), at_16k("i think it is a triangle")
    pool = DecoderPool()
    first = heard(pool, square)
    assert [w for w, _, _ in first[0]] == ["square"]
    heard(pool, other)  # the same decoders, after another sentence
    assert heard(pool, square) == first
    assert heard(DecoderPool(), square) == first  # fresh decoders
