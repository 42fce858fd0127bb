"""A cluster's zone in transfer order (interkube.kube.xfr): the records CoreDNS's kubernetes
plugin transfers, Service by Service; the serial that follows the changes of a transferred zone,
and which changes move it."""

from __future__ import annotations

import time

import dns.rdatatype

from interkube.kube.index import ClusterIndex
from interkube.kube.lookup import Options
from interkube.kube.objects import Endpoint, EndpointSlice, Port, Service
from interkube.kube.xfr import ChangeSerial, changes_transfer, zone_records, zone_soa

HTTP = Port("http", "TCP", 80)


def index() -> ClusterIndex:
    idx = ClusterIndex(serial=1000)
    idx.put_service(("b", "web"), Service("b", "web", "ClusterIP", ("10.96.0.10",), False,
                                          (HTTP, Port("", "UDP", 53))))
    idx.put_service(("a", "web"), Service("a", "web", "NodePort", ("10.96.0.11", "fd00::11"), False, (HTTP,)))
    idx.put_service(("a", "hl"), Service("a", "hl", "ClusterIP", (), True, (HTTP,)))
    idx.put_slice(("a", "hl-1"), EndpointSlice("a", "hl-1", "hl", (Port("http", "TCP", 8080), Port("", "TCP", 9)), (
        Endpoint("10.1.0.1", "pet-0", "", True), Endpoint("10.1.0.2", "", "pod-b", True),
        Endpoint("10.1.0.3", "", "", False))))
    idx.put_slice(("a", "hl-2"), EndpointSlice("a", "hl-2", "hl", (Port("http", "TCP", 8080),), (
        Endpoint("fd00::5", "", "", True),)))
    idx.put_service(("a", "ext"), Service("a", "ext", "ExternalName", (), False, (), "www.example.com"))
    idx.put_service(("a", "ext-ip"), Service("a", "ext-ip", "ExternalName", (), False, (), "192.0.2.1"))
    return idx


TTL7 = Options(ttl=7)


def texts(idx: ClusterIndex, opts: Options = TTL7) -> list[list[str]]:
    return [[f"{name} {rs.ttl} {dns.rdatatype.to_text(rs.rdtype)} {rd}" for name, rs in batch for rd in rs]
            for batch in zone_records(idx, "cluster.local.", opts)]


def test_records_service_by_service_as_coredns_transfers_them() -> None:
    assert texts(index()) == [
        ["ext.a.svc.cluster.local. 7 CNAME www.example.com."],
        # ext-ip: an external name that is an address has no CNAME (nothing).
        ["hl.a.svc.cluster.local. 7 A 10.1.0.1", "pet-0.hl.a.svc.cluster.local. 7 A 10.1.0.1",
         "_http._tcp.hl.a.svc.cluster.local. 7 SRV 0 50 8080 pet-0.hl.a.svc.cluster.local.",
         "hl.a.svc.cluster.local. 7 A 10.1.0.2", "10-1-0-2.hl.a.svc.cluster.local. 7 A 10.1.0.2",
         "_http._tcp.hl.a.svc.cluster.local. 7 SRV 0 50 8080 10-1-0-2.hl.a.svc.cluster.local.",
         "hl.a.svc.cluster.local. 7 AAAA fd00::5", "fd00--5.hl.a.svc.cluster.local. 7 AAAA fd00::5",
         "_http._tcp.hl.a.svc.cluster.local. 7 SRV 0 100 8080 fd00--5.hl.a.svc.cluster.local."],
        ["web.a.svc.cluster.local. 7 A 10.96.0.11", "web.a.svc.cluster.local. 7 AAAA fd00::11",
         "web.a.svc.cluster.local. 7 SRV 0 100 80 web.a.svc.cluster.local.",
         "_http._tcp.web.a.svc.cluster.local. 7 SRV 0 100 80 web.a.svc.cluster.local."],
        ["web.b.svc.cluster.local. 7 A 10.96.0.10",
         "web.b.svc.cluster.local. 7 SRV 0 100 80 web.b.svc.cluster.local.",
         "_http._tcp.web.b.svc.cluster.local. 7 SRV 0 100 80 web.b.svc.cluster.local.",
         "web.b.svc.cluster.local. 7 SRV 0 100 53 web.b.svc.cluster.local."]]


def test_endpoint_pod_names_and_the_name_servers() -> None:
    opts = Options(ttl=7, endpoint_pod_names=True, local_ips=("10.0.0.53",))
    batches = texts(index(), opts)
    # No Service has this server's address among its endpoints: ns.dns.<zone>.
    assert batches[0] == ["cluster.local. 7 NS ns.dns.cluster.local.", "ns.dns.cluster.local. 7 A 10.0.0.53"]
    assert "pod-b.hl.a.svc.cluster.local. 7 A 10.1.0.2" in batches[2]


def test_the_soa() -> None:
    soa = zone_soa("cluster.local.", 42, Options(ttl=600))
    assert soa.to_text() == ("cluster.local. 300 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. "
                             "42 7200 1800 86400 600")


def test_the_serial_follows_changes() -> None:
    idx = ClusterIndex(serial=int(time.time()) + 100)  # a list later than the clock says
    serial = ChangeSerial()
    first = serial.read(idx)
    assert first == idx.serial and serial.read(idx) == first
    assert serial.changed() is True       # it was current: answers showing it must go
    assert serial.changed() is False      # still stale: nothing new to drop
    second = serial.read(idx)
    assert second == first + 1            # two changes in one second still make two serials


def test_which_changes_move_it() -> None:
    assert changes_transfer(None)
    assert changes_transfer({("s", "a", "web")}) and changes_transfer({("i", "10.0.0.1")})
    assert not changes_transfer({("n", "a")}) and not changes_transfer({("p", "10.1.0.1"), ("m", "a", "web")})
    assert not changes_transfer(set())
