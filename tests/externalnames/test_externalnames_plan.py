"""What the ExternalName controller plans (interkube.externalnames.plan): names, hosts of headless
Services, clashes, invalid names, and the changes against what the target holds."""

from __future__ import annotations

from typing import Any

from interkube.externalnames import plan
from interkube.externalnames.controller import SourceFilters
from interkube.externalnames.plan import CONFLICT, CREATE, DELETE, UPDATE, Naming
from interkube.kube.index import ClusterIndex
from interkube.kube.labels import parse_selector
from interkube.kube.objects import ENDPOINT_SLICES, SERVICES, Endpoint, EndpointSlice, Port, Service

PG = (Port("pg", "TCP", 5432),)


def service(ns: str, name: str, *, headless: bool = False, ports: tuple[Port, ...] = PG,
            publish_not_ready: bool = False) -> Service:
    return Service(ns, name, "ClusterIP", () if headless else ("10.96.0.10",), headless, ports,
                   publish_not_ready=publish_not_ready)


def index_of(*services: Service, endpoints: dict[str, list[Endpoint]] | None = None) -> ClusterIndex:
    index = ClusterIndex()
    for svc in services:
        index.put_service((svc.namespace, svc.name), svc)
    for key, eps in (endpoints or {}).items():
        ns, name = key.split("/")
        index.put_slice((ns, f"{name}-x"), EndpointSlice(ns, f"{name}-x", name, PG, tuple(eps)))
    return index


def ep(host: str, ready: bool = True, ip: str = "10.244.0.5") -> Endpoint:
    return Endpoint(ip, host, host, ready)


def externals(index: ClusterIndex, naming: Naming) -> dict[str, str]:
    desired, _ = plan.desired_in(index, naming)
    return {f"{ns}/{name}": d.external_name for (ns, name), d in desired.items()}


def test_names_are_those_the_targets_interkube_serves_for_the_source() -> None:
    index = index_of(service("shop", "web"), service("shop", "db", headless=True),
                     endpoints={"shop/db": [ep("db-0"), ep("db-1", ready=False), ep("", ip="10.244.0.9")]})
    assert externals(index, Naming.of("a")) == {
        "shop/web": "web.shop.svc.cluster.a",
        "shop/db": "db.shop.svc.cluster.a",
        "shop/db-0": "db-0.db.shop.svc.cluster.a",   # ready and named; db-1 is not ready, the third has no name
    }
    # A merged zone names the cluster in an endpoint's name (the clusterset plugin's form).
    assert externals(index, Naming.of("a", "cluster.all.")) == {
        "shop/web": "web.shop.svc.cluster.all",
        "shop/db": "db.shop.svc.cluster.all",
        "shop/db-0": "db-0.a.db.shop.svc.cluster.all",
    }
    desired, _ = plan.desired_in(index, Naming.of("a"))
    assert desired[("shop", "db-0")].ports == PG
    assert desired[("shop", "db-0")].origin == "a/shop/db/db-0"


def test_not_ready_hosts_count_when_the_service_publishes_them() -> None:
    index = index_of(service("shop", "db", headless=True, publish_not_ready=True),
                     endpoints={"shop/db": [ep("db-1", ready=False)]})
    assert "shop/db-1" in externals(index, Naming.of("a"))


def test_a_hostname_taken_or_unfit_is_skipped_with_the_reason() -> None:
    index = index_of(service("shop", "db-0"), service("shop", "db", headless=True),
                     service("shop", "other", headless=True),
                     endpoints={"shop/db": [ep("db-0"), ep("9-lives")], "shop/other": [ep("x-0")]})
    desired, skipped = plan.desired_in(index, Naming.of("a"))
    assert desired[("shop", "db-0")].external_name == "db-0.shop.svc.cluster.a"  # the Service wins
    reasons = {(s.namespace, s.name): s.reason for s in skipped}
    assert "already taken by a/shop/db-0" in reasons[("shop", "db-0")]
    assert "cannot be a Service name" in reasons[("shop", "9-lives")]
    assert desired[("shop", "x-0")].external_name == "x-0.other.shop.svc.cluster.a"


