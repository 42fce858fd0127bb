"""forward: parsing, forwarded DNS between clusters with real upstream processes, and fault injection."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.plugin.services import Services
from interkube.plugins.forward.handler import ForwardHandler
from interkube.plugins.forward.parse import parse
from interkube.server.runtime import build
from testkit.corefile import directive
from testkit.dig import dig, needs_dig
from testkit.fakeupstream import FakeUpstream
from testkit.forwarded import PODS, REMOTE, SRV_NAME, remote_cluster_dns
from testkit.servers import aquery, free_port, in_process, interkube_process, query, unbound
from testkit.waiting import until


def forwarders(server) -> list[ForwardHandler]:  # type: ignore[no-untyped-def]
    return [h for h in server.instance.built.handlers if isinstance(h, ForwardHandler)]


# --- parsing -----------------------------------------------------------------------------------


def test_parse_every_option() -> None:
    cfg = parse(directive(
        "forward example.org 127.0.0.1 127.0.0.2:5300 dns://[::1]:53 tls://127.0.0.3%dns.example {\n"
        " except a.example.org b.example.org\n force_tcp\n expire 30s\n max_fails 5\n"
        " health_check 1s no_rec domain example.org\n policy round_robin\n max_concurrent 100\n"
        " failfast_all_unhealthy_upstreams\n next NXDOMAIN servfail\n tls cert.pem key.pem ca.pem\n"
        " max_age 1m\n max_idle_conns 3\n read_timeout 3s\n max_connect_attempts 4\n doh_method GET\n"
        " next_on_nodata\n failover SERVFAIL refused\n source_address 127.0.0.2\n}"))
    assert cfg.from_zones == ("example.org.",)
    assert [str(s.addr) for s in cfg.to] == ["127.0.0.1:53", "127.0.0.2:5300", "[::1]:53", "tls://127.0.0.3:853"]
    assert cfg.to[3].addr.server_name == "dns.example"  # type: ignore[union-attr]
    assert cfg.except_zones == ("a.example.org.", "b.example.org.")
    assert cfg.force_tcp and cfg.expire == 30 and cfg.max_fails == 5
    assert cfg.health.interval == 1 and not cfg.health.recursion_desired and cfg.health.domain == "example.org."
    assert cfg.policy == "round_robin" and cfg.max_concurrent == 100 and cfg.failfast_all_unhealthy
    assert cfg.next_rcodes == {dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL}
    assert cfg.tls is not None and (cfg.tls.cert, cfg.tls.key, cfg.tls.ca) == ("cert.pem", "key.pem", "ca.pem")
    assert (cfg.max_age, cfg.max_idle_conns, cfg.read_timeout, cfg.max_connect_attempts) == (60, 3, 3, 4)
    assert cfg.doh_method == "GET" and cfg.next_on_nodata and cfg.source_address == "127.0.0.2"
    assert cfg.failover_rcodes == {dns.rcode.SERVFAIL, dns.rcode.REFUSED}


def test_defaults_match_coredns() -> None:
    cfg = parse(directive("forward . 127.0.0.1"))
    assert (cfg.expire, cfg.max_fails, cfg.health.interval, cfg.policy, cfg.max_concurrent) == (10, 2, 0.5, "random", 0)
    assert cfg.health.recursion_desired and cfg.health.domain == "."


def test_reverse_cidr_from() -> None:
    assert parse(directive("forward 10.0.0.0/8 127.0.0.1")).from_zones == ("10.in-addr.arpa.",)


@pytest.mark.parametrize(("text", "message"), [
    ("forward .", "at least 2 arguments"),
    ("forward . 127.0.0.1:99999", "out of range"),
    ("forward . quic://127.0.0.1", r"quic:// upstreams \(DNS over QUIC\) are not supported"),
    ("forward . grpc://127.0.0.1", r"grpc:// upstreams \(DNS over gRPC\) are not supported"),
    ("forward . ftp://127.0.0.1", "unknown upstream transport ftp://"),
    ("forward . https://127.0.0.1/custom-path", "paths are not allowed in HTTPS upstream addresses"),
    ("forward . 127.0.0.1%name", "only meaningful for tls:// and https://"),
    ("forward . tls://127.0.0.1%a {\n tls_servername b\n}", "both forward .* TLS server names are set"),
    ("forward . 127.0.0.1 {\n resolver 127.0.0.1\n}", "option 'resolver' is not supported: .*host names"),
    ("forward . 127.0.0.1 {\n failover NOERROR\n}", "NOERROR cannot be used in failover"),
    ("forward . 127.0.0.1 {\n failover BOGUS\n}", "failover: unknown rcode"),
    ("forward . 127.0.0.1 {\n doh_method PUT\n}", "doh_method must be either POST or GET"),
    ("forward . 127.0.0.1 {\n expire 20s\n max_age 10s\n}", r"max_age \(10s\) must not be less than expire"),
    ("forward . 127.0.0.1 {\n read_timeout 0\n}", "read_timeout must be positive"),
    ("forward . 127.0.0.1 {\n max_idle_conns -1\n}", "below the minimum"),
    ("forward . 127.0.0.1 {\n source_address example\n}", "invalid IP address"),
    ("forward . 127.0.0.1 {\n next_on_nodata yes\n}", "expected exactly 0 arguments"),
    ("forward . " + " ".join(f"127.0.0.{i}" for i in range(1, 17)), "more than 15"),
    ("forward . 127.0.0.1 {\n bogus\n}", "unknown option 'bogus'"),
    ("forward . 127.0.0.1 {\n policy fastest\n}", "unknown policy"),
    ("forward . 127.0.0.1 {\n next NOPE\n}", "unknown rcode"),
    ("forward . 127.0.0.1 {\n health_check 1s maybe\n}", "unexpected 'maybe'"),
    ("forward . 127.0.0.1 {\n expire soon\n}", "invalid duration"),
    ("forward . 127.0.0.1 {\n max_concurrent -1\n}", "below the minimum"),
])
def test_parse_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse(directive(text))
    assert info.value.file == "Corefile" and info.value.line >= 2


def test_missing_resolv_conf_is_a_setup_error(tmp_path: Path) -> None:
    blocks = parse_text(f". {{\n forward . {tmp_path}/nope.conf\n}}\n")
    with pytest.raises(ConfigError, match=r"Corefile:2: forward: .*neither an IP address nor an existing file"):
        build(blocks, "Corefile", Services())


async def test_resolv_conf_upstreams(tmp_path: Path) -> None:
    up = await FakeUpstream().start()
    up.behaviour.records = {("a.example.", "A"): ["192.0.2.7"]}
    resolv = tmp_path / "resolv.conf"
    # Upstreams from a resolv.conf file use port 53; point it at the fake via a file the test
    # writes, and check the parse separately from the port.
    resolv.write_text("# comment\nsearch example\nnameserver 127.0.0.1\nnameserver ::1\noptions ndots:5\n")
    from interkube.upstream.address import resolv_conf_nameservers

    assert [str(a) for a in resolv_conf_nameservers(str(resolv))] == ["127.0.0.1:53", "[::1]:53"]
    await up.stop()


# --- forwarded DNS between clusters, with real processes ---------------------------------------


@pytest.fixture
def forwarded_dns(tmp_path: Path):  # type: ignore[no-untyped-def]
    """dnsmasq plays the remote cluster's DNS, unbound the local one, interkube the proxy."""
    port_a, port_b, port = free_port(), free_port(), free_port()
    core = tmp_path / "Corefile"
    core.write_text(f"{REMOTE}:{port} {{\n bind 127.0.0.1\n errors\n forward . 127.0.0.1:{port_a}\n}}\n"
                    f".:{port} {{\n bind 127.0.0.1\n errors\n forward . 127.0.0.1:{port_b}\n}}\n")
    with remote_cluster_dns(port_a) as remote_dns, \
            unbound(port_b, ["kube-dns.kube-system.svc.cluster.local. 30 IN A 172.20.0.10"], zone="cluster.local."), \
            interkube_process(core, port) as proc:
        yield port, remote_dns, proc


