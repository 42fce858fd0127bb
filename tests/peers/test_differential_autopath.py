"""autopath compared with CoreDNS 1.15: the same Corefile (``autopath @kubernetes`` in front of
``kubernetes cluster.local { pods verified }`` and a ``forward`` to an unbound on loopback) given
to both servers, both watching the test kube-apiserver, the same questions asked of both from
the address of a pod.

The pod (namespace ``NS``, the test's) has a 127.x.y.z address written into its status by the
admin client, as a kubelet would; the client socket is bound to that address, so both servers
take the client for that pod and walk its search list ``NS.svc.cluster.local svc.cluster.local
cluster.local`` (then the host's search domains, the same /etc/resolv.conf for both, then the
bare name). A few questions go from 127.0.0.1 (no pod: no walk) and one from a second pod in
another namespace.

Answers are compared as the kubernetes corpus compares them (tests/peers/differential_corpus.py:
rcode, flags, the sections in any order, TTLs), the question section counted in the answer's
aspect (autopath must give the client its question back). Every difference must be one that
docs/divergences.md lists under a ``- `autopath/CASE`: aspects`` line, and every one listed must
still differ so; the figures are printed at the end of the pytest run.
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import pytest

from testkit.coredns import CoreDNS
from testkit.kubeapi import KubeAPI, KubeObjects
from testkit.servers import LOOPBACK, free_port, interkube_process, process_output, unbound
from testkit.waiting import wait_until

from differential_corpus import Case, Result, check_comparison, summarize

pytestmark = pytest.mark.peers

COMPARISON = "autopath"
#: What the upstream (unbound, every name from local data: nothing leaves the machine) knows.
UPSTREAM = ["www.ext.test. 300 IN A 192.0.2.80", "www.ext.test. 300 IN AAAA 2001:db8::80",
            "alias.ext.test. 300 IN CNAME www.ext.test."]


@dataclass(frozen=True)
class Ask:
    """One question, sent alike to both servers. ``name`` is a template: {ns} the pod's
    namespace, {other} the other one. ``source``: "pod", "other-pod" or "none" (127.0.0.1)."""

    id: str
    name: str
    qtype: str = "A"
    edns: bool = False
    source: str = "pod"
    tcp: bool = False

    def case(self) -> Case:
        return Case(self.id, self.name, self.qtype, tcp=self.tcp, edns=1232 if self.edns else None, group="autopath")


S = "svc.cluster.local"
ASKS: tuple[Ask, ...] = (
    # The first search domain answers: the question's own answer.
    Ask("own-a", f"web.{{ns}}.{S}"), Ask("own-aaaa", f"web.{{ns}}.{S}", "AAAA"),
    Ask("own-srv", f"_http._tcp.web.{{ns}}.{S}", "SRV"), Ask("own-headless", f"pet-0.hl.{{ns}}.{S}"),
    Ask("own-edns", f"web.{{ns}}.{S}", edns=True), Ask("own-tcp", f"web.{{ns}}.{S}", tcp=True),
    Ask("own-external", f"ext.{{ns}}.{S}"),
    # Another namespace's Service: found at svc.cluster.local, the second name.
    Ask("other-a", f"db.{{other}}.{{ns}}.{S}"), Ask("other-aaaa", f"db.{{other}}.{{ns}}.{S}", "AAAA"),
    Ask("other-srv", f"_http._tcp.db.{{other}}.{{ns}}.{S}", "SRV"),
    Ask("other-edns", f"db.{{other}}.{{ns}}.{S}", edns=True),
    Ask("other-tcp", f"db.{{other}}.{{ns}}.{S}", tcp=True),
    Ask("other-txt", f"db.{{other}}.{{ns}}.{S}", "TXT"),
    Ask("other-external", f"ext2.{{other}}.{{ns}}.{S}"),
    Ask("other-mixed-case", "DB.{other}.{ns}.SVC.Cluster.Local"),
    # The namespace itself (svc.cluster.local), a name under cluster.local (the third).
    Ask("namespace", f"{{other}}.{{ns}}.{S}"), Ask("third", f"db.{{other}}.svc.{{ns}}.{S}"),
    # Outside the cluster: the bare name, forwarded.
    Ask("upstream-a", f"www.ext.test.{{ns}}.{S}"), Ask("upstream-aaaa", f"www.ext.test.{{ns}}.{S}", "AAAA"),
    Ask("upstream-cname", f"alias.ext.test.{{ns}}.{S}"), Ask("upstream-mx", f"www.ext.test.{{ns}}.{S}", "MX"),
    # Nowhere: every name NXDOMAIN, the question's own answer.
    Ask("nowhere", f"nope.{{ns}}.{S}"), Ask("nowhere-aaaa", f"nope.nope.{{ns}}.{S}", "AAAA"),
    # Not under the first search domain: no walk.
    Ask("outside-svc", f"db.{{other}}.{S}"), Ask("outside-fqdn", "www.ext.test"),
    Ask("outside-other-ns", f"web.{{other}}.{{ns}}x.{S}"), Ask("outside-ptr", "1.0.96.10.in-addr.arpa", "PTR"),
    # The first search domain itself.
    Ask("first-domain", f"{{ns}}.{S}"),
    # Not a pod: no walk; the other pod walks its own namespace's list.
    Ask("no-pod", f"db.{{other}}.{{ns}}.{S}", source="none"),
    Ask("other-pod", f"web.{{ns}}.{{other}}.{S}", source="other-pod"),
    Ask("other-pod-own-list", f"db.{{ns}}.{S}", source="other-pod"),
)


def corefile(p: str, kubeconfig: Path, upstream: int) -> str:
    """Both servers' Corefile; ``p`` is ``:PORT`` for interkube (CoreDNS takes -dns.port)."""
    return textwrap.dedent(f"""\
        .{p} {{
            bind 127.0.0.1
            autopath @kubernetes
            kubernetes cluster.local in-addr.arpa {{
                kubeconfig {kubeconfig}
                pods verified
            }}
            forward . 127.0.0.1:{upstream}
        }}
        """)


