"""transfer in a running server: AXFR of file zones over TCP and TLS (streamed in several
messages), IXFR answered with the SOA alone or in full, and every refusal CoreDNS makes (UDP,
clients not listed, names that are no zone, zones no stanza covers, an IXFR without its SOA)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest

from interkube.dns.wire import parse_query
from interkube.plugin.request import Request
from interkube.plugins.transfer.envelopes import MESSAGE_BUDGET
from testkit.dot import SERVER_NAME, Pki
from testkit.servers import LOOPBACK, free_port, in_process
from testkit.xfr import EXAMPLE_SERIAL, EXAMPLE_ZONE, Transfer, transfer, transfer_query

Serve = Callable[[str], Awaitable[Any]]

ZONE, SERIAL = EXAMPLE_ZONE, EXAMPLE_SERIAL


def zone_records(text: str, origin: str) -> list[str]:
    """Every record of a zone file as text, sorted (the SOA once)."""
    z = dns.zone.from_text(text, origin=origin, relativize=False)
    return sorted(f"{name} {rds.ttl} IN {dns.rdatatype.to_text(rds.rdtype)} {rd}"
                  for name, node in z.nodes.items() for rds in node.rdatasets for rd in rds)


def corefile(db: Path, port: int, to: str = "127.0.0.5 127.0.0.1:5300") -> str:
    return f"""example.org:{port} example.net:{port} {{
    bind 127.0.0.1
    transfer example.org {{
        to {to}
    }}
    file {db} example.org example.net
}}
"""


@pytest.fixture
async def server(tmp_path: Path) -> Any:
    db = tmp_path / "db.example.org"
    db.write_text(ZONE)
    port = free_port()
    async with in_process(corefile(db, port, "127.0.0.1 127.0.0.5:5300")):
        yield port


def flags(message: dns.message.Message) -> list[str]:
    return sorted(f for f in ("QR", "AA", "TC", "RD", "RA") if message.flags & dns.flags.Flag[f])


def whole(got: Transfer) -> list[str]:
    """The records of a transfer, sorted, the closing SOA left out (checked to be the first)."""
    texts = got.texts()
    assert texts[0] == texts[-1] and got.records[0].rdtype == dns.rdatatype.SOA
    return sorted(texts[:-1])


async def test_axfr_of_a_file_zone(server: int, interkube_caplog: pytest.LogCaptureFixture) -> None:
    got = await transfer(server, "Example.ORG")
    assert got.complete and got.rcode == "NOERROR" and len(got.messages) == 1
    reply = got.messages[0]
    assert flags(reply) == ["AA", "QR", "RD"]
    assert reply.question[0].name.to_text() == "Example.ORG."  # the client's letters
    assert whole(got) == zone_records(ZONE, "example.org.")
    # Apex NS first after the SOA, then names in canonical order (the apex's other records first).
    assert [r.name.to_text() for r in got.records[:3]] == ["example.org."] * 3
    assert got.records[1].rdtype == got.records[2].rdtype == dns.rdatatype.NS
    assert [r.to_text().split()[0] for r in got.records[6:9]] == [
        "_http._tcp.example.org.", "Alias.example.org.", "a.b.c.example.org."]
    assert reply.edns < 0  # no OPT record to a query without one
    assert (f"Outgoing transfer of 17 records of zone example.org. to 127.0.0.1 for {SERIAL} SOA serial"
            in interkube_caplog.text)


async def test_a_listed_client_and_no_other(server: int) -> None:
    listed = await transfer(server, "example.org", source="127.0.0.5")  # listed with a port: the port is NOTIFY's
    assert listed.rcode == "NOERROR" and len(listed.records) == 17
    for source in ("127.0.0.2", "127.0.0.53"):
        refused = await transfer(server, "example.org", source=source, edns=True)
        assert refused.rcode == "REFUSED" and not refused.records and len(refused.messages) == 1
        assert flags(refused.messages[0]) == ["QR", "RD"] and refused.messages[0].edns == 0
        ixfr = await transfer(server, "example.org", "IXFR", serial=1, source=source)
        assert ixfr.rcode == "REFUSED"


def test_the_client_address_of_a_dual_stack_socket_is_its_ipv4_address() -> None:
    wire = transfer_query("example.org").to_wire()
    q = parse_query(wire)
    assert q is not None
    assert str(Request(wire, q, ("::ffff:127.0.0.5", 53000, 0, 0), "tcp").client_address) == "127.0.0.5"
    assert str(Request(wire, q, ("fe80::1%lo", 53000, 0, 1), "tcp").client_address) == "fe80::1"


async def test_to_star_lets_anyone_transfer(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.write_text(ZONE)
    port = free_port()
    async with in_process(corefile(db, port, "*")):
        got = await transfer(port, "example.org", source="127.0.0.9")
        assert got.rcode == "NOERROR" and whole(got) == zone_records(ZONE, "example.org.")


async def test_udp_is_refused(server: int) -> None:
    for rdtype in ("AXFR", "IXFR"):
        for edns in (False, True):
            q = transfer_query("example.org", rdtype, serial=1, edns=edns)
            reply = await dns.asyncquery.udp(q, LOOPBACK, port=server, timeout=3)
            assert dns.rcode.to_text(reply.rcode()) == "REFUSED" and not reply.answer
            assert flags(reply) == ["QR", "RD"] and (reply.edns >= 0) == edns


async def test_ixfr(server: int, interkube_caplog: pytest.LogCaptureFixture) -> None:
    current = await transfer(server, "example.org", "IXFR", serial=SERIAL, edns=True)
    assert current.rcode == "NOERROR" and len(current.messages) == 1
    assert [r.rdtype for r in current.records] == [dns.rdatatype.SOA]
    assert flags(current.messages[0]) == ["QR", "RD"]  # CoreDNS's noop reply is not authoritative
    assert current.messages[0].edns == 0
    assert (f"Outgoing noop, incremental transfer for up to date zone example.org. to 127.0.0.1 for {SERIAL} "
            "SOA serial" in interkube_caplog.text)
    # No journal: any other serial, older or newer (as CoreDNS), gets the whole zone.
    for serial in (1, SERIAL + 1):
        full = await transfer(server, "example.org", "IXFR", serial=serial)
        assert full.rcode == "NOERROR" and whole(full) == zone_records(ZONE, "example.org.")
        assert flags(full.messages[0]) == ["AA", "QR", "RD"]
    # The SOA that says which version the client holds must be there, alone.
    missing = await transfer(server, "example.org", "IXFR", serial=None)
    assert missing.rcode == "SERVFAIL"
    odd = transfer_query("example.org", "IXFR")
    odd.authority.append(dns.rrset.from_text("example.org.", 0, "IN", "A", "192.0.2.1"))
    assert (await transfer(server, "", query=odd)).rcode == "SERVFAIL"


async def test_what_is_not_a_covered_zone_is_refused(server: int) -> None:
    """A name below the zone's apex, a zone the file serves but no stanza covers, another
    class: the question goes on, and the file plugin refuses it (as CoreDNS's answers)."""
    for zone, rdclass in (("www.example.org", "IN"), ("example.net", "IN"), ("example.org", "CH")):
        got = await transfer(server, zone, rdclass=rdclass, edns=True)
        assert (got.rcode, got.records) == ("REFUSED", []), zone
        assert flags(got.messages[0]) == ["QR", "RD"]


async def test_a_large_zone_streams_in_several_messages(tmp_path: Path) -> None:
    """Every message carries the query's ID and question, AA, the OPT record of an EDNS query
    (with DO echoed), and no more records than fit the budget."""
    text = "$TTL 60\n@ IN SOA ns hostmaster 7 1 1 1 1\n@ IN NS ns\nns IN A 192.0.2.1\n" + "".join(
        f"h{i} IN A 10.0.{i // 256}.{i % 256}\nh{i} IN TXT \"record {i}\"\n" for i in range(3000))
    db = tmp_path / "db"
    db.write_text(text)
    port = free_port()
    async with in_process(corefile(db, port, "*")):
        got = await transfer(port, "example.org", do=True)
    assert got.complete and len(got.messages) >= 3
    first = got.messages[0]
    for reply, wire in zip(got.messages, got.wires, strict=True):
        assert reply.id == first.id and reply.question == first.question
        assert flags(reply) == ["AA", "QR", "RD"]
        assert reply.edns == 0 and reply.ednsflags & dns.flags.DO
        assert len(wire) < MESSAGE_BUDGET + 100
    assert whole(got) == zone_records(text, "example.org.")
    assert sum(1 for r in got.records if r.rdtype == dns.rdatatype.SOA) == 2


def tls_block(scheme: str, port: int, pki: Pki, db: Path, to: str) -> str:
    return (f"{scheme}://example.org:{port} {{\n bind 127.0.0.1\n tls {pki.crt('server')} {pki.key('server')}\n"
            f" transfer {{\n  to {to}\n }}\n file {db}\n}}\n")


async def test_axfr_over_tls(tmp_path: Path, pki: Pki) -> None:
    text = "$TTL 60\n@ IN SOA ns hostmaster 7 1 1 1 1\n@ IN NS ns\n" + "".join(
        f"h{i} IN A 10.1.{i // 256}.{i % 256}\n" for i in range(5000))
    db = tmp_path / "db"
    db.write_text(text)
    port = free_port()
    async with in_process(tls_block("tls", port, pki, db, "127.0.0.1")):
        got = await transfer(port, "example.org", ssl_context=pki.client_context(None),
                             server_hostname=SERVER_NAME)
    assert got.complete and len(got.messages) > 1
    assert whole(got) == zone_records(text, "example.org.")


async def test_doh_is_refused(tmp_path: Path, pki: Pki) -> None:
    """One HTTP response holds one message: a transfer is refused there."""
    db = tmp_path / "db"
    db.write_text(ZONE)
    port = free_port()
    async with in_process(tls_block("https", port, pki, db, "*")):
        ctx = ssl.create_default_context(cafile=str(pki.crt("ca")))
        q = transfer_query("example.org")
        q.id = 0
        reply = await dns.asyncquery.https(q, LOOPBACK, port=port, verify=ctx, timeout=5)
    assert dns.rcode.to_text(reply.rcode()) == "REFUSED" and not reply.answer


async def test_without_transfer_the_file_plugin_refuses(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.write_text(ZONE)
    port = free_port()
    async with in_process(f"example.org:{port} {{\n bind 127.0.0.1\n file {db}\n}}\n"):
        got = await transfer(port, "example.org")
    assert got.rcode == "REFUSED"


@pytest.fixture(autouse=True)
def _transfer_logs(interkube_caplog: pytest.LogCaptureFixture) -> None:
    interkube_caplog.set_level(logging.INFO, logger="interkube.plugin.transfer")