def ask(port: int, *args: str) -> str:
    """What dig prints; the proxy waits on its upstreams, so dig waits longer than for loopback."""
    return dig(port, *args, wait=8, check=False)


@needs_dig
def test_forwarded_dns_srv_with_additional_records(forwarded_dns) -> None:  # type: ignore[no-untyped-def]
    port, _, _ = forwarded_dns
    out = ask(port, "SRV", SRV_NAME)
    assert "status: NOERROR" in out
    msg = query(SRV_NAME, "SRV", port)
    targets = sorted(rr.target.to_text() for rr in msg.answer[0])
    assert targets == sorted(f"{pod}.cb-example-srv.{REMOTE}." for pod in PODS)
    assert all(rr.port == 11210 and rr.weight == 33 for rr in msg.answer[0])
    extra = {rrset.name.to_text(): rrset[0].address for rrset in msg.additional if rrset.rdtype == 1}
    assert extra == {f"{pod}.cb-example-srv.{REMOTE}.": ip for pod, ip in PODS.items()}
    records = ask(port, "+noall", "+answer", "+additional", "SRV", SRV_NAME)
    assert len(re.findall(r"\sIN\s+SRV\s+0\s+33\s+11210\s", records)) == 3
    assert len(re.findall(r"\sIN\s+A\s+10\.1\.", records)) == 3


