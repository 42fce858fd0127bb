"""Forwarding-loop detection at start-up, as CoreDNS's loop plugin.

Once the server answers, the plugin sends itself a query for a random name under the block's
zone (``<random>.<random>.<zone> HINFO``). Without a loop the query is answered (with anything)
and seen here once. When forwarding leads back to this server, the same query comes through
again and again; seen a third time, the loop is certain and the server stops with a clear
message rather than burn CPU and file descriptors on a query that never ends.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

import dns.asyncquery
import dns.exception
import dns.message
import dns.name

from interkube.plugin.handler import SLOW, Handler, passes_later
from interkube.plugin.request import Request
from interkube.plugin.services import Services

log = logging.getLogger("interkube.plugin.loop")

#: How many times the probe is sent (every PROBE_INTERVAL) before the check gives up.
PROBE_ATTEMPTS = 10
PROBE_INTERVAL = 0.5
#: Seen this many times: a loop.
LOOP_THRESHOLD = 3


class LoopHandler(Handler):
    plugin = "loop"
    # Only its own probe's name is its business, and that goes to the slow path (no answer of
    # the fast path, none in the memo) until the check is done for good.
    memo_safe = True

    def __init__(self, zone: str, host: str, port: int, services: Services) -> None:
        self.zone = zone
        self.host = host
        self.port = port
        self.services = services
        self.probe = dns.name.Name((str(secrets.randbits(63)).encode(), str(secrets.randbits(63)).encode(),
                                    *dns.name.from_text(zone).labels))
        self.lname = self.probe.canonicalize().to_wire()
        self.seen = 0
        self._task: asyncio.Task[None] | None = None
        self.done = False

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        if not self.done and req.query.lname == self.lname:
            return SLOW  # counted on the slow path only, so it is counted once
        return self.next.fast(req)

    async def serve(self, req: Request) -> bytes:
        if not self.done and req.query.lname == self.lname:
            self.seen += 1
            if self.seen >= LOOP_THRESHOLD:
                self.done = True
                self.services.fatal(
                    f'plugin/loop: Loop ({req.client_ip}:{req.client[1]} -> {self.host}:{self.port}) '
                    f'detected for zone "{self.zone}": query "HINFO {self.probe}" came back '
                    f"{self.seen} times; a forward in this zone sends queries back to this server")
        return await self.next.serve(req)

    async def serving(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._probe())

    async def _probe(self) -> None:
        query = dns.message.make_query(self.probe, "HINFO")
        for _ in range(PROBE_ATTEMPTS):
            if self.done:
                return
            try:
                await dns.asyncquery.udp(query, self.host, port=self.port, timeout=PROBE_INTERVAL)
                self.done = True  # answered, whatever the answer: no loop
                return
            except (dns.exception.Timeout, OSError):
                continue
            except dns.exception.DNSException:
                self.done = True
                return
        self.done = True
        log.warning("no answer to the loop probe for zone %s; loop detection gave up", self.zone)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
