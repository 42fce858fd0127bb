"""The kubernetes stanza's negative answers written on the wire (issue 19 §7): a name that
cannot be a cluster name is told from its bytes, and every negative answer is the bytes the
dnspython build gives, with the same dependencies."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import dns.message
import pytest

from interkube.kube.xfr import SERIAL_DEP
from interkube.plugin import kubestanza
from interkube.plugin.answers import INLINE_BUILDS, PASS
from interkube.plugin.kubestanza import KubernetesHandler
from interkube.plugin.request import Request
from testkit.chains import chain_handler, request

ZONE = "cluster.local."
NAMES = ("cluster.local.", "Cluster.LOCAL.", "svc.cluster.local.", "pod.cluster.local.", "x.cluster.local.",
         "app.svc.cluster.local.", "nope.svc.cluster.local.", "web.app.svc.cluster.local.",
         "WEB.App.SVC.cluster.local.", "gone.app.svc.cluster.local.", "_http._tcp.web.app.svc.cluster.local.",
         "10-0-0-1.app.pod.cluster.local.", "dns-version.cluster.local.", "DNS-Version.cluster.local.",
         "ns.dns.cluster.local.", "NS.dns.cluster.local.", "x.ns.dns.cluster.local.", "dns.cluster.local.",
         "random.cluster.local.", "a.b.c.d.cluster.local.", "svc.x.cluster.local.", "pod.svc.x.cluster.local.",
         "SvC1.cluster.local.", "hostmaster.cluster.local.", ".".join(["a" * 63] * 3) + ".cluster.local.",
         "1.0.96.10.in-addr.arpa.", "x.in-addr.arpa.")
TYPES = ("A", "AAAA", "TXT", "SRV", "PTR", "CNAME", "SOA", "NS", "MX", "ANY", "HTTPS", "AXFR")
SHAPES = ({"use_edns": False}, {"use_edns": 0}, {"use_edns": 0, "want_dnssec": True}, {"use_edns": False, "flags": 0})


def _handler(tmp_path: Path, snapshot_writer: Any, objects: list[dict[str, Any]], extra: str = "") -> KubernetesHandler:
    path = snapshot_writer(tmp_path / "c.yaml", objects)
    corefile = (f".:53 {{\n kubernetes {ZONE} in-addr.arpa {{\n  snapshot {path}\n  pods insecure\n{extra} }}\n}}\n")
    handler = chain_handler(corefile, KubernetesHandler)
    assert handler.cluster.index is not None
    return handler


def _request(name: str, rdtype: str, shape: dict[str, Any]) -> Request:
    return request(dns.message.make_query(name, rdtype, **shape).to_wire())


def _by_dnspython(handler: KubernetesHandler, req: Request,
                  monkeypatch: pytest.MonkeyPatch) -> tuple[bytes | None, set[Any]]:
    """The answer and dependencies the stanza built before negative answers were written on
    the wire."""
    index = handler.cluster.index
    assert index is not None
    zone = handler.zones.match(req.query.lname)
    assert zone is not None
    deps: set[Any] = set()
    with monkeypatch.context() as m:
        m.setattr(kubestanza, "negative_answer", lambda *_: None)
        return handler._build(req, index, deps, zone), deps


def _compare(handler: KubernetesHandler, monkeypatch: pytest.MonkeyPatch) -> int:
    """Every question's answer against the dnspython build; how many were told on the wire."""
    index = handler.cluster.index
    assert index is not None
    on_wire = 0
    for name, rdtype, shape in itertools.product(NAMES, TYPES, SHAPES):
        req = _request(name, rdtype, shape)
        zone = handler.zones.match(req.query.lname)
        if zone is None or rdtype == "AXFR":
            continue
        expected, expected_deps = _by_dnspython(handler, req, monkeypatch)
        quick = handler._wire_negative(req.query, index, zone)
        if quick is not None:
            on_wire += 1
            answer, deps = quick
            assert (None if answer is PASS else answer) == expected, (name, rdtype, shape)
            assert set(deps) == expected_deps, (name, rdtype, shape)
        if expected is not None and expected[6:8] == b"\x00\x00":  # negative: byte for byte
            deps = set()
            assert handler._build(req, index, deps, zone) == expected, (name, rdtype, shape)
            assert deps == expected_deps
    return on_wire


def test_negative_answers_are_the_dnspython_ones(tmp_path: Path, snapshot_writer: Any,
                                                 cluster_objects: list[dict[str, Any]],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    handler = _handler(tmp_path, snapshot_writer, cluster_objects)
    # Not a test that holds by never answering on the wire: the random names are told there.
    assert _compare(handler, monkeypatch) >= 8 * (len(TYPES) - 1) * len(SHAPES)


def test_with_fallthrough_and_a_serial_that_follows_changes(tmp_path: Path, snapshot_writer: Any,
                                                            cluster_objects: list[dict[str, Any]],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    handler = _handler(tmp_path, snapshot_writer, cluster_objects, "  fallthrough\n  ttl 600\n")
    handler.watch_zones(lambda zone: None)  # (a transfer watching: the serial follows the changes)
    assert _compare(handler, monkeypatch) > 0
    index = handler.cluster.index
    assert index is not None
    req = _request("random.cluster.local.", "SOA", {})
    quick = handler._wire_negative(req.query, index, ZONE)
    assert quick is not None and quick[1] == (SERIAL_DEP,)
    assert handler._wire_negative(_request("random.cluster.local.", "A", {}).query, index, ZONE) == (PASS, ())


def test_random_names_cost_no_build(tmp_path: Path, snapshot_writer: Any,
                                    cluster_objects: list[dict[str, Any]]) -> None:
    handler = _handler(tmp_path, snapshot_writer, cluster_objects)
    for i in range(100):
        response = handler.fast(_request(f"n{i}.x.cluster.local.", "A", {"use_edns": 0}))
        assert response is not None and dns.message.from_wire(response).rcode() == 3
    assert handler.built == 0
    response = handler.fast(_request("nope.app.svc.cluster.local.", "A", {}))
    assert response is not None and dns.message.from_wire(response).rcode() == 3
    assert handler.built == 1  # (a name that may be a cluster's is looked up)


def test_pod_addresses_read_from_the_name_are_bounded_as_per_query(
        tmp_path: Path, snapshot_writer: Any, cluster_objects: list[dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With `pods insecure` every address-shaped name in a namespace has an answer: as many as
    a client asks, so the table bounds them with the answers of nothing."""
    handler = _handler(tmp_path, snapshot_writer, cluster_objects)
    monkeypatch.setattr(INLINE_BUILDS, "serving", True)  # (every miss built, as the slow path does)
    services = ["web.app.svc.cluster.local.", "single.app.svc.cluster.local.", "dual.app.svc.cluster.local."]
    handler.fast(_request(services[0], "A", {}))  # (the table of the index that answers)
    table = handler.generation.templates
    monkeypatch.setattr(table, "per_query_capacity", 10)
    for name in [f"10-0-0-{i}.app.pod.cluster.local." for i in range(50)] + services:
        response = handler.fast(_request(name, "A", {}))
        assert response is not None and dns.message.from_wire(response).answer, name
    assert handler.generation.templates is table
    assert all(table.get(_request(name, "A", {}).query.key) is not None for name in services)
    assert len(table) == len(services) + 10