@needs_dig
def test_forwarded_dns_other_names_go_to_the_local_dns(forwarded_dns) -> None:  # type: ignore[no-untyped-def]
    port, _, _ = forwarded_dns
    assert ask(port, "+short", "kube-dns.kube-system.svc.cluster.local").split() == ["172.20.0.10"]
    assert ask(port, "+short", "+tcp", "kube-dns.kube-system.svc.cluster.local").split() == ["172.20.0.10"]


@needs_dig
def test_forwarded_dns_remote_down_gives_servfail_and_the_rest_works(  # type: ignore[no-untyped-def]
        forwarded_dns) -> None:
    from testkit.servers import process_output, stop_process

    port, remote_dns, proc = forwarded_dns
    stop_process(remote_dns)
    out = ask(port, "SRV", SRV_NAME)
    # An answer at all: dig makes one try (+tries=1) and gives up after +time, so forward
    # ended the exchange itself (the remote refused, or forward's own deadline passed).
    assert "status: SERVFAIL" in out
    assert ask(port, "+short", "kube-dns.kube-system.svc.cluster.local").split() == ["172.20.0.10"]
    assert "plugin/errors" in process_output(proc)
    # And it was forward's failure against the dead remote that errors reported.
    assert re.search(rf"plugin/errors: 2 _couchbase\._tcp\.cb-example-srv\.{re.escape(REMOTE)}\. SRV: "
                     rf"127\.0\.0\.1:\d+: ", process_output(proc))


# --- fault injection with a scripted upstream ---------------------------------------------------


@pytest.fixture
async def fakes():  # type: ignore[no-untyped-def]
    ups = [await FakeUpstream().start() for _ in range(3)]
    for up in ups:
        up.behaviour.records = {("a.example.", "A"): ["192.0.2.1"]}
    yield ups
    for up in ups:
        await up.stop()


def fwd_corefile(port: int, *upstreams: str, options: str = "", extra: str = "") -> str:
    block = f" {{\n{options}\n }}" if options else ""
    return f"example.:{port} {{\n bind 127.0.0.1\n{extra}\n forward . {' '.join(upstreams)}{block}\n}}\n"


async def test_answer_passes_through_byte_exact_apart_from_id(fakes) -> None:  # type: ignore[no-untyped-def]
    up = fakes[0]
    sent: list[bytes] = []

    def answer(query: dns.message.Message) -> dns.message.Message:
        resp = dns.message.make_response(query)
        resp.answer.append(dns.rrset.from_text(query.question[0].name, 1234, "IN", "A", "192.0.2.99"))
        sent.append(resp.to_wire())
        return resp

    import dns.rrset

    up.behaviour.custom = answer
    port = free_port()
    async with in_process(fwd_corefile(port, up.address)):
        q = dns.message.make_query("a.example.", "A")
        import dns.asyncquery

        raw = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=3)
        assert raw.id == q.id
        got = raw.to_wire()
    assert got[2:] == sent[0][2:]


