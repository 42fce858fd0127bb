"""name_to_text: a wire name's text read from its bytes (the errors and log plugins write it for
every line), exactly as dnspython writes it, escapes included."""

from __future__ import annotations

import random

import dns.name
import pytest

from interkube.dns.wire import name_to_text


@pytest.mark.parametrize("text", [".", "www.example.org.", "WWW.Example.ORG.", r"a\.b.example.", r'\"\(\)\;\@\$\\.x.',
                                  r"\000\032\127\255.", "_dns._udp.x.", "*.wild.card.", "a" * 63 + ".b."])
def test_as_dnspython_writes_it(text: str) -> None:
    name = dns.name.from_text(text)
    assert name_to_text(name.to_wire()) == name.to_text()


def test_every_byte_in_labels_as_dnspython_writes_it() -> None:
    rnd = random.Random(19)
    for _ in range(2000):
        labels = [bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 12))) for _ in range(rnd.randint(1, 4))]
        name = dns.name.Name([*labels, b""])
        assert name_to_text(name.to_wire()) == name.to_text()
