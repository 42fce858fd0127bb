"""prometheus over real HTTP: the counters move with queries (UDP and TCP, per rcode, per
upstream), survive a reload, and the C tally counts as the Python path does."""

from __future__ import annotations

import re
import time
from pathlib import Path

import dns.message
import pytest

from interkube.dns.wire import parse_query
from interkube.plugin.request import Request, Route
from interkube.plugins.prometheus import store as store_mod
from testkit.fakeupstream import FakeUpstream
from testkit.servers import aquery, free_port, http_get, in_process


def samples(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


async def test_metrics_move_with_queries(example_upstream: FakeUpstream) -> None:
    upstream = example_upstream
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
    assert req[f'interkube_dns_requests_total{{family="1",proto="tcp",{server},type="AAAA",view="",'
               'zone="example."}'] == 1
    resp = samples(text, "interkube_dns_responses_total")
    assert resp[f'interkube_dns_responses_total{{plugin="forward",rcode="NOERROR",{server},view="",'
                'zone="example."}'] == 3
    assert resp[f'interkube_dns_responses_total{{plugin="forward",rcode="NXDOMAIN",{server},view="",'
                'zone="example."}'] == 1
    dur = samples(text, "interkube_dns_request_duration_seconds_count")
    assert sum(dur.values()) == 4
    assert 'le="+Inf"' in text and "interkube_dns_request_size_bytes_bucket" in text
    assert "interkube_dns_response_size_bytes_sum" in text
    fwd = samples(text, "interkube_forward_requests_total")
    assert fwd == {f'interkube_forward_requests_total{{to="{upstream.address}"}}': 4}
    assert f'interkube_forward_responses_total{{rcode="NOERROR",to="{upstream.address}"}} 3.0' in text
    assert re.search(r'interkube_build_info\{pythonversion="[^"]+",revision="",version="[^"]+"\} 1\.0', text)
    assert "interkube_reload_failed_total 0.0" in text


async def test_metrics_survive_a_reload(example_upstream: FakeUpstream) -> None:
    port, http = free_port(), free_port()
    core = (f"example.:{port} {{\n bind 127.0.0.1\n prometheus 127.0.0.1:{http}\n"
            f" forward . {example_upstream.address}\n}}\n")
    async with in_process(core, name="Corefile") as server:
        await aquery("a.example.", "A", port)
        Path(server.source.path).write_text(core.replace("forward", "errors\n forward"))  # type: ignore[attr-defined]
        assert await server.reload()  # type: ignore[attr-defined]
        await aquery("a.example.", "A", port)
        _, text = await http_get(f"http://127.0.0.1:{http}/metrics")
    total = sum(samples(text, "interkube_dns_requests_total").values())
    assert total == 2
    assert "interkube_reload_total 1.0" in text


def test_c_tally_counts_exactly_as_the_python_path() -> None:
    if store_mod._tally is None:
        pytest.skip("interkube._udpfast is not built")
    store = store_mod.DnsMetrics()
    route = Route(zone="example.", server="dns://127.0.0.1:53")
    wire = dns.message.make_query("a.example.", "AAAA").to_wire()
    resp = dns.message.make_response(dns.message.from_wire(wire)).to_wire()
    query = parse_query(wire)
    assert query is not None
    req = Request(wire, query, ("::1", 5, 0, 0), "tcp")
    req.route = route
    req.answered_by = "file"
    assert not store_mod._tally(store.by_route, store.plugins, req, resp)  # first sighting: Python's
    req.started = time.monotonic()
    store._record_py(req, resp)
    for _ in range(3):
        req.started = time.monotonic()
        assert store_mod._tally(store.by_route, store.plugins, req, resp)
    [entry] = store.by_name[("dns://127.0.0.1:53", "example.", "")].values()
    counts = list(entry)
    assert counts[0] == 4 and counts[2] == 4 * len(wire) and counts[3] == 4 * len(resp)
    [row] = list(store._entries())
    assert row[:8] == ("dns://127.0.0.1:53", "example.", "", "tcp", "2", "AAAA", "NOERROR", "file")
