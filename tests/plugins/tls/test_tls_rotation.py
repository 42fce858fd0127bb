"""Certificate rotation: files replaced under a running DoT server (as cert-manager does) reach new
connections while open ones keep working and lose no query; broken rotations keep the old
certificate; CA changes apply; a Corefile reload changes the certificate without a new socket;
forward picks up a renewed client certificate."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from interkube.pkg.framing import frame
from interkube.tlsutil import certs
from interkube.tlsutil.contexts import ServerTls
from testkit.dot import (
    ADDRESS,
    LOOPBACK,
    NAME,
    SERVER_NAME,
    ZONE,
    Pki,
    dot_corefile,
    dot_query,
    dot_server,
    forwarder_corefile,
    messages,
    peer_serial,
)
from testkit.fakeupstream import FakeUpstream
from testkit.servers import aquery, free_port, in_process, read_frame
from testkit.waiting import until

pytestmark = pytest.mark.usefixtures("fast_polling")


def server_tls(server) -> ServerTls:  # type: ignore[no-untyped-def]
    (st,) = server.instance.built.tls.values()
    return st


async def _serial_is(port: int, ctx, serial: int) -> bool:  # type: ignore[no-untyped-def]
    return await peer_serial(port, ctx) == serial


class HeldConnection:
    """A client connection kept open, sending pipelined queries and counting the answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.sent = self.answered = 0
        self.stop = asyncio.Event()

    @property
    def serial(self) -> int:
        from cryptography import x509

        der = self.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number

    async def round(self, n: int = 4) -> None:
        ids = []
        for _ in range(n):
            self.sent += 1
            q = dns.message.make_query(NAME, "A", id=self.sent % 65536)
            self.writer.write(frame(q.to_wire()))
            ids.append(q.id)
        await self.writer.drain()
        for _ in range(n):
            resp = dns.message.from_wire(await read_frame(self.reader))
            assert resp.id in ids and resp.answer[0][0].address == ADDRESS
            self.answered += 1

    async def pump(self) -> None:
        while not self.stop.is_set():
            await self.round()


async def test_rotation_under_an_open_connection(pki: Pki, upstream: FakeUpstream,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="interkube")
    async with dot_server(pki, upstream) as (_, port):
        ctx = pki.client_context()
        assert await peer_serial(port, ctx) == pki.serial("server")
        held = HeldConnection(*await asyncio.open_connection(LOOPBACK, port, ssl=ctx, server_hostname=SERVER_NAME))
        pump = asyncio.create_task(held.pump())
        await until(lambda: held.answered >= 8, "answers on the held connection")

        # Replace the files as a rename over the old ones (what cert-manager's volume or a
        # careful script does), while queries keep flowing on the held connection.
        pki.issued["server2"].save(pki.crt("server"), pki.key("server"))
        await until(lambda: _serial_is(port, ctx, pki.serial("server2")), "new connections to see the new certificate")
        before = held.answered
        await until(lambda: held.answered >= before + 8, "more answers on the held connection after rotation")
        held.stop.set()
        await pump
        assert held.sent == held.answered  # no query lost
        assert held.serial == pki.serial("server")  # the open connection kept its session
        held.writer.close()
    assert any("loaded CN=dns.remote" in m and "expires" in m for m in messages(caplog, "interkube.plugin.tls"))


async def test_rotation_through_a_symlink_swap(pki: Pki, upstream: FakeUpstream, tmp_path: Path) -> None:
    """Kubernetes Secret volumes: tls.crt -> ..data/tls.crt, ..data -> ..2026_01_01 (swapped)."""
    vol = tmp_path / "secret"
    first, second = vol / "..v1", vol / "..v2"
    for d, name in ((first, "server"), (second, "server2")):
        d.mkdir(parents=True)
        shutil.copy(pki.crt(name), d / "tls.crt")
        shutil.copy(pki.key(name), d / "tls.key")
    (vol / "..data").symlink_to("..v1")
    for f in ("tls.crt", "tls.key"):
        (vol / f).symlink_to(f"..data/{f}")
    port = free_port()
    corefile = (f"tls://{ZONE}:{port} {{\n bind {LOOPBACK}\n tls {vol}/tls.crt {vol}/tls.key\n"
                f" forward . {upstream.address}\n}}\n")
    async with in_process(corefile):
        ctx = pki.client_context(None)
        assert await peer_serial(port, ctx) == pki.serial("server")
        (vol / "..data_tmp").symlink_to("..v2")
        os.replace(vol / "..data_tmp", vol / "..data")  # the kubelet's atomic swap
        await until(lambda: _serial_is(port, ctx, pki.serial("server2")), "the swapped certificate")


