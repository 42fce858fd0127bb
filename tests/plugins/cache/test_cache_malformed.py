"""A response the one wire reader refuses is passed on but never cached (issue 12, section 3).

The cache used to walk responses with its own name skipper, which followed no pointer and let
reserved label types and misplaced OPT records through: such a response was stored and served
to every later client. Now it reads through interkube.dns.reader, as dnspython would refuse.
"""

from __future__ import annotations

import struct

import dns.message
import pytest

from interkube.dns.wire import parse_query
from interkube.plugins.cache.entry import Analysis, analyse

from cachetest import query, respond

RECORDS = [("www.example.org.", 300, "A", "192.0.2.1"), ("www.example.org.", 300, "A", "192.0.2.2")]


def corrupt(name: str) -> bytes:
    """The response to `query()` with two A records, broken in one way."""
    wire = bytearray(respond(query(), RECORDS))
    first = 12 + len(b"\x03www\x07example\x03org\x00") + 4   # the first answer's owner
    second = first + 16                                        # pointer + 10 + 4 bytes of rdata
    assert wire[first:first + 2] == wire[second:second + 2] == b"\xc0\x0c"
    if name == "pointer to itself":
        wire[second:second + 2] = struct.pack("!H", 0xC000 | second)
    elif name == "forward pointer":
        wire[first:first + 2] = struct.pack("!H", 0xC000 | second)
    elif name == "reserved label type":
        wire[second] = 0x41  # (was 0xC0, a pointer: now type 0x40 with length 1)
    elif name == "count beyond the data":
        wire[6:8] = b"\x00\x03"
    elif name == "OPT in the answer section":
        wire[second + 2:second + 4] = b"\x00\x29"
        wire[second + 12:second + 16] = b"\x00\x00\x00\x00"  # (its rdata stays 4 bytes: one bad option)
    elif name == "truncated":
        return bytes(wire[:-3])
    return bytes(wire)


@pytest.mark.parametrize("name", ["pointer to itself", "forward pointer", "reserved label type",
                                  "count beyond the data", "OPT in the answer section", "truncated"])
def test_a_response_the_reader_refuses_is_not_cached(name: str) -> None:
    q = parse_query(query())
    assert q is not None
    assert isinstance(analyse(respond(query(), RECORDS), q), Analysis)
    bad = corrupt(name)
    with pytest.raises(Exception):  # noqa: B017 - dnspython refuses it, each in its own words
        dns.message.from_wire(bad)
    assert analyse(bad, q) is None
