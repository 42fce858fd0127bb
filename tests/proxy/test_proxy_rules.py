"""What the proxy writes to nftables, without nftables: Service ports from an index, chain names,
and transactions that change only what changed."""

from __future__ import annotations

import ipaddress
import re

from interkube.kube.index import ClusterIndex
from interkube.kube.objects import ENDPOINT_SLICES, SERVICES, EndpointSlice, Service
from interkube.proxy import rules
from interkube.proxy.nft import failure
from interkube.proxy.rules import Backend, ServicePort, Transaction
from testkit.fakekube import endpoint_slice, service

NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9/._-]*")


def index_of(*objects: dict[str, object]) -> ClusterIndex:
    index = ClusterIndex()
    for obj in objects:
        kind = SERVICES if obj["kind"] == "Service" else ENDPOINT_SLICES
        record = kind.from_dict(obj).record
        assert isinstance(record, Service | EndpointSlice)
        index.put(kind.resource, (record.namespace, record.name), record)
    return index


def ports_of(index: ClusterIndex, name: str = "web") -> list[ServicePort]:
    skipped: list[tuple[str, str]] = []
    svc = index.service("default", name)
    assert svc is not None
    out = rules.service_ports("c1", index, svc, (), lambda reason, ident: skipped.append((reason, ident)))
    assert not skipped
    return out


def test_named_target_ports_resolve_per_endpoint() -> None:
    # Two sets of pods name the same port with different numbers: each keeps its own.
    index = index_of(
        service("default", "web", ports=(("http", 80, "TCP"),)),
        endpoint_slice("default", "web-a", "web", [{"ip": "10.1.0.1"}], ports=(("http", 8080, "TCP"),)),
        endpoint_slice("default", "web-b", "web", [{"ip": "10.1.0.2"}, {"ip": "10.1.0.3", "ready": False}],
                       ports=(("http", 9090, "TCP"),)),
        endpoint_slice("default", "web-c", "web", [{"ip": "10.1.0.4"}], ports=(("metrics", 9100, "TCP"),)),
    )
    (port,) = ports_of(index)
    assert port.endpoints == (Backend("10.1.0.1", 8080), Backend("10.1.0.2", 9090))
    assert (port.vip, port.protocol, port.port, port.label) == ("10.96.0.10", "tcp", 80, "c1/default/web:http")


def test_dual_stack_takes_each_family_its_endpoints() -> None:
    index = index_of(
        service("default", "web", cluster_ips=("10.96.0.10", "fd00::10")),
        endpoint_slice("default", "web-4", "web", [{"ip": "10.1.0.1"}]),
        endpoint_slice("default", "web-6", "web", [{"ip": "fd00:1::1"}], address_type="IPv6"),
    )
    v4, v6 = ports_of(index)
    assert (v4.family, v4.endpoints) == (4, (Backend("10.1.0.1", 8080),))
    assert (v6.family, v6.endpoints) == (6, (Backend("fd00:1::1", 8080),))
    ep6 = rules.contribution(v6).chains
    assert any("dnat to [fd00:1::1]:8080" in rule for rules_ in ep6.values() for rule in rules_)


def test_services_the_proxy_cannot_program_are_skipped() -> None:
    bad_protocol = service("default", "web", ports=(("x", 80, "ICMP"),))
    outside = service("default", "web", cluster_ips=("10.200.0.1",))
    for obj, reason, cidrs in ((bad_protocol, "protocol", ()), (outside, "outside service_cidr",
                                                                 (ipaddress.ip_network("10.96.0.0/16"),))):
        index = index_of(obj)
        skipped: list[tuple[str, str]] = []
        svc = index.service("default", "web")
        assert svc is not None
        assert rules.service_ports("c1", index, svc, cidrs, lambda r, i, s=skipped: s.append((r, i))) == []
        assert skipped == [(reason, "default/web")]


def sp(cluster: str, n: int = 1, endpoints: int = 3, affinity: int = 0) -> ServicePort:
    return ServicePort(cluster, "default", f"web{n}", "http", "tcp", f"10.96.{n // 250}.{n % 250 + 1}", 80,
                       tuple(Backend(f"10.1.{n // 250}.{i}", 8080) for i in range(1, endpoints + 1)), affinity)


