"""The merge fan-out over DNS over TLS: clusters given as tls:// are asked over mutual TLS, a
cluster that refuses the client is left out with the reason logged, and a renewed client
certificate is picked up as forward picks it up."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import dns.rcode
import dns.rdatatype
import pytest

from testkit.dot import ADDRESS, LOOPBACK, NAME, SERVER_NAME, ZONE, Pki, dot_server, messages
from testkit.fakeupstream import FakeUpstream
from testkit.servers import aquery, free_port, in_process
from testkit.waiting import until

pytestmark = pytest.mark.usefixtures("fast_polling")

MERGED = "remote.all"
MERGED_NAME = NAME.replace(ZONE, MERGED)
WEST_ADDRESS = "10.2.17.231"


@pytest.fixture
async def west_upstream() -> AsyncIterator[FakeUpstream]:
    """A second cluster's DNS, holding the same Service at another address."""
    up = await FakeUpstream().start()
    up.behaviour.records = {(f"{NAME}.", "A"): [WEST_ADDRESS]}
    yield up
    await up.stop()


def merge_corefile(port: int, east: int, west: int, tls: str) -> str:
    clusters = "".join(f"  cluster {name} tls://{LOOPBACK}:{dot}%{SERVER_NAME} {ZONE}\n"
                       for name, dot in (("east", east), ("west", west)))
    return (f"{MERGED}:{port} {{\n bind {LOOPBACK}\n errors\n"
            f" merge {MERGED} {{\n{clusters}  {tls}\n  timeout 2s\n }}\n}}\n")


def addresses(msg: dns.message.Message) -> set[str]:
    return {rd.address for rrset in msg.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset}


async def test_merge_asks_clusters_over_mutual_tls(pki: Pki, upstream: FakeUpstream,
                                                   west_upstream: FakeUpstream) -> None:
    async with dot_server(pki, upstream) as (_, east), dot_server(pki, west_upstream) as (_, west):
        port = free_port()
        tls = f"tls {pki.crt('client')} {pki.key('client')} {pki.crt('ca')}"
        async with in_process(merge_corefile(port, east, west, tls)):
            answer = await aquery(MERGED_NAME, "A", port)
            assert answer.rcode() == dns.rcode.NOERROR
            assert addresses(answer) == {ADDRESS, WEST_ADDRESS}
            assert str(answer.answer[0].name) == f"{MERGED_NAME}."


async def test_a_cluster_that_refuses_the_client_is_left_out_with_the_reason(
        pki: Pki, upstream: FakeUpstream, west_upstream: FakeUpstream,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="interkube")
    # east requires a client certificate; west asks for none. The merge presents none.
    async with dot_server(pki, upstream) as (_, east), \
            dot_server(pki, west_upstream, client_auth=None) as (_, west):
        port = free_port()
        async with in_process(merge_corefile(port, east, west, f"tls {pki.crt('ca')}")):
            answer = await aquery(MERGED_NAME, "A", port)
            assert answer.rcode() == dns.rcode.NOERROR
            assert addresses(answer) == {WEST_ADDRESS}
    assert any("requires a client certificate" in m for m in messages(caplog, "interkube.plugin.merge")), \
        messages(caplog, "interkube.plugin.merge")


async def test_merge_picks_up_a_renewed_client_certificate(pki: Pki, upstream: FakeUpstream,
                                                          west_upstream: FakeUpstream, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="interkube")
    mine_crt, mine_key = pki.dir / "mine.crt", pki.dir / "mine.key"
    shutil.copy(pki.crt("client-expired"), mine_crt)
    shutil.copy(pki.key("client-expired"), mine_key)
    async with dot_server(pki, upstream) as (_, east), dot_server(pki, west_upstream) as (_, west):
        port = free_port()
        async with in_process(merge_corefile(port, east, west, f"tls {mine_crt} {mine_key} {pki.crt('ca')}")):
            assert (await aquery(MERGED_NAME, "A", port)).rcode() == dns.rcode.SERVFAIL
            pki.issued["client"].save(mine_crt, mine_key)  # renewed

            async def both_answer() -> bool:
                return addresses(await aquery(MERGED_NAME, "A", port)) == {ADDRESS, WEST_ADDRESS}

            await until(both_answer, "both clusters to answer with the renewed certificate")
    assert any("reloaded client TLS settings" in m and "dns-client.local" in m
               for m in messages(caplog, "interkube.plugin.merge"))
