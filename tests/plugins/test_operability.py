"""health, ready, prometheus over real HTTP; acl, loadbalance, loop; lameduck shutdown."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import dns.asyncquery
import dns.edns
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from interkube.errors import ConfigError
from interkube.plugins.acl.parse import parse as parse_acl
from interkube.plugins.loadbalance.handler import shuffle_answer
from interkube.corefile.parser import parse_text
from interkube.plugin.services import Services
from testkit.fakeupstream import FakeUpstream
from testkit.servers import aquery, free_port, in_process, stop_process, wait_for_dns


def handler_of(server, plugin: str):  # type: ignore[no-untyped-def]
    return next(h for h in server.instance.built.handlers if h.plugin == plugin)


async def http_get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


@pytest.fixture
async def upstream():  # type: ignore[no-untyped-def]
    up = await FakeUpstream().start()
    up.behaviour.records = {("a.example.", "A"): ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"],
                            ("mx.example.", "MX"): ["10 a.example.", "20 b.example.", "30 c.example."]}
    yield up
    await up.stop()


# --- health and ready --------------------------------------------------------------------------


async def test_health_and_ready_share_an_address(upstream) -> None:  # type: ignore[no-untyped-def]
    port, http = free_port(), free_port()
    core = (f"example.:{port} {{\n bind 127.0.0.1\n health 127.0.0.1:{http}\n ready 127.0.0.1:{http}\n"
            f" forward . {upstream.address}\n}}\n")
    async with in_process(core) as server:
        assert await http_get(f"http://127.0.0.1:{http}/health") == (200, "OK")
        assert await http_get(f"http://127.0.0.1:{http}/ready") == (200, "OK")
        assert (await http_get(f"http://127.0.0.1:{http}/nope"))[0] == 404

        def not_yet() -> dict[str, bool]:
            return {"kubernetes:east": False, "kubernetes:west": True}

        checks = server.instance.readiness()  # type: ignore[attr-defined]
        server.services.current_readiness = lambda: [*checks, not_yet]  # type: ignore[attr-defined]
        assert await http_get(f"http://127.0.0.1:{http}/ready") == (503, "kubernetes:east\n")
        server.services.lameduck = True  # type: ignore[attr-defined]
        status, body = await http_get(f"http://127.0.0.1:{http}/ready")
        assert status == 503 and body.splitlines() == ["lameduck", "kubernetes:east"]
        assert await http_get(f"http://127.0.0.1:{http}/health") == (200, "OK")


def test_health_address_errors() -> None:
    from interkube.server.runtime import build

    with pytest.raises(ConfigError, match=r"Corefile:2: health: .*IPv6 addresses must be written in brackets"):
        build(parse_text(". {\n health ::1:8080\n}\n"), "Corefile", Services())
    with pytest.raises(ConfigError, match=r"Corefile:3: health: unknown option 'lame'"):
        build(parse_text(". {\n health {\n lame 5s\n }\n}\n"), "Corefile", Services())


async def test_lameduck_keeps_serving_then_exits(tmp_path: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    port, http = free_port(), free_port()
    core = tmp_path / "Corefile"
    core.write_text(f"example.:{port} {{\n bind 127.0.0.1\n health 127.0.0.1:{http} {{\n  lameduck 1s\n }}\n"
                    f" ready 127.0.0.1:{http}\n forward . {upstream.address}\n}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "interkube", "serve", "-conf", str(core)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        await asyncio.get_running_loop().run_in_executor(None, lambda: wait_for_dns(port, proc=proc))
        os.kill(proc.pid, signal.SIGTERM)
        await asyncio.sleep(0.2)
        assert proc.poll() is None  # still in lameduck
        r = await aquery("a.example.", "A", port)
        assert r.rcode() == dns.rcode.NOERROR
        assert (await http_get(f"http://127.0.0.1:{http}/health"))[0] == 200
        assert (await http_get(f"http://127.0.0.1:{http}/ready"))[0] == 503
        code = await asyncio.get_running_loop().run_in_executor(None, lambda: proc.wait(10))
        assert code == 0
    finally:
        stop_process(proc)  # type: ignore[arg-type]


# --- prometheus ---------------------------------------------------------------------------------


def samples(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


async def test_metrics_move_with_queries(upstream) -> None:  # type: ignore[no-untyped-def]
    port, http = free_port(), free_port()
    core = f"example.:{port} {{\n bind 127.0.0.1\n prometheus 127.0.0.1:{http}\n forward . {upstream.address}\n}}\n"
    async with in_process(core):
        for _ in range(3):
            await aquery("a.example.", "A", port)
        await aquery("missing.example.", "AAAA", port, tcp=True)
        await aquery("other.org.", "A", port)  # REFUSED by the server: no zone, no chain, no metric
        status, text = await http_get(f"http://127.0.0.1:{http}/metrics")
    assert status == 200
    server = f'server="dns://127.0.0.1:{port}"'
    req = samples(text, "interkube_dns_requests_total")
    assert req[f'interkube_dns_requests_total{{family="1",proto="udp",{server},type="A",view="",zone="example."}}'] == 3
    assert req[f'interkube_dns_requests_total{{family="1",proto="tcp",{server},type="AAAA",view="",zone="example."}}'] == 1
    resp = samples(text, "interkube_dns_responses_total")
    assert resp[f'interkube_dns_responses_total{{plugin="forward",rcode="NOERROR",{server},view="",zone="example."}}'] == 3
    assert resp[f'interkube_dns_responses_total{{plugin="forward",rcode="NXDOMAIN",{server},view="",zone="example."}}'] == 1
    dur = samples(text, "interkube_dns_request_duration_seconds_count")
    assert sum(dur.values()) == 4
    assert 'le="+Inf"' in text and "interkube_dns_request_size_bytes_bucket" in text
    assert "interkube_dns_response_size_bytes_sum" in text
    fwd = samples(text, "interkube_forward_requests_total")
    assert fwd == {f'interkube_forward_requests_total{{to="{upstream.address}"}}': 4}
    assert f'interkube_forward_responses_total{{rcode="NOERROR",to="{upstream.address}"}} 3.0' in text
    assert re.search(r'interkube_build_info\{pythonversion="[^"]+",revision="",version="[^"]+"\} 1\.0', text)
    assert "interkube_reload_failed_total 0.0" in text


async def test_metrics_survive_a_reload(upstream) -> None:  # type: ignore[no-untyped-def]
    port, http = free_port(), free_port()
    core = f"example.:{port} {{\n bind 127.0.0.1\n prometheus 127.0.0.1:{http}\n forward . {upstream.address}\n}}\n"
    async with in_process(core, name="Corefile") as server:
        await aquery("a.example.", "A", port)
        Path(server.source.path).write_text(core.replace("forward", "errors\n forward"))  # type: ignore[attr-defined]
        assert await server.reload()  # type: ignore[attr-defined]
        await aquery("a.example.", "A", port)
        _, text = await http_get(f"http://127.0.0.1:{http}/metrics")
    total = sum(samples(text, "interkube_dns_requests_total").values())
    assert total == 2
    assert "interkube_reload_total 1.0" in text


# --- acl -----------------------------------------------------------------------------------------


async def query_from(source: str, name: str, rdtype: str, port: int, timeout: float = 1.0) -> dns.message.Message | None:
    """A UDP query sent from a chosen loopback address; None when nothing comes back."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.setblocking(False)
        q = dns.message.make_query(name, rdtype, use_edns=0)
        await loop.sock_sendto(s, q.to_wire(), ("127.0.0.1", port))
        try:
            data = await asyncio.wait_for(loop.sock_recv(s, 65535), timeout)
        except asyncio.TimeoutError:
            return None
        return dns.message.from_wire(data)


