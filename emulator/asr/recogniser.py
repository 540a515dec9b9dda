"""The recogniser behind the emulated service: pocketsphinx's English model, biased by hotwords.

Measured on espeak-ng speech, the general model hears short answers poorly ("square" -> "where")
while a grammar made only of the expected words names them well and, when none of them was said,
matches silence. So each sentence is decoded twice: free speech with the general model, and the
`hotword_list` grammar over the same audio; a hotword the grammar found replaces the general
model's words in the same span of time.

Deterministic: the same sentence is heard the same way whatever was heard before it. Each sentence
starts with fresh feature computation (pocketsphinx's cepstral mean and noise estimate carry over
from sentence to sentence otherwise), and its dither (noise in each sample's lowest bit, so that
digital silence has a log energy) is a fixed sequence started afresh, not pocketsphinx's random one.
Before, the same "square" scored differently each time, and a classroom test failed one run in a
dozen.
"""
from __future__ import annotations

import random
import re
import threading
from array import array
from dataclasses import dataclass

from pocketsphinx import Decoder

from shared.asr.wire import Word

FRAME_MS = 10  # pocketsphinx's frame rate: 100 a second
_FILLER = re.compile(r"^(<.*>|\[.*\])$")
_ALTERNATE = re.compile(r"\(\d+\)$")  # "where(2)": the dictionary's second pronunciation
_WORD = re.compile(r"^[a-z][a-z']*$")
_DITHER_BYTES = 32_000  # one second of 16 kHz s16: the dither repeats each second
# Each sample's low byte gets a random lowest bit, its high byte nothing; twice over, so that any
# second-long stretch from any even offset can be taken without wrapping.
_rng = random.Random(0)
_DITHER = bytes(b for _ in range(_DITHER_BYTES // 2) for b in (_rng.getrandbits(1), 0)) * 2


@dataclass
class _Seg:
    word: str
    start_ms: int
    end_ms: int


class DecoderPool:
    """Decoders are slow to make (the language model loads in ~0.5 s): sessions borrow them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._general: list[Decoder] = []
        self._grammar: list[Decoder] = []

    def take(self, grammar: bool) -> Decoder:
        with self._lock:
            free = self._grammar if grammar else self._general
            if free:
                return free.pop()
        # No dither of pocketsphinx's own: `dithered` adds a fixed one (see the module's doc).
        if grammar:
            return Decoder(samprate=16000, loglevel="FATAL", lm=None, cmn="batch")
        return Decoder(samprate=16000, loglevel="FATAL")

    def give(self, decoder: Decoder, grammar: bool) -> None:
        with self._lock:
            (self._grammar if grammar else self._general).append(decoder)

    def warm(self) -> None:
        """Make one general decoder now (loads the model) so the first session does not wait for it."""
        self.give(self.take(False), False)


def hotword_list(text: str) -> list[str]:
    """`hotword_list` as the service takes it ("word|weight,word|weight"): the words this model knows."""
    words = []
    for item in text.split(","):
        word = item.split("|")[0].strip().lower()
        if word and all(_WORD.match(w) for w in word.split()):
            words.append(word)
    return list(dict.fromkeys(words))


class Recogniser:
    """One session's recogniser: audio of one sentence in, its words (with times) out."""

    def __init__(self, pool: DecoderPool, hotwords: list[str]):
        self._pool = pool
        self._general = pool.take(False)
        self._grammar = pool.take(True) if hotwords else None
        self.hotwords = [w for w in hotwords if self._known(w)]
        if self._grammar is not None and self.hotwords:
            alternatives = " | ".join(self.hotwords)
            self._grammar.add_jsgf_string("hotwords", "#JSGF V1.0;\ngrammar hotwords;\n"
                                          f"public <s> = <w>+ ;\n<w> = {alternatives} ;\n")
            self._grammar.activate_search("hotwords")
        self._in_utt = False
        self._audio = bytearray()

    def _known(self, phrase: str) -> bool:
        return all(self._general.lookup_word(w) is not None for w in phrase.split())

    def begin(self) -> None:
        self._general.reinit_feat()  # what it heard before is forgotten (0.1 ms; the models stay)
        self._general.start_utt()
        self._in_utt = True
        self._audio.clear()

    def feed(self, pcm: bytes) -> None:
        if self._in_utt:
            pcm = dithered(pcm, len(self._audio))
            self._general.process_raw(pcm, False, False)
            self._audio += pcm

    def partial(self) -> str:
        hyp = self._general.hyp() if self._in_utt else None
        return self._clean(hyp.hypstr) if hyp is not None else ""

    def end(self, offset_ms: int) -> list[Word]:
        """The sentence's words; times in ms of the stream (`offset_ms` is where the sentence began)."""
        if not self._in_utt:
            return []
        self._general.end_utt()
        self._in_utt = False
        general = self._segments(self._general, offset_ms)
        if self._grammar is not None and self.hotwords and self._audio:
            # The grammar hears its words best without the silence around them.
            audio, skipped_ms = _voiced(bytes(self._audio), margin_ms=150)
            self._grammar.reinit_feat()
            self._grammar.start_utt()
            self._grammar.process_raw(audio, False, True)
            self._grammar.end_utt()
            for hot in _merged(self._segments(self._grammar, offset_ms + skipped_ms)):
                general = _replace(general, hot)
        return [Word(s.word, s.start_ms, s.end_ms) for s in general]

    def close(self) -> None:
        if self._in_utt:
            self._general.end_utt()
            self._in_utt = False
        self._pool.give(self._general, False)
        if self._grammar is not None:
            self._pool.give(self._grammar, True)

    @staticmethod
    def _segments(decoder: Decoder, offset_ms: int) -> list[_Seg]:
        out = []
        for seg in decoder.seg() or []:
            word = _ALTERNATE.sub("", seg.word.strip())
            if _FILLER.match(word):
                continue
            out.append(_Seg(word, offset_ms + seg.start_frame * FRAME_MS, offset_ms + (seg.end_frame + 1) * FRAME_MS))
        return out

    @staticmethod
    def _clean(text: str) -> str:
        return " ".join(_ALTERNATE.sub("", w) for w in text.split() if not _FILLER.match(w))


def dithered(pcm: bytes, at: int) -> bytes:
    """`pcm` (16 kHz s16, `at` bytes into its sentence) with the dither's lowest bits flipped in:
    digital silence (the zeros a client sends for a muted anchor) has no log energy and derails the
    features; real microphones never send it. One XOR of two big integers: C's speed."""
    out = bytearray()
    for first in range(0, len(pcm) - len(pcm) % 2, _DITHER_BYTES):
        piece = pcm[first:first + _DITHER_BYTES]
        offset = (at + first) % _DITHER_BYTES
        mask = _DITHER[offset:offset + len(piece)]
        out += (int.from_bytes(piece, "little") ^ int.from_bytes(mask, "little")).to_bytes(len(piece), "little")
    return bytes(out)


def _voiced(pcm: bytes, threshold: int = 300, margin_ms: int = 60) -> tuple[bytes, int]:
    """`pcm` without its quiet start and end (10 ms frames below `threshold` RMS), and the ms cut
    from its start."""
    frame = 320  # 10 ms of 16 kHz s16
    loud = [i for i in range(0, len(pcm) - frame + 1, frame)
            if _rms(pcm[i:i + frame]) >= threshold]
    if not loud:
        return pcm, 0
    margin = margin_ms // 10 * frame
    start = max(0, loud[0] - margin)
    end = min(len(pcm), loud[-1] + frame + margin)
    return pcm[start:end], start // 32


def _rms(chunk: bytes) -> float:
    samples = array("h", chunk)
    return (sum(s * s for s in samples) / max(1, len(samples))) ** 0.5


def _merged(hits: list[_Seg], gap_ms: int = 150) -> list[_Seg]:
    """One hotword heard as two back-to-back matches ("square square") is one word."""
    out: list[_Seg] = []
    for hit in hits:
        if out and out[-1].word == hit.word and hit.start_ms - out[-1].end_ms <= gap_ms:
            out[-1] = _Seg(hit.word, out[-1].start_ms, hit.end_ms)
        else:
            out.append(hit)
    return out


def _replace(words: list[_Seg], hot: _Seg) -> list[_Seg]:
    """`words` with those that share most of their time with `hot` replaced by it."""
    kept: list[_Seg] = []
    placed = False
    for w in words:
        overlap = min(w.end_ms, hot.end_ms) - max(w.start_ms, hot.start_ms)
        if overlap * 2 >= (w.end_ms - w.start_ms):
            if not placed:
                kept.append(hot)
                placed = True
            continue
        if not placed and w.start_ms >= hot.end_ms:
            kept.append(hot)
            placed = True
        kept.append(w)
    if not placed:
        kept.append(hot)
    return kept