def test_an_external_name_longer_than_the_api_takes_is_skipped() -> None:
    long_ns = "n" * 63
    index = index_of(service(long_ns, "s" * 63))
    desired, skipped = plan.desired_in(index, Naming.of("a" * 63, "cluster." + "a" * 63 + ".example." + "e" * 63))
    assert not desired
    assert "is not a valid host name" in skipped[0].reason


def found(name: str, external_name: str, *, owned: bool = True, ports: tuple[Port, ...] = PG,
          origin: str | None = None) -> plan.Found:
    labels: dict[str, Any] = plan.ownership_labels(Naming.of("a")) if owned else {}
    return plan.Found("shop", name, "uid-" + name, "7", owned, "ExternalName", external_name, ports,
                      origin if origin is not None else f"a/shop/{name}", labels)


def test_changes_from_what_the_target_holds() -> None:
    index = index_of(service("shop", "new"), service("shop", "same"), service("shop", "moved"),
                     service("shop", "mine"))
    desired, _ = plan.desired_in(index, Naming.of("a"))
    owned = {f.key: f for f in (found("same", "same.shop.svc.cluster.a"), found("moved", "moved.shop.svc.cluster.b"),
                                found("gone", "gone.shop.svc.cluster.a"))}
    others = {("shop", "mine"): found("mine", "", owned=False)}
    got = {(c.action, c.key[1]) for c in plan.changes(desired, owned, others)}
    assert got == {(CREATE, "new"), (UPDATE, "moved"), (DELETE, "gone"), (CONFLICT, "mine")}
    # Only the keys asked for (an incremental pass).
    assert [(c.action, c.key[1]) for c in plan.changes(desired, owned, others, [("shop", "gone")])] == [
        (DELETE, "gone")]


def test_found_reads_ownership_from_labels_of_this_source_only() -> None:
    naming = Naming.of("a")
    mine = {"metadata": {"name": "web", "namespace": "shop", "labels": plan.ownership_labels(naming),
                         "annotations": {plan.ORIGIN: "a/shop/web"}, "uid": "u", "resourceVersion": "3"},
            "spec": {"type": "ExternalName", "externalName": "web.shop.svc.cluster.a",
                     "ports": [{"name": "pg", "port": 5432, "protocol": "TCP", "targetPort": 5432}]}}
    got = plan.found_from(mine, naming)
    assert got.owned and got.matches(plan.desired_in(index_of(service("shop", "web")), naming)[0][("shop", "web")])
    other_source = plan.found_from(mine, Naming.of("b"))
    assert not other_source.owned
    assert other_source.maker() == "interkube externalnames for source cluster a"


def test_the_source_keeps_selected_services_and_never_the_controllers_own() -> None:
    filters = SourceFilters(service_selector=parse_selector("app=db"))
    wire = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "shop",
                                                                "labels": {"app": "db"}},
            "spec": {"clusterIP": "10.96.0.3", "ports": [{"port": 5432}]}}
    assert filters.keep(SERVICES, SERVICES.from_dict(wire)) is not None
    mirrored = {**wire, "metadata": {**wire["metadata"], "labels": {"app": "db", **plan.ownership_labels(
        Naming.of("c"))}}}
    assert filters.keep(SERVICES, SERVICES.from_dict(mirrored)) is None
    unselected = {**wire, "metadata": {**wire["metadata"], "labels": {}}}
    assert filters.keep(SERVICES, SERVICES.from_dict(unselected)) is None
    # EndpointSlices carry no Service labels: kept whatever the selector.
    slice_ = {"metadata": {"name": "db-x", "namespace": "shop", "labels": {"kubernetes.io/service-name": "db"}},
              "addressType": "IPv4", "endpoints": []}
    assert filters.keep(ENDPOINT_SLICES, ENDPOINT_SLICES.from_dict(slice_)) is not None
    assert filters.kinds() == (SERVICES, ENDPOINT_SLICES)