def exchange(port: int, ask: Ask, name: str, source: str) -> dns.message.Message | None:
    """``ask`` from ``source`` to 127.0.0.1:port; None when nothing came back (after a retry)."""
    q = dns.message.make_query(name, dns.rdatatype.RdataType.make(ask.qtype), use_edns=ask.edns, payload=1232)
    for _ in range(2):
        try:
            if ask.tcp:
                return dns.query.tcp(q, LOOPBACK, port=port, timeout=3, source=source)
            return dns.query.udp(q, LOOPBACK, port=port, timeout=3, source=source, ignore_unexpected=True)
        except (dns.exception.Timeout, OSError):
            continue
    return None


def summary(msg: dns.message.Message | None) -> dict[str, Any]:
    """The corpus's summary, with the question (as the answer spells it) first in the answer."""
    out = summarize(msg)
    if msg is None or not msg.question:
        return out
    question = msg.question[0]
    out["answer"] = [f"QUESTION {question.name.to_text()} {dns.rdatatype.to_text(question.rdtype)}", *out["answer"]]
    return out


def loopback_pod_ips(count: int) -> list[str]:
    """Addresses in 127.0.0.0/8 that no other test's pods use (a random /16 far from 127.0.0.1)."""
    base = f"127.{random.randrange(100, 200)}.{random.randrange(0, 256)}"
    return [f"{base}.{i}" for i in range(10, 10 + count)]


def test_autopath_answers_as_coredns_or_as_documented(
        kube_api: KubeAPI, kube: KubeObjects, kube_ns: str, coredns: Callable[..., CoreDNS],
        peer_report: Callable[[str], None], tmp_path: Path) -> None:
    ns = kube_ns
    other = kube.namespace(f"b-{ns}"[:63])
    try:
        pod_ip, other_pod_ip = loopback_pod_ips(2)
        kube.service(ns, "web", ports=[("http", 80, "TCP")])
        kube.endpoint_slice(ns, "web-a", service="web", addresses=["10.1.0.5"], ports=[("http", 8080, "TCP")])
        kube.headless_service(ns, "hl", ports=[("http", 80, "TCP")])
        kube.endpoint_slice(ns, "hl-a", service="hl", addresses=[
            {"addresses": ["10.1.1.10"], "conditions": {"ready": True}, "hostname": "pet-0"}],
            ports=[("http", 8080, "TCP")])
        kube.external_name_service(ns, "ext", "www.ext.test")
        kube.service(other, "db", ports=[("http", 80, "TCP")])
        kube.endpoint_slice(other, "db-a", service="db", addresses=["10.2.0.7"], ports=[("http", 5432, "TCP")])
        kube.external_name_service(other, "ext2", "alias.ext.test")
        kube.pod(other, "client-b", ips=[other_pod_ip])
        kube.pod(ns, "client", ips=[pod_ip])  # (the last object: both servers have seen all once they see it)
        sources = {"pod": pod_ip, "other-pod": other_pod_ip, "none": LOOPBACK}
        values = {"ns": ns, "other": other}
        up = free_port()
        with unbound(up, UPSTREAM, zone=".", zone_type="static"):
            theirs = coredns(corefile("", kube_api.kubeconfig, up), probe_name="cluster.local.")
            port = free_port()
            path = tmp_path / "Corefile"
            path.write_text(corefile(f":{port}", kube_api.kubeconfig, up))
            with interkube_process(path, port) as proc:
                sentinel = Ask("sentinel", f"db.{{other}}.{{ns}}.{S}")
                for p in (theirs.port, port):  # until both know the pod (and so every object before it)
                    wait_until(lambda p=p: _walked(p, sentinel.name.format(**values), pod_ip),
                               lambda p=p: f"no autopath answer on port {p}: interkube says\n"
                                           f"{process_output(proc)[-2000:]}", 60, every=0.2)
                results = []
                for ask in ASKS:
                    name = ask.name.format(**values)
                    a = exchange(theirs.port, ask, name, sources[ask.source])
                    b = exchange(port, ask, name, sources[ask.source])
                    results.append(Result(ask.case(), name, summary(a), summary(b)))
    finally:
        kube_api.delete_namespace(other)
    check_comparison("autopath differential", results, COMPARISON, peer_report)
    # Not a comparison of failures: the walked questions got their CNAME answers from both.
    walked = [r for r in results if r.case.id.startswith(("other-", "upstream-", "third")) and not r.differs]
    assert sum(1 for r in walked if any(" CNAME " in line for line in r.interkube["answer"])) >= 8
    assert not [r.case.id for r in results if r.interkube["rcode"] == "no answer"]


def _walked(port: int, name: str, source: str) -> bool:
    reply = exchange(port, Ask("sentinel", name), name, source)
    return reply is not None and any(rrset.rdtype == dns.rdatatype.CNAME for rrset in reply.answer)

