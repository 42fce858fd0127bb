"""The one TCP length framing (listeners, upstream streams, the fake upstream)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interkube.pkg.framing import FrameReader, frame, length_prefix


def test_a_message_goes_after_its_length_in_two_bytes() -> None:
    assert length_prefix(b"x" * 258) == b"\x01\x02"
    assert frame(b"abc") == b"\x00\x03abc"
    with pytest.raises(OverflowError):
        length_prefix(b"x" * 65536)


@given(st.lists(st.binary(max_size=300), max_size=20), st.lists(st.integers(1, 50), min_size=1))
def test_messages_come_out_whole_and_in_order_however_the_bytes_are_cut(
        messages: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(m) for m in messages)
    reader = FrameReader()
    out: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        reader.feed(stream[pos:pos + step])
        pos += step
        i += 1
        out += reader.take()
    assert out == messages
    assert len(reader) == 0 and reader.take() == []


def test_a_reader_under_back_pressure_takes_only_what_it_has_room_for() -> None:
    reader = FrameReader()
    reader.feed(b"".join(frame(bytes([n])) for n in range(5)) + b"\x00\x09part")
    assert reader.take(0) == [] and reader.take(-1) == []
    assert reader.take(2) == [b"\x00", b"\x01"]
    assert len(reader) == 3 * 3 + 6  # three whole messages and a partial one left
    reader.feed(b"ial")  # more bytes while messages are still waiting to be taken
    assert reader.take() == [b"\x02", b"\x03", b"\x04"]
    reader.feed(b"!!")
    assert reader.take() == [b"partial!!"]
    assert not reader


def test_a_length_that_lies_keeps_the_reader_waiting() -> None:
    reader = FrameReader()
    reader.feed(b"\xff\xffshort")
    assert reader.take() == [] and len(reader) == 7