async def test_a_broken_rotation_keeps_the_old_certificate_and_logs_once(pki: Pki, upstream: FakeUpstream,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    async with dot_server(pki, upstream) as (server, port):
        ctx = pki.client_context()
        # Half a rotation: the new certificate is in place, its key is not yet.
        certs.write_atomic(pki.crt("server"), pki.issued["server2"].cert_pem(), 0o644)
        await until(lambda: any("keeping the previous certificate" in m
                                     for m in messages(caplog, "interkube.plugin.tls")), "the warning")
        for _ in range(5):
            server_tls(server).check()  # the same broken files, looked at again
        warnings = [m for m in messages(caplog, "interkube.plugin.tls") if "keeping the previous" in m]
        assert len(warnings) == 1
        assert f"{pki.key('server')} is not the key of the certificate in {pki.crt('server')}" in warnings[0]
        assert await peer_serial(port, ctx) == pki.serial("server")  # still the old one
        assert (await dot_query(port, ctx)).answer

        certs.write_atomic(pki.key("server"), pki.issued["server2"].key_pem(), 0o600)  # rotation completes
        await until(lambda: _serial_is(port, ctx, pki.serial("server2")), "the completed rotation")


async def test_an_unreadable_file_keeps_the_old_certificate(pki: Pki, upstream: FakeUpstream,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    async with dot_server(pki, upstream) as (_, port):
        pki.key("server").unlink()
        await until(lambda: any("cannot read" in m for m in messages(caplog, "interkube.plugin.tls")),
                         "the warning")
        assert await peer_serial(port, pki.client_context()) == pki.serial("server")


async def test_a_ca_removed_from_the_ca_file_stops_being_trusted(pki: Pki, upstream: FakeUpstream) -> None:
    bundle = pki.dir / "bundle.crt"
    bundle.write_bytes(pki.crt("ca").read_bytes() + pki.crt("other-ca").read_bytes())
    async with dot_server(pki, upstream, ca="bundle") as (_, port):
        assert (await dot_query(port, pki.client_context("client-other"))).answer
        certs.write_atomic(bundle, pki.crt("ca").read_bytes(), 0o644)

        async def other_refused() -> bool:
            try:
                await dot_query(port, pki.client_context("client-other"))
            except (OSError, EOFError, dns.exception.DNSException):
                return True
            return False

        await until(other_refused, "the removed CA to stop being trusted")
        assert (await dot_query(port, pki.client_context("client"))).answer


async def test_corefile_reload_changes_the_certificate_on_the_same_socket(pki: Pki, upstream: FakeUpstream,
                                                                          tmp_path: Path) -> None:
    port = free_port()
    async with in_process(dot_corefile(pki, port, upstream)) as server:
        ctx = pki.client_context()
        held = HeldConnection(*await asyncio.open_connection(LOOPBACK, port, ssl=ctx, server_hostname=SERVER_NAME))
        await held.round()
        (listener,) = server.instance.listeners.values()
        path = Path(server.source.path)
        path.write_text(dot_corefile(pki, port, upstream, cert="server2"))
        assert await server.reload()
        assert server.instance.listeners[listener.key] is listener  # the socket was kept
        assert await peer_serial(port, ctx) == pki.serial("server2")
        await held.round()  # the connection opened before the reload still works
        assert held.sent == held.answered
        held.writer.close()


async def test_forward_picks_up_a_renewed_client_certificate(pki: Pki, upstream: FakeUpstream,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="interkube")
    mine_crt, mine_key = pki.dir / "mine.crt", pki.dir / "mine.key"
    shutil.copy(pki.crt("client-expired"), mine_crt)
    shutil.copy(pki.key("client-expired"), mine_key)
    async with dot_server(pki, upstream) as (_, dot_port):
        port = free_port()
        async with in_process(forwarder_corefile(port, dot_port, f"tls {mine_crt} {mine_key} {pki.crt('ca')}")):
            assert (await aquery(NAME, "A", port)).rcode() == dns.rcode.SERVFAIL
            pki.issued["client"].save(mine_crt, mine_key)  # renewed

            async def answered() -> bool:
                return (await aquery(NAME, "A", port)).rcode() == dns.rcode.NOERROR

            await until(answered, "queries to go through with the renewed certificate")
    assert any("reloaded client TLS settings" in m and "dns-client.local" in m
               for m in messages(caplog, "interkube.plugin.forward"))