async def test_health_check_marks_down_and_back_up(fakes) -> None:  # type: ignore[no-untyped-def]
    up = fakes[0]
    port = free_port()
    async with in_process(fwd_corefile(port, up.address, options="  max_fails 1\n  health_check 50ms")) as server:
        upstream = forwarders(server)[0].upstreams[0]
        assert (await aquery("a.example.", "A", port)).rcode() == dns.rcode.NOERROR
        up.behaviour.silent = True
        r = await aquery("a.example.", "A", port, timeout=10)
        assert r.rcode() == dns.rcode.SERVFAIL
        await until(lambda: upstream.down, "the upstream marked down", timeout=10)
        assert upstream.down and upstream.stats.healthcheck_failures >= 2
        up.behaviour.silent = False
        await until(lambda: not upstream.down, "the upstream marked up again", timeout=10)
        assert not upstream.down and upstream.fails == 0
        assert (await aquery("a.example.", "A", port)).rcode() == dns.rcode.NOERROR


async def test_down_upstream_is_skipped(fakes) -> None:  # type: ignore[no-untyped-def]
    good, bad = fakes[0], fakes[1]
    bad.behaviour.silent = True
    port = free_port()
    opts = "  policy sequential\n  max_fails 1\n  health_check 50ms"
    async with in_process(fwd_corefile(port, bad.address, good.address, options=opts)) as server:
        dead = forwarders(server)[0].upstreams[0]
        r = await aquery("a.example.", "A", port, timeout=10)  # first try: bad times out, good answers
        assert r.rcode() == dns.rcode.NOERROR
        await until(lambda: dead.down, "the silent upstream marked down", timeout=10)
        before = bad.count()
        for _ in range(5):
            assert (await aquery("a.example.", "A", port)).rcode() == dns.rcode.NOERROR
        # Only health probes reach the dead one now, no client query.
        client_queries = [q for _, q in bad.queries[before:] if q.question[0].name.to_text() == "a.example."]
        assert client_queries == []


async def test_failfast_when_all_upstreams_are_down(fakes) -> None:  # type: ignore[no-untyped-def]
    up = fakes[0]
    up.behaviour.silent = True
    port = free_port()
    opts = "  max_fails 1\n  health_check 50ms\n  failfast_all_unhealthy_upstreams"
    async with in_process(fwd_corefile(port, up.address, options=opts)) as server:
        upstream = forwarders(server)[0].upstreams[0]
        await aquery("a.example.", "A", port, timeout=10)
        await until(lambda: upstream.down, "the upstream marked down", timeout=10)
        before = sum(1 for _, q in up.queries if q.question[0].name.to_text() == "a.example.")
        r = await aquery("a.example.", "A", port)
        assert r.rcode() == dns.rcode.SERVFAIL
        after = sum(1 for _, q in up.queries if q.question[0].name.to_text() == "a.example.")
        assert after == before  # nothing was sent


@pytest.mark.parametrize(("policy", "queries", "check"), [
    ("sequential", 20, lambda counts: counts == [20, 0, 0]),
    ("round_robin", 20, lambda counts: sorted(counts) in ([6, 7, 7], [7, 7, 6]) or max(counts) - min(counts) <= 1),
    # P(some upstream never picked) < 3*(2/3)^n: about 1 in 1,100 runs for 20 queries (a test
    # that fails at random), 1 in 10^17 for 100.
    ("random", 100, lambda counts: all(c > 0 for c in counts)),
])
async def test_policies(fakes, policy: str, queries: int, check) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    async with in_process(fwd_corefile(port, *(u.address for u in fakes), options=f"  policy {policy}")):
        for _ in range(queries):
            assert (await aquery("a.example.", "A", port)).rcode() == dns.rcode.NOERROR
    counts = [u.count() for u in fakes]
    assert check(counts), counts


