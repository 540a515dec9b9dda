"""The local room protocol's framing: messages survive any split of the byte stream; bad ones are named."""
from __future__ import annotations

import struct

import pytest

from shared.room import wire


def test_messages_survive_any_split_of_the_stream():
    sent = [wire.Message({"t": "v", "pts": i, "k": i % 2}, bytes([i]) * (i * 1000)) for i in range(5)]
    stream = b"".join(m.encode() for m in sent)
    for chunk in (1, 7, 4096, len(stream)):
        decoder = wire.Decoder()
        got: list[wire.Message] = []
        for start in range(0, len(stream), chunk):
            got += decoder.feed(stream[start:start + chunk])
        assert [(m.header, m.payload) for m in got] == [(m.header, m.payload) for m in sent]


@pytest.mark.parametrize("data,why", [
    (struct.pack("!I", wire.MAX_MESSAGE + 1), "exceeds"),
    (struct.pack("!IH", 4, 9) + b"{}", "does not fit"),
    (struct.pack("!IH", 4, 2) + b"[]", "string 't'"),
    (struct.pack("!IH", 5, 3) + b"\xff\xfe{", "not JSON"),
])
def test_bad_messages_are_refused_with_a_reason(data, why):
    with pytest.raises(wire.WireError, match=why):
        wire.Decoder().feed(data)


def test_oversized_message_is_refused_before_it_is_read():
    decoder = wire.Decoder(max_message=1000)
    with pytest.raises(wire.WireError, match="1000-byte limit"):
        decoder.feed(struct.pack("!I", 1001))  # only the length has arrived
    with pytest.raises(wire.WireError):
        wire.encode({"t": "v"}, bytes(wire.MAX_MESSAGE))
