"""hosts' answers to names without entries written on the wire (issue 19 §7): told from the
question's bytes, they must be the bytes (or the PASS) of the dnspython build."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import dns.message
import pytest

from interkube.plugin.answers import PASS
from interkube.plugin.request import Request
from interkube.plugins.hosts.handler import HostsHandler
from testkit.chains import chain_handler, forbid_builds, request

HOSTS = "192.0.2.1 www.mem.test Alias.mem.test\n2001:db8::1 v6.mem.test\n192.0.2.9 *.wild.mem.test\n"
NAMES = ("www.mem.test.", "WWW.Mem.Test.", "alias.mem.test.", "v6.mem.test.", "absent.mem.test.",
         "x.www.mem.test.", "a.wild.mem.test.", "b.a.wild.mem.test.", "wild.mem.test.", "mem.test.",
         "1.2.0.192.in-addr.arpa.", "9.9.9.10.in-addr.arpa.", "x.in-addr.arpa.",
         ".".join(["a" * 63] * 3) + ".mem.test.")
TYPES = ("A", "AAAA", "TXT", "MX", "PTR", "SOA", "ANY", "HTTPS")
SHAPES = ({"use_edns": False}, {"use_edns": 0, "want_dnssec": True}, {"use_edns": 0, "flags": 0x0110})


def _handler(tmp_path: Path, options: str = "") -> HostsHandler:
    (tmp_path / "hosts").write_text(HOSTS)
    block = f" {{\n{options} }}" if options else ""
    return chain_handler(f"mem.test:53 {{\n hosts {tmp_path / 'hosts'}{block}\n}}\n", HostsHandler)


def _request(name: str, rdtype: str, shape: dict[str, Any]) -> Request:
    m = dns.message.make_query(name, rdtype, use_edns=shape.get("use_edns"),
                               want_dnssec=shape.get("want_dnssec", False))
    m.flags = shape.get("flags", m.flags)
    return request(m.to_wire())


@pytest.mark.parametrize("options", ["", "  fallthrough\n", "  fallthrough mem.test\n  no_reverse\n"])
def test_answers_told_on_the_wire_are_the_dnspython_ones(tmp_path: Path, options: str) -> None:
    handler = _handler(tmp_path, options)
    on_wire = 0
    for name, rdtype, shape in itertools.product(NAMES, TYPES, SHAPES):
        req = _request(name, rdtype, shape)
        zone = handler.zones.match(req.query.lname)
        if zone is None:
            continue
        quick = handler.wire_answer(req, handler.data, zone)
        if quick is None:
            continue
        on_wire += 1
        expected = handler.build(req, handler.data, zone)
        assert (None if quick is PASS else quick) == expected, (name, rdtype, shape)
    assert on_wire >= 3 * (len(TYPES) - 1) * len(SHAPES)  # absent.mem.test and the names below www


def test_a_name_without_entries_costs_no_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    handler = _handler(tmp_path)
    forbid_builds(monkeypatch, handler)
    for i in range(50):
        response = handler.fast(_request(f"n{i}.absent.mem.test.", "A", {"use_edns": 0}))
        assert response is not None and dns.message.from_wire(response).rcode() == 2
