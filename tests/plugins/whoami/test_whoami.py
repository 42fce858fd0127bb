"""whoami: the client's address, port and transport in the additional section, for every
question; the README's example as it says."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import dns.flags
import dns.message
import dns.rdatatype
import pytest

from interkube.dns.wire import parse_query
from interkube.errors import ConfigError
from interkube.plugin.request import Request
from interkube.plugins.whoami.handler import whoami_response
from interkube.plugins.whoami.parse import parse
from testkit.corefile import directive
from testkit.readme import on_port, readme_examples
from testkit.servers import LOOPBACK, aquery, free_port, in_process

Running = Any  # tests/plugins/conftest.py's Running: a server in the test's loop


def request(name: str, rdtype: str, client: tuple[object, ...], proto: str = "udp", **kw: object) -> Request:
    wire = dns.message.make_query(name, rdtype, **kw).to_wire()  # type: ignore[arg-type]
    q = parse_query(wire)
    assert q is not None
    return Request(wire, q, client, proto)


def additional(resp: bytes) -> list[str]:
    msg = dns.message.from_wire(resp)
    return sorted(rrset.to_text() for rrset in msg.additional)


def test_ipv4_client_over_udp() -> None:
    resp = whoami_response(request("Who.Example.ORG", "A", ("192.0.2.7", 40212)))
    msg = dns.message.from_wire(resp)
    assert msg.flags & dns.flags.AA and msg.flags & dns.flags.QR and msg.flags & dns.flags.RD
    assert not msg.answer and not msg.authority
    assert additional(resp) == ["Who.Example.ORG. 0 IN A 192.0.2.7",
                                "_udp.Who.Example.ORG. 0 IN SRV 0 0 40212 ."]


def test_ipv6_and_mapped_clients_tcp_tls_and_edns() -> None:
    resp = whoami_response(request("example.org", "TXT", ("2001:db8::5", 53, 0, 0), "tcp", use_edns=0))
    assert additional(resp) == ["_tcp.example.org. 0 IN SRV 0 0 53 .", "example.org. 0 IN AAAA 2001:db8::5"]
    assert dns.message.from_wire(resp).edns == 0
    # An IPv4 client of a dual-stack socket is an IPv4 client; TLS is TCP to CoreDNS.
    resp = whoami_response(request("example.org", "A", ("::ffff:192.0.2.9", 1234, 0, 0), "tls"))
    assert additional(resp) == ["_tcp.example.org. 0 IN SRV 0 0 1234 .", "example.org. 0 IN A 192.0.2.9"]


def test_the_root_name() -> None:
    assert additional(whoami_response(request(".", "NS", ("192.0.2.7", 9)))) == [
        ". 0 IN A 192.0.2.7", "_udp. 0 IN SRV 0 0 9 ."]


@pytest.mark.parametrize("body, words", [("whoami extra", "expected exactly 0 arguments, got 1"),
                                         ("whoami {\n x\n}", "takes no block")])
def test_parse_errors(body: str, words: str) -> None:
    with pytest.raises(ConfigError, match=f"Corefile:2: whoami: {words}"):
        parse(directive(body))


async def test_through_the_server_the_port_is_the_clients(serve: Callable[[str], Awaitable[Running]]) -> None:
    running = await serve(".:PORT {\n bind 127.0.0.1\n whoami\n}\n")
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.setblocking(False)
        sock.connect((LOOPBACK, running.port))
        await loop.sock_sendall(sock, dns.message.make_query("a.example.", "MX").to_wire())
        resp = await asyncio.wait_for(loop.sock_recv(sock, 65535), 3.0)
        port = sock.getsockname()[1]
    assert additional(resp) == [f"_udp.a.example. 0 IN SRV 0 0 {port} .", "a.example. 0 IN A 127.0.0.1"]
    r = await running.query("b.example.", "A", tcp=True)
    assert [rr.rdtype for rr in r.additional] == [dns.rdatatype.A, dns.rdatatype.SRV]
    assert r.additional[1].name.to_text() == "_tcp.b.example."


async def test_readme_example() -> None:
    (example,) = readme_examples("whoami")
    port = free_port()
    async with in_process(on_port(example, port)):
        r = await aquery("example.org", "A", port)
    assert r.flags & dns.flags.AA and not r.answer
    a, srv = r.additional
    assert a.to_text() == "example.org. 0 IN A 127.0.0.1"
    assert srv.name.to_text() == "_udp.example.org." and srv[0].target.to_text() == "."