async def test_acl_allow_block_filter_drop(upstream) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    core = (f"example.:{port} {{\n bind 127.0.0.1\n acl {{\n  drop net 127.0.0.4\n  filter type AAAA net 127.0.0.3\n"
            f"  allow net 127.0.0.1 127.0.0.3\n  block\n }}\n forward . {upstream.address}\n}}\n")
    async with in_process(core) as server:
        allowed = await query_from("127.0.0.1", "a.example.", "A", port)
        assert allowed is not None and allowed.rcode() == dns.rcode.NOERROR and allowed.answer
        blocked = await query_from("127.0.0.2", "a.example.", "A", port)
        assert blocked is not None and blocked.rcode() == dns.rcode.REFUSED
        assert [o.code for o in blocked.options] == [dns.edns.EDE] and blocked.options[0].code == 15
        filtered = await query_from("127.0.0.3", "a.example.", "AAAA", port)
        assert filtered is not None and filtered.rcode() == dns.rcode.NOERROR and not filtered.answer
        assert filtered.options[0].code == 17  # type: ignore[attr-defined]
        other_type = await query_from("127.0.0.3", "a.example.", "A", port)
        assert other_type is not None and other_type.answer
        assert await query_from("127.0.0.4", "a.example.", "A", port, timeout=0.5) is None
        stats = handler_of(server, "acl").stats
        assert (stats.allowed, stats.blocked, stats.filtered, stats.dropped) == (2, 1, 1, 1)