def test_chain_names_never_clash_between_clusters_and_stay_short() -> None:
    a, b = sp("a"), sp("b")
    names_a = set(rules.contribution(a).chains)
    names_b = set(rules.contribution(b).chains)
    assert len(names_a) == 1 and not names_a & names_b   # one chain per Service port
    assert all(NAME.fullmatch(n) for n in names_a | names_b)
    assert rules.service_chain(a).endswith("-a/default/web1/tcp/http")
    long = sp("a-cluster-name-much-longer-than-twenty-four-characters")
    assert "a-cluster-name" not in rules.service_chain(long)
    very = ServicePort("c", "n" * 63, "s" * 63, "p" * 15, "tcp", "fd00::1", 80,
                       (Backend("fd00:1:2:3:4:5:6:7", 65535),), 10800)
    for name in [*rules.contribution(very).chains, *rules.contribution(very).sets]:
        assert len(name) <= 200 and NAME.fullmatch(name), name


def test_one_endpoint_change_is_a_small_transaction_whatever_the_number_of_services() -> None:
    def lines_for_one_change(services: int) -> list[str]:
        before = {n: sp("c", n) for n in range(services)}
        programmed = {p.key: rules.contribution(p) for p in before.values()}
        changed = sp("c", 7, endpoints=2)
        txn = Transaction(4)
        txn.change(changed.key, programmed[changed.key], rules.contribution(changed))
        return txn.lines()

    small, large = lines_for_one_change(10), lines_for_one_change(10_000)
    assert len(small) == len(large) <= 6
    # The Service's chain flushed and filled again (the marks' jump, then the two endpoints) with commands
    # that make nft 1.0.6 list no chain first: no `add rule`, no element touched, nothing deleted.
    chain = rules.service_chain(sp("c", 7))
    assert large == [f"flush chain ip interkube {chain}",
                     f"add chain ip interkube {chain} {{ jump mark-proxied ; "
                     "numgen random mod 2 == 0 meta l4proto tcp dnat to 10.1.0.1:8080 ; "
                     "meta l4proto tcp dnat to 10.1.0.2:8080 ; }"]


def test_an_affinity_change_asks_nft_for_sets_only() -> None:
    # The refilled chain names sets made earlier: nft must know them (flushing the always-empty
    # set loads sets, not chains); a set of an endpoint that leaves goes after the chain.
    before, after = sp("c", endpoints=3, affinity=60), sp("c", endpoints=2, affinity=60)
    txn = Transaction(4)
    txn.change(after.key, rules.contribution(before), rules.contribution(after))
    heads = [" ".join(line.split(" ")[:2]) for line in txn.lines()]
    assert heads == ["flush set", "flush chain", "add chain", "delete set"]
    assert txn.lines()[0] == "flush set ip interkube always-empty"


def test_a_service_losing_its_endpoints_moves_to_the_reject_map() -> None:
    with_eps, without = sp("c", endpoints=2), sp("c", endpoints=0)
    txn = Transaction(4)
    txn.change(with_eps.key, rules.contribution(with_eps), rules.contribution(without))
    text = "\n".join(txn.lines())
    assert "delete element ip interkube service-ips { 10.96.0.2 . tcp . 80 }" in text
    assert ("add map ip interkube no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; "
            'elements = { 10.96.0.2 . tcp . 80 comment "c/default/web1:http" : goto reject-chain } }') in text
    assert text.count("delete chain") == 1 and "add chain" not in text


def test_affinity_uses_a_set_per_endpoint() -> None:
    c = rules.contribution(sp("c", endpoints=2, affinity=600))
    assert list(c.sets.values()) == [600, 600]
    (svc_rules,) = c.chains.values()
    aff_a, aff_b = c.sets
    # A client in an endpoint's set goes back to it; a new one is picked at random; both refresh
    # the set of the endpoint they go to.
    assert svc_rules[1:] == (
        f"ip saddr @{aff_a} update @{aff_a} {{ ip saddr }} meta l4proto tcp dnat to 10.1.0.1:8080",
        f"ip saddr @{aff_b} update @{aff_b} {{ ip saddr }} meta l4proto tcp dnat to 10.1.0.2:8080",
        f"numgen random mod 2 == 0 update @{aff_a} {{ ip saddr }} meta l4proto tcp dnat to 10.1.0.1:8080",
        f"update @{aff_b} {{ ip saddr }} meta l4proto tcp dnat to 10.1.0.2:8080")


def test_nft_errors_name_the_failing_line() -> None:
    text = "add table ip interkube\nadd rule ip interkube x bogus\n"
    err = failure("/dev/stdin:2:25-29: Error: No symbol type information\nadd rule ...\n   ^^^^^\n", text)
    assert err.line == 2 and err.text == "add rule ip interkube x bogus"
    assert str(err) == ("nft: line 2 of 2: 'add rule ip interkube x bogus': /dev/stdin:2:25-29: Error: "
                        "No symbol type information")
