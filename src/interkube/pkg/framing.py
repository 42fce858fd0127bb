"""DNS over TCP (and TLS) framing: each message after its length in two bytes (RFC 1035 4.2.2).

Shared by the listeners (queries in, answers out) and the upstream stream exchanger (queries
out, answers in). Both are hot paths under pipelining, where one segment carries dozens of
messages: the reader takes all that are complete in one call, by position, and drops what it
has handed out once per segment rather than moving the rest of the buffer down after each.
"""

from __future__ import annotations

import sys


def length_prefix(message: bytes) -> bytes:
    """The two bytes that go before ``message`` on a stream; OverflowError above 65535 bytes."""
    return len(message).to_bytes(2, "big")


def frame(message: bytes) -> bytes:
    """``message`` as it goes on a stream: its length prefix, then itself."""
    return length_prefix(message) + message


class FrameReader:
    """Whole messages out of a stream's bytes, in order, as the bytes arrive.

    ``feed()`` what the connection received, then ``take()`` the messages complete so far. A
    caller under back-pressure takes only as many as it has room for and the rest later; ``len()``
    is the number of bytes not yet handed out. A length prefix that promises more than ever
    comes keeps the reader waiting: the connection's idle timeout is what ends that.
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # where the next message's length prefix starts

    def feed(self, data: bytes) -> None:
        buf = self._buf
        if self._pos:
            # Drop what was handed out, once per segment instead of once per message.
            del buf[:self._pos]
            self._pos = 0
        buf += data

    def take(self, limit: int = sys.maxsize) -> list[bytes]:
        """The next whole messages (without their prefixes), at most ``limit`` of them; empty
        until more bytes arrive (or when ``limit`` is 0 or less)."""
        # One call per segment, the loop on locals: a call per message costs more than the
        # decoding itself.
        buf = self._buf
        pos = self._pos
        size = len(buf)
        out: list[bytes] = []
        while limit > 0 and size >= pos + 2:
            end = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
            if size < end:
                break
            out.append(bytes(buf[pos + 2:end]))
            pos = end
            limit -= 1
        self._pos = pos
        return out

    def __len__(self) -> int:
        return len(self._buf) - self._pos
