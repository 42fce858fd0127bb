"""file's negative answers written on the wire (issue 19 §7): for every question, what the
handler answers (the NegativeIndex's verdict written on the wire, else the lookup) must be the
bytes the dnspython build gives, and the wire must take the negative questions (a fuzz's random
names) without a build."""

from __future__ import annotations

import itertools
from pathlib import Path

import dns.message
import pytest

from interkube.plugin import answers
from interkube.plugin.answers import PASS
from interkube.plugin.request import Request
from interkube.plugins.file import handler as file_handler
from interkube.plugins.file.handler import FileHandler
from interkube.plugins.file.negative import Verdict
from testkit.chains import chain_handler, forbid_builds, request

ZONE = """\
$TTL 300
@         IN SOA   NS1.Example.org. hostmaster.example.org. 7 7200 3600 1209600 60
@         IN NS    ns1.example.org.
@         IN NS    ns.external.net.
@         IN TXT   "apex"
ns1       IN A     192.0.2.1
www       IN A     192.0.2.10
Mixed     IN AAAA  2001:db8::10
alias     IN CNAME www
a.b.ent   IN A     192.0.2.60
*.wild    IN A     192.0.2.70
*.wild    IN TXT   "wildcard"
*.cw      IN CNAME www
sub       IN NS    ns.sub.example.org.
ns.sub    IN A     192.0.2.53
old       IN DNAME new.example.org.
www.new   IN A     192.0.2.80
"""

NAMES = ("example.org.", "EXAMPLE.org.", "www.example.org.", "WWW.example.org.", "mixed.example.org.",
         "absent.example.org.", "x.y.absent.example.org.", "ns1.example.org.", "alias.example.org.",
         "ent.example.org.", "b.ent.example.org.", "c.b.ent.example.org.", "x.wild.example.org.",
         "y.x.Wild.example.org.", "*.wild.example.org.", "wild.example.org.", "x.cw.example.org.",
         "sub.example.org.", "www.sub.example.org.", "old.example.org.", "www.old.example.org.",
         "www.new.example.org.", "new.example.org.", "hostmaster.example.org.",
         ".".join(["a" * 63] * 3) + ".b.example.org.")
TYPES = ("A", "AAAA", "TXT", "MX", "SOA", "NS", "CNAME", "DS", "ANY", "SRV", "DNAME", "PTR", "AXFR", "IXFR")
SHAPES = ({"use_edns": False}, {"use_edns": 0}, {"use_edns": 0, "want_dnssec": True},
          {"use_edns": 0, "payload": 4096, "flags": 0})


def _handler(tmp_path: Path, fallthrough: str = "") -> FileHandler:
    (tmp_path / "db").write_text(ZONE)
    block = f" {{\n  fallthrough {fallthrough}\n }}" if fallthrough else ""
    return chain_handler(f"example.org:53 {{\n file {tmp_path / 'db'}{block}\n}}\n", FileHandler)


def _request(name: str, rdtype: str, shape: dict[str, object]) -> Request:
    return request(dns.message.make_query(name, rdtype, **shape).to_wire())  # type: ignore[arg-type]


def _by_dnspython(handler: FileHandler, req: Request, monkeypatch: pytest.MonkeyPatch) -> bytes | None:
    """The answer the handler built before negative answers were written on the wire."""
    with monkeypatch.context() as m:
        m.setattr(file_handler, "negative_answer", lambda *_: None)
        return handler.build(req, handler.data, "example.org.")


def _sorted(wire: bytes) -> list[str]:
    return sorted(dns.message.from_wire(wire).to_text().splitlines())


def test_every_answer_is_the_dnspython_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    handler = _handler(tmp_path)
    on_wire = 0
    for name, rdtype, shape in itertools.product(NAMES, TYPES, SHAPES):
        req = _request(name, rdtype, shape)
        expected = _by_dnspython(handler, req, monkeypatch)
        quick = handler.wire_answer(req, handler.data, "example.org.")
        if quick is not None:
            on_wire += 1
            assert quick == expected, (name, rdtype, shape)
        built = handler.build(req, handler.data, "example.org.")
        if expected is not None and expected[6:8] != b"\x00\x00":
            # Records: dnspython may write an RRset's records in another order each time.
            assert built is not None and _sorted(built) == _sorted(expected), (name, rdtype, shape)
        else:
            assert built == expected, (name, rdtype, shape)
    # Not a test that holds by never answering on the wire: absent names, empty non-terminals,
    # NODATA at names and wildcards, and transfers are told there.
    assert on_wire > len(NAMES) * len(SHAPES) * 4


@pytest.mark.parametrize(("name", "verdict"), [
    ("absent.example.org.", Verdict.NXDOMAIN), ("c.b.ent.example.org.", Verdict.NXDOMAIN),
    ("b.ent.example.org.", Verdict.NODATA), ("www.example.org.", Verdict.NODATA),
    ("x.wild.example.org.", Verdict.NODATA), ("www.sub.example.org.", None), ("www.old.example.org.", None),
    ("old.example.org.", None), ("alias.example.org.", None), ("x.cw.example.org.", None)])
def test_verdicts_for_an_mx_question(tmp_path: Path, name: str, verdict: Verdict | None) -> None:
    zone = _handler(tmp_path).data["example.org."]
    lname = _request(name, "MX", {}).query.lname
    assert zone.negative.verdict(lname, 15) is verdict


def test_fallthrough_passes_nxdomain_on_the_wire(tmp_path: Path) -> None:
    handler = _handler(tmp_path, "example.org")
    data = handler.data
    assert handler.wire_answer(_request("absent.example.org.", "A", {}), data, "example.org.") is PASS
    nodata = handler.wire_answer(_request("www.example.org.", "TXT", {}), data, "example.org.")
    assert isinstance(nodata, bytes) and dns.message.from_wire(nodata).rcode() == 0


def test_random_names_cost_no_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A miss answered on the wire neither builds nor spends the fast path's build budget."""
    handler = _handler(tmp_path)
    forbid_builds(monkeypatch, handler)
    for i in range(100):
        response = handler.fast(_request(f"n{i}.absent.example.org.", "A", {"use_edns": 0}))
        assert response is not None and dns.message.from_wire(response).rcode() == 3


def test_answers_made_up_for_the_asked_name_are_bounded_as_per_query(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wildcard's answers to random names, and a DNAME's CNAMEs, are as many as the names a
    client asks: the table bounds them with the answers of nothing (issue 19: a fuzz's random
    names under `*.wild` grew the table by 51 a second towards its 100,000)."""
    handler = _handler(tmp_path)
    monkeypatch.setattr(answers.INLINE_BUILDS, "serving", True)  # (every miss built, as the slow path does)
    table = handler.generation.templates
    monkeypatch.setattr(table, "per_query_capacity", 4)
    names = [f"n{i}.{parent}.example.org." for i in range(20) for parent in ("wild", "cw", "old")]
    names += [f"www{i}.example.org." for i in range(20)]  # (NXDOMAIN: per query already)
    fixed = ["www.example.org.", "alias.example.org.", "ns1.example.org.", "a.b.ent.example.org."]
    for name in names + fixed:
        response = handler.fast(_request(name, "A", {}))
        assert response is not None
    assert all(table.get(_request(name, "A", {}).query.key) is not None for name in fixed)
    assert len(table) == len(fixed) + 4