@pytest.mark.parametrize(("rule", "message"), [
    ("reject", "unknown action"),
    ("allow 10.0.0.0/8", "expected `type` or `net`"),
    ("allow type BOGUS", "unknown query type"),
    ("allow net 10.0.0.0/33", "invalid network"),
    ("allow net * 10.0.0.0/8", "nothing may follow"),
    ("allow type", "needs at least one query type"),
])
def test_acl_parse_errors(rule: str, message: str) -> None:
    d = parse_text(f". {{\n acl {{\n  {rule}\n }}\n}}\n")[0].directives[0]
    with pytest.raises(ConfigError, match=message) as info:
        parse_acl(d)
    assert info.value.line == 3


# --- loadbalance -------------------------------------------------------------------------------


def test_shuffle_keeps_the_records_and_their_layout() -> None:
    q = dns.message.make_query("a.example.", "A")
    resp = dns.message.make_response(q)
    resp.answer.append(dns.rrset.from_text("a.example.", 30, "IN", "CNAME", "b.example."))
    resp.answer.append(dns.rrset.from_text_list("b.example.", 30, "IN", "A", [f"192.0.2.{i}" for i in range(1, 9)]))
    wire = resp.to_wire()
    orders = set()
    for _ in range(50):
        out = shuffle_answer(wire)
        assert len(out) == len(wire)
        msg = dns.message.from_wire(out)
        assert msg.answer[0].rdtype == dns.rdatatype.CNAME  # CNAME stays in front
        order = tuple(rr.address for rr in msg.answer[1])
        assert sorted(order) == sorted(f"192.0.2.{i}" for i in range(1, 9))
        orders.add(order)
    assert len(orders) > 1


async def test_loadbalance_through_the_server(upstream) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    core = f"example.:{port} {{\n bind 127.0.0.1\n loadbalance\n forward . {upstream.address}\n}}\n"
    async with in_process(core):
        firsts = set()
        for _ in range(30):
            r = await aquery("a.example.", "A", port)
            addrs = [rr.address for rr in r.answer[0]]
            assert sorted(addrs) == ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]
            firsts.add(addrs[0])
        mx_orders = set()
        for _ in range(20):
            r = await aquery("mx.example.", "MX", port)
            mx_orders.add(tuple(rr.preference for rr in r.answer[0]))
    assert len(firsts) > 1 and len(mx_orders) > 1


# --- loop -------------------------------------------------------------------------------------


def test_loop_is_detected_and_stops_the_server(tmp_path: Path) -> None:
    port = free_port()
    core = tmp_path / "Corefile"
    core.write_text(f".:{port} {{\n bind 127.0.0.1\n loop\n forward . 127.0.0.1:{port}\n}}\n")
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "interkube", "serve", "-conf", str(core)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert f'Loop (127.0.0.1:' in out.stderr and f"-> 127.0.0.1:{port}) detected for zone \".\"" in out.stderr
    assert time.monotonic() - started < 60


async def test_no_loop_no_fuss(upstream) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    core = f"example.:{port} {{\n bind 127.0.0.1\n loop\n forward . {upstream.address}\n}}\n"
    async with in_process(core) as server:
        loop = handler_of(server, "loop")
        deadline = time.monotonic() + 10
        while not loop.done and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert loop.done and loop.seen == 1
        assert (await aquery("a.example.", "A", port)).rcode() == dns.rcode.NOERROR


def test_c_tally_counts_exactly_as_the_python_path() -> None:
    import time as _time

    from interkube.dns.wire import parse_query
    from interkube.plugins.prometheus import store as store_mod
    from interkube.plugin.request import Request, Route

    if store_mod._tally is None:
        pytest.skip("interkube._udpfast is not built")
    store = store_mod.DnsMetrics()
    route = Route(zone="example.", server="dns://127.0.0.1:53")
    wire = dns.message.make_query("a.example.", "AAAA").to_wire()
    resp = dns.message.make_response(dns.message.from_wire(wire)).to_wire()
    req = Request(wire, parse_query(wire), ("::1", 5, 0, 0), "tcp")
    req.route = route
    req.answered_by = "file"
    assert not store_mod._tally(store.by_route, store.plugins, req, resp)  # first sighting: Python's
    req.started = _time.monotonic()
    store._record_py(req, resp)
    for _ in range(3):
        req.started = _time.monotonic()
        assert store_mod._tally(store.by_route, store.plugins, req, resp)
    [(key, entry)] = store.by_name[("dns://127.0.0.1:53", "example.")].items()
    assert list(entry)[0] == 4 and list(entry)[2] == 4 * len(wire) and list(entry)[3] == 4 * len(resp)
    [row] = list(store._entries())
    assert row[:7] == ("dns://127.0.0.1:53", "example.", "tcp", "2", "AAAA", "NOERROR", "file")
