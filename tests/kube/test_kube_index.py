"""The cluster index: records in, lookups out, and the dependency keys each change reports."""

from __future__ import annotations

from interkube.kube.index import ClusterIndex
from interkube.kube.objects import (
    SERVICES,
    Endpoint,
    EndpointSlice,
    Pod,
    Port,
    Service,
    ServiceExport,
)

HTTP = (Port("http", "TCP", 80),)


def svc(name: str, *ips: str, ns: str = "app", **kw: object) -> Service:
    return Service(ns, name, "ClusterIP", tuple(ips), False, HTTP, **kw)  # type: ignore[arg-type]


def eps(name: str, service: str, *endpoints: Endpoint, ns: str = "app") -> EndpointSlice:
    return EndpointSlice(ns, name, service, HTTP, tuple(endpoints))


def ep(ip: str, ready: bool = True, hostname: str = "") -> Endpoint:
    return Endpoint(ip, hostname, "", ready)


def test_services_report_their_name_namespace_and_addresses() -> None:
    index = ClusterIndex()
    assert index.put_service(("app", "web"), svc("web", "10.0.0.1")) == {
        ("s", "app", "web"), ("n", "app"), ("i", "10.0.0.1")}
    assert index.services_at("10.0.0.1")[0].name == "web" and index.namespace_exists("app")
    # A second Service: the namespace already existed.
    assert index.put_service(("app", "api"), svc("api", "10.0.0.2")) == {("s", "app", "api"), ("i", "10.0.0.2")}
    # The same object again (a status-only update): nothing to drop.
    assert index.put_service(("app", "web"), svc("web", "10.0.0.1")) == set()
    # A new address: the old and the new one's PTR answers change.
    assert index.put_service(("app", "web"), svc("web", "10.0.0.3")) == {
        ("s", "app", "web"), ("i", "10.0.0.1"), ("i", "10.0.0.3")}
    assert index.services_at("10.0.0.1") == ()
    index.put_service(("app", "api"), None)
    assert index.put_service(("app", "web"), None) == {("s", "app", "web"), ("n", "app"), ("i", "10.0.0.3")}
    assert not index.namespace_exists("app")


def test_a_slice_change_reports_only_the_addresses_it_changed() -> None:
    index = ClusterIndex()
    many = [ep(f"10.1.0.{i}") for i in range(1, 101)]
    index.put_slice(("app", "hl-1"), eps("hl-1", "hl", *many))
    flipped = list(many)
    flipped[41] = ep("10.1.0.42", ready=False)
    changed = index.put_slice(("app", "hl-1"), eps("hl-1", "hl", *flipped))
    assert changed == {("s", "app", "hl"), ("i", "10.1.0.42")}
    assert [e.ready for _, e in index.endpoints_at("10.1.0.42")] == [False]
    # Moving a slice to another Service changes both and every address's PTR.
    changed = index.put_slice(("app", "hl-1"), eps("hl-1", "other", ep("10.1.0.1")))
    assert ("s", "app", "hl") in changed and ("s", "app", "other") in changed and ("i", "10.1.0.1") in changed
    assert index.slices("app", "hl") == () and index.endpoints_at("10.1.0.50") == ()
    assert index.put_slice(("app", "hl-1"), None) == {("s", "app", "other"), ("i", "10.1.0.1")}
    assert index.endpoints_at("10.1.0.1") == ()


def test_an_address_shared_by_several_slices() -> None:
    index = ClusterIndex()
    index.put_slice(("a", "s1"), eps("s1", "x", ep("10.2.0.1"), ns="a"))
    index.put_slice(("b", "s2"), eps("s2", "y", ep("10.2.0.1"), ns="b"))
    assert {s.namespace for s, _ in index.endpoints_at("10.2.0.1")} == {"a", "b"}
    index.put_slice(("a", "s1"), None)
    assert [s.namespace for s, _ in index.endpoints_at("10.2.0.1")] == ["b"]


def test_pods_by_address_and_namespace() -> None:
    index = ClusterIndex()
    assert index.put_pod(("app", "p1"), Pod("app", "p1", "")) == set()  # no IP yet: nothing to serve
    assert index.put_pod(("app", "p1"), Pod("app", "p1", "10.3.0.1")) == {("p", "10.3.0.1"), ("n", "app")}
    index.put_pod(("other", "p2"), Pod("other", "p2", "10.3.0.1"))  # host-network pods share node IPs
    assert sorted(index.pod_namespaces_at("10.3.0.1")) == ["app", "other"]
    assert index.put_pod(("app", "p1"), None) == {("p", "10.3.0.1"), ("n", "app")}
    assert index.pod_namespaces_at("10.3.0.1") == ("other",)


def test_mcs_objects_and_unknown_resources() -> None:
    index = ClusterIndex()
    assert index.put("serviceexports", ("app", "web"), ServiceExport("app", "web")) == {("m", "app", "web")}
    assert index.service_export("app", "web") == ServiceExport("app", "web")
    try:
        index.put("configmaps", ("a", "b"), None)
    except ValueError as exc:
        assert "configmaps" in str(exc)
    else:
        raise AssertionError("an unknown resource was accepted")


def test_records_decode_only_what_dns_needs() -> None:
    raw = (b'{"metadata": {"name": "web", "namespace": "app", "resourceVersion": "7", "labels": {"a": "b"},'
           b' "managedFields": [{"huge": "yes"}]}, "spec": {"type": "ClusterIP", "clusterIP": "10.0.0.1",'
           b' "clusterIPs": ["10.0.0.1", "fd00::1"], "ports": [{"name": "HTTP", "port": 80, "protocol": "tcp",'
           b' "targetPort": "web"}], "selector": {"app": "web"}}, "status": {}}')
    read = SERVICES.from_json(raw)
    assert (read.namespace, read.name, read.resource_version, dict(read.labels)) == ("app", "web", "7", {"a": "b"})
    assert read.record == Service("app", "web", "ClusterIP", ("10.0.0.1", "fd00::1"), False,
                                  (Port("http", "TCP", 80),))
