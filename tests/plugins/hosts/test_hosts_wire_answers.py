"""hosts' A and AAAA answers written on the wire (issue 18, goal 4): the very bytes dnspython's
build gives (several addresses, one given twice, wildcard entries, each query shape), without a
build, and None where only the build answers (NODATA, a query asking for EDNS padding).

dnspython shuffles a record set's records as it renders them (the first build of a name's answer
chose its order at random, and its template kept it); the wire answer keeps the entries' order,
as CoreDNS's hosts does. The comparison renders dnspython's unshuffled."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import dns.edns
import dns.message
import pytest

from interkube.plugins.hosts.handler import HostsHandler
from testkit.chains import chain_handler, forbid_builds, request

HOSTS = ("192.0.2.1 www.mem.test\n192.0.2.2 www.mem.test\n192.0.2.1 www.mem.test\n2001:db8::1 www.mem.test\n"
         "2001:db8::2 Db.Mem.Test\n192.0.2.9 *.wild.mem.test\n2001:db8::9 a.wild.mem.test\n")
#: (name, type, answered on the wire): the rest is NODATA, built by dnspython.
QUESTIONS = (("www.mem.test.", "A", True), ("WwW.mEm.TeSt.", "AAAA", True), ("db.mem.test.", "AAAA", True),
             ("db.mem.test.", "A", False), ("a.wild.mem.test.", "A", True), ("a.wild.mem.test.", "AAAA", True),
             ("b.wild.mem.test.", "A", True), ("b.wild.mem.test.", "AAAA", False))
#: No EDNS; EDNS with DO; EDNS with RD and CD; EDNS with a cookie option.
SHAPES: tuple[dict[str, Any], ...] = (
    {"use_edns": False}, {"use_edns": 0, "want_dnssec": True}, {"use_edns": 0, "flags": 0x0110},
    {"use_edns": 0, "options": [dns.edns.GenericOption(dns.edns.COOKIE, b"\x01" * 8)]})


def _handler(tmp_path: Path, options: str = "") -> HostsHandler:
    (tmp_path / "hosts").write_text(HOSTS)
    return chain_handler(f"mem.test:53 {{\n hosts {tmp_path / 'hosts'} {{\n{options} }}\n}}\n", HostsHandler)


def _query(name: str, rdtype: str, shape: dict[str, Any]) -> bytes:
    m = dns.message.make_query(name, rdtype, use_edns=shape.get("use_edns"),
                               want_dnssec=shape.get("want_dnssec", False), options=shape.get("options"))
    m.flags = shape.get("flags", m.flags)
    return m.to_wire()


@pytest.mark.parametrize("options", ["  ttl 60\n", "  ttl 3600\n  no_reverse\n"])
def test_addresses_written_on_the_wire_are_the_dnspython_answer(tmp_path: Path, options: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "shuffle", lambda items: None)  # (dnspython's render: see the docstring)
    handler = _handler(tmp_path, options)
    for (name, rdtype, on_wire), shape in itertools.product(QUESTIONS, SHAPES):
        req = request(_query(name, rdtype, shape))
        zone = handler.zones.match(req.query.lname)
        assert zone is not None
        quick = handler.wire_answer(req, handler.data, zone)
        assert (quick is not None) is on_wire, (name, rdtype, shape)
        if quick is not None:
            assert quick == handler.build(req, handler.data, zone), (name, rdtype, shape)
    quick = handler.wire_answer(request(_query("www.mem.test.", "A", {})), handler.data, "mem.test.")
    assert isinstance(quick, bytes)
    answer = dns.message.from_wire(quick)
    assert [rd.to_text() for rd in answer.answer[0]] == ["192.0.2.1", "192.0.2.2"]  # each once, in order


def test_a_query_asking_for_padding_is_built_by_dnspython(tmp_path: Path) -> None:
    handler = _handler(tmp_path)
    padded = {"use_edns": 0, "options": [dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"")]}
    req = request(_query("www.mem.test.", "A", padded))
    assert handler.wire_answer(req, handler.data, "mem.test.") is None


def test_names_with_entries_cost_no_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    handler = _handler(tmp_path)
    forbid_builds(monkeypatch, handler)
    for name, rdtype in (("www.mem.test.", "A"), ("www.mem.test.", "AAAA"), ("x.wild.mem.test.", "A")):
        response = handler.fast(request(_query(name, rdtype, {"use_edns": 0})))
        assert response is not None and dns.message.from_wire(response).answer, (name, rdtype)