async def test_truncated_udp_answer_is_retried_over_tcp(fakes) -> None:  # type: ignore[no-untyped-def]
    up = fakes[0]
    up.behaviour.truncate_udp = True
    port = free_port()
    async with in_process(fwd_corefile(port, up.address)):
        r = await aquery("a.example.", "A", port)
        assert not r.flags & dns.flags.TC and r.answer[0][0].address == "192.0.2.1"
    assert up.count("udp") == 1 and up.count("tcp") == 1


async def test_force_tcp_and_prefer_udp(fakes) -> None:  # type: ignore[no-untyped-def]
    a, b = fakes[0], fakes[1]
    port_a, port_b = free_port(), free_port()
    async with in_process(fwd_corefile(port_a, a.address, options="  force_tcp")):
        await aquery("a.example.", "A", port_a)
    async with in_process(fwd_corefile(port_b, b.address, options="  prefer_udp")):
        await aquery("a.example.", "A", port_b, tcp=True)
    assert (a.count("udp"), a.count("tcp")) == (0, 1)
    assert (b.count("udp"), b.count("tcp")) == (1, 0)


async def test_tcp_connection_is_reused_and_pipelined(fakes) -> None:  # type: ignore[no-untyped-def]
    up = fakes[0]
    up.behaviour.delay = 0.05
    port = free_port()
    async with in_process(fwd_corefile(port, up.address, options="  force_tcp")):
        results = await asyncio.gather(*(aquery("a.example.", "A", port) for _ in range(20)))
        assert all(r.rcode() == dns.rcode.NOERROR for r in results)
        await aquery("a.example.", "A", port)
    assert up.tcp_connections == 1 and up.count("tcp") == 21


async def test_max_concurrent_refuses_the_excess(fakes) -> None:  # type: ignore[no-untyped-def]
    up = fakes[0]
    up.behaviour.delay = 0.5
    port = free_port()
    async with in_process(fwd_corefile(port, up.address, options="  max_concurrent 2")) as server:
        results = await asyncio.gather(*(aquery("a.example.", "A", port) for _ in range(5)))
        rcodes = sorted(dns.rcode.to_text(r.rcode()) for r in results)
        assert rcodes == ["NOERROR", "NOERROR", "REFUSED", "REFUSED", "REFUSED"]
        assert forwarders(server)[0].stats.max_concurrent_rejects == 3


async def test_except_hands_over_and_next_without_a_following_forward_is_ignored(  # type: ignore[no-untyped-def]
        fakes) -> None:
    up = fakes[0]
    port = free_port()
    # Nothing follows forward here, so "next plugin" shows as the chain's SERVFAIL.
    opts = "  except skip.example.\n  next NXDOMAIN"
    async with in_process(fwd_corefile(port, up.address, options=opts)):
        assert (await aquery("a.example.", "A", port)).rcode() == dns.rcode.NOERROR
        before = up.count()
        assert (await aquery("x.skip.example.", "A", port)).rcode() == dns.rcode.SERVFAIL
        assert up.count() == before  # never forwarded
        # The fake says NXDOMAIN for unknown names. As in CoreDNS 1.15, `next` hands an answer
        # only to a following forward: with none, the NXDOMAIN is the answer.
        assert (await aquery("missing.example.", "A", port)).rcode() == dns.rcode.NXDOMAIN
        assert up.count() == before + 1


async def test_answer_with_a_wrong_question_is_ignored(fakes) -> None:  # type: ignore[no-untyped-def]
    bad, good = fakes[0], fakes[1]

    def wrong(query: dns.message.Message) -> dns.message.Message:
        other = dns.message.make_query("evil.example.", "A")
        resp = dns.message.make_response(other)
        resp.id = query.id
        resp.answer.append(dns.rrset.from_text("evil.example.", 30, "IN", "A", "203.0.113.66"))
        return resp

    import dns.rrset

    bad.behaviour.custom = wrong
    port = free_port()
    async with in_process(fwd_corefile(port, bad.address, good.address, options="  policy sequential")):
        r = await aquery("a.example.", "A", port, timeout=10)
        assert r.answer[0][0].address == "192.0.2.1"  # from the good one, after the bad timed out
