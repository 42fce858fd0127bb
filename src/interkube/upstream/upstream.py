"""One upstream server: its transports, its health, and how a query is sent to it.

Health follows CoreDNS's forward: a failed query *kicks* a health check, which probes the
upstream (``. IN NS`` by default) every interval until a probe is answered. Each failed probe
adds to the upstream's fail count, an answered probe resets it, and an upstream whose count
exceeds ``max_fails`` is *down*: skipped by forward until a probe brings it back.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from typing import TYPE_CHECKING, NamedTuple

import dns.flags
import dns.rdatatype

from interkube.dns.wire import FLAG_TC, header_flags, rcode_of
from interkube.errors import UpstreamError
from interkube.pkg.metrics import DURATION_BUCKETS
from interkube.pkg.ticker import Ticker
from interkube.upstream.address import TRANSPORT_HTTPS, TRANSPORT_TLS, UpstreamAddr
from interkube.upstream.doh import DohExchanger
from interkube.upstream.transport import DatagramExchanger, StreamCounters, StreamExchanger

if TYPE_CHECKING:  # loaded where TLS is used: a plain forwarder never loads it (issue 18)
    import ssl

log = logging.getLogger("interkube.plugin.forward")


class HealthCheck(NamedTuple):
    """An upstream's health checks.
    (A NamedTuple, not a dataclass: a dataclass is a few exec'd functions at import, a
    millisecond of every start, issue 18.)"""

    interval: float = 0.5          # 0 disables probing
    recursion_desired: bool = True
    domain: str = "."
    timeout: float = 1.0


class UpstreamStats:
    """Counters read by the metrics plugin; kept by name so they survive reloads."""

    __slots__ = ("requests", "failures", "healthcheck_failures", "truncated_retries", "responses", "stream")

    def __init__(self) -> None:
        self.requests = 0
        self.failures = 0
        self.healthcheck_failures = 0
        self.truncated_retries = 0
        #: rcode -> [count, seconds, bucket counts...] over DURATION_BUCKETS (+Inf last)
        self.responses: dict[int, list[float]] = {}
        #: connections the upstream closed under queries, and the queries sent again
        self.stream = StreamCounters()

    def observe(self, rcode: int, seconds: float) -> None:
        e = self.responses.get(rcode)
        if e is None:
            e = self.responses[rcode] = [0.0] * (len(DURATION_BUCKETS) + 3)
        e[0] += 1
        e[1] += seconds
        e[2 + bisect_left(DURATION_BUCKETS, seconds)] += 1


class Upstream:
    """An upstream DNS server reached over UDP+TCP (dns://), TLS (tls://) or HTTPS (https://).

    ``ssl_context`` is the client context of a tls:// or https:// upstream (an https://
    upstream's must be its own: see :mod:`interkube.upstream.doh`). ``max_age``,
    ``max_idle_conns`` and ``source_address`` are forward's options of those names.
    """

    def __init__(self, addr: UpstreamAddr, *, expire: float = 10.0, max_fails: int = 2,
                 health: HealthCheck | None = None,
                 ssl_context: ssl.SSLContext | None = None, stats: UpstreamStats | None = None,
                 max_age: float = 0.0, max_idle_conns: int = 0, source_address: str | None = None,
                 doh_method: str = "POST") -> None:
        self.addr = addr
        self.name = str(addr)
        self.max_fails = max_fails
        self.health = health or HealthCheck()
        self.fails = 0
        self.stats = stats or UpstreamStats()
        self.is_tls = addr.transport == TRANSPORT_TLS
        self.is_https = addr.transport == TRANSPORT_HTTPS
        self.udp = None if self.is_tls or self.is_https else DatagramExchanger(
            addr.host, addr.port, expire=expire, source_address=source_address)
        # (An https:// upstream never uses its stream: every query goes to `doh`. The exchanger
        # opens nothing until asked, so it is kept for the code that reads any upstream's.)
        self.stream = StreamExchanger(addr.host, addr.port, expire=expire,
                                      ssl_context=ssl_context if self.is_tls else None,
                                      server_hostname=addr.server_name, counters=self.stats.stream,
                                      max_age=max_age, max_idle_conns=max_idle_conns,
                                      source_address=source_address)
        self.doh: DohExchanger | None = None
        if self.is_https:
            if ssl_context is None:
                raise ValueError(f"{self.name}: an https:// upstream needs a TLS context")
            self.doh = DohExchanger(addr.host, addr.port, ssl_context=ssl_context, server_name=addr.server_name,
                                    method=doh_method, expire=expire, max_age=max_age,
                                    max_idle_conns=max_idle_conns, source_address=source_address)
        self._probe_task: asyncio.Task[None] | None = None
        self._probe_wire = b""  # made at the first probe (dnspython's messages load then: issue 18)
        self._was_down = False
        self._closed = False

    def _make_probe(self) -> bytes:
        import dns.message as dns_message  # (imported at first use, not at every start: issue 18)

        q = dns_message.make_query(self.health.domain, dns.rdatatype.NS)
        if not self.health.recursion_desired:
            q.flags &= ~dns.flags.RD
        return q.to_wire()

    @property
    def down(self) -> bool:
        return self.max_fails > 0 and self.fails > self.max_fails

    async def exchange(self, wire: bytes, tcp: bool, timeout: float, question: bytes | None = None) -> bytes:
        """Send one query; over UDP unless ``tcp`` (TLS upstreams always use their stream).

        A truncated UDP answer is retried over TCP so the client gets the whole answer.
        """
        self.stats.requests += 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        udp = False
        try:
            if self.doh is not None:
                resp = await self.doh.exchange(wire, timeout, question)
            elif self.udp is None or tcp:
                resp = await self.stream.exchange(wire, timeout)
            else:
                udp = True
                resp = await self.udp.exchange(wire, timeout, question)
        except UpstreamError:
            self.stats.failures += 1
            raise
        if udp and header_flags(resp) & FLAG_TC:
            return await self.retry_truncated(wire, timeout, started)
        self.stats.observe(rcode_of(resp), loop.time() - started)
        return resp

    async def retry_truncated(self, wire: bytes, timeout: float, started: float) -> bytes:
        """The TCP half of a query whose UDP answer (sent at loop time ``started``, counted in
        the requests then) came truncated: the whole answer. Counted as exchange() counts it:
        one request, its failure or its answer's rcode and duration from ``started``."""
        self.stats.truncated_retries += 1
        try:
            resp = await self.stream.exchange(wire, timeout)
        except UpstreamError:
            self.stats.failures += 1
            raise
        self.stats.observe(rcode_of(resp), asyncio.get_running_loop().time() - started)
        return resp

    # -- health -----------------------------------------------------------------------------

    def kick_health_check(self, force_tcp: bool = False) -> None:
        """Start probing (if not already): called after a query to this upstream failed."""
        if self.max_fails == 0 or self.health.interval <= 0 or self._closed:
            return  # (closed: its queries fail with "socket closed", and nothing is to be probed)
        if self._probe_task is None or self._probe_task.done():
            self._probe_task = asyncio.get_running_loop().create_task(self._probe_until_up(force_tcp))

    async def probe(self, force_tcp: bool = False) -> None:
        """One health probe; raises UpstreamError when unanswered."""
        if not self._probe_wire:
            self._probe_wire = self._make_probe()
        if self.doh is not None:
            await self.doh.exchange(self._probe_wire, self.health.timeout)
        elif self.udp is None or force_tcp:
            await self.stream.exchange(self._probe_wire, self.health.timeout)
        else:
            await self.udp.exchange(self._probe_wire, self.health.timeout)

    async def _probe_until_up(self, force_tcp: bool) -> None:
        while True:
            try:
                await self.probe(force_tcp)
            except UpstreamError as exc:
                self.fails += 1
                self.stats.healthcheck_failures += 1
                if self.down and not self._was_down:
                    self._was_down = True
                    log.warning("upstream %s is down: %s", self.name, exc.reason)
                await asyncio.sleep(self.health.interval)
                continue
            if self._was_down:
                log.info("upstream %s is back up", self.name)
            self._was_down = False
            self.fails = 0
            return

    def close(self) -> None:
        self._closed = True
        if self._probe_task is not None:
            self._probe_task.cancel()
            self._probe_task = None
        if self.udp is not None:
            self.udp.close()
        if self.doh is not None:
            self.doh.close()
        self.stream.close()

    def use_ssl_context(self, ctx: ssl.SSLContext) -> None:
        """New client TLS settings for the next connections (a renewed certificate)."""
        if self.doh is not None:
            self.doh.use_ssl_context(ctx)
        elif self.is_tls:
            self.stream.use_ssl_context(ctx)


class UpstreamGroup:
    """A plugin's upstreams and the ticker that keeps their TLS client settings current
    (:func:`interkube.upstream.tls.follow_rotation`), started and stopped with the plugin
    (forward, merge)."""

    def __init__(self, members: list[Upstream], watch: Ticker | None = None) -> None:
        self.members = members
        self.watch = watch

    def start(self) -> None:
        if self.watch is not None:
            self.watch.start()

    async def close(self) -> None:
        if self.watch is not None:
            await self.watch.stop()
        for up in self.members:
            up.close()
