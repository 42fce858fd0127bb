"""respond() with the query as the fast parser read it: an outcome without records is written on
the wire (clusterset, k8s_external, splitdns, kubernetes' multicluster zones), and must be the
bytes dnspython's render gives."""

from __future__ import annotations

import itertools
from typing import Any

import dns.message
import dns.name
import pytest

from interkube.dns.negative import negative_response
from interkube.dns.wire import parse_query
from interkube.kube import dnsrecords
from interkube.kube.dnsrecords import Outcome, respond, rrset, soa_rrset

NAMES = ("web.app.svc.clusterset.local.", "WEB.App.svc.ClusterSet.local.", "clusterset.local.",
         "ns.dns.clusterset.local.", "x.y.z.clusterset.local.")
SHAPES = ({"use_edns": False}, {"use_edns": 0}, {"use_edns": 0, "want_dnssec": True, "payload": 4096})


def test_outcomes_without_records_are_the_rendered_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> bytes | None:
        calls.append(1)
        return negative_response(*args, **kwargs)

    monkeypatch.setattr(dnsrecords, "negative_response", counted)
    soa = soa_rrset(dns.name.from_text("clusterset.local."), "clusterset.local.", 1733580000, 30)
    written = 0
    for name, rdtype, shape, name_error in itertools.product(NAMES, ("A", "SRV", "SOA", "TXT"), SHAPES,
                                                             (True, False)):
        message = dns.message.make_query(name, rdtype, **shape)  # type: ignore[arg-type]
        query = parse_query(message.to_wire())
        assert query is not None
        outcome = Outcome(name_error=name_error)
        assert respond(message, outcome, soa, query) == respond(message, outcome, soa), (name, rdtype, shape)
        written += 1
    assert written == len(NAMES) * 4 * len(SHAPES) * 2
    assert len(calls) == written  # (each written on the wire, not rendered)


def test_outcomes_with_records_are_rendered() -> None:
    soa = soa_rrset(dns.name.from_text("clusterset.local."), "clusterset.local.", 1, 5)
    message = dns.message.make_query("web.app.svc.clusterset.local.", "A")
    query = parse_query(message.to_wire())
    outcome = Outcome([rrset(dns.name.from_text("web.app.svc.clusterset.local."), 5, 1, "10.0.0.1")])
    answer = dns.message.from_wire(respond(message, outcome, soa, query))
    assert [str(r) for r in answer.answer] == ["web.app.svc.clusterset.local. 5 IN A 10.0.0.1"]
    assert not answer.authority
