"""NOTIFY (RFC 1996): telling the secondaries that a zone changed, as CoreDNS's *transfer* does.

The message is CoreDNS's: opcode NOTIFY, AA set, the zone's SOA as the question, no records,
sent over UDP to each `to` address (not to `*`), tried three times with a two-second wait for a
NOERROR reply. The addresses are told at once rather than one after the other, and the rounds of
one zone are spaced: changes made while a round runs, or within MIN_INTERVAL after it, are told
by one more round after that interval (a cluster can change many times a second; each NOTIFY
makes every secondary ask for the SOA and maybe the whole zone).
"""

from __future__ import annotations

import asyncio
import logging

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype

from interkube.plugins.transfer.parse import Address, Secondary

log = logging.getLogger("interkube.plugin.transfer")

#: Tries per address and round, and the wait for each reply (CoreDNS: 3, and miekg/dns's 2 s).
ATTEMPTS = 3
REPLY_TIMEOUT = 2.0
#: Seconds after a round of one zone before the next one.
MIN_INTERVAL = 1.0


def notify_message(zone: str) -> dns.message.Message:
    message = dns.message.make_query(zone, dns.rdatatype.SOA, flags=dns.flags.AA)
    message.set_opcode(dns.opcode.NOTIFY)
    return message


class Notifier:
    """The NOTIFY rounds of one `transfer` stanza's secondaries."""

    def __init__(self, secondaries: tuple[Secondary, ...], source: Address | None = None,
                 min_interval: float = MIN_INTERVAL) -> None:
        self.secondaries = secondaries
        self.source = source
        self.min_interval = min_interval
        self._rounds: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self.stopped = False
        #: NOTIFY messages acknowledged, and addresses that acknowledged none of a round's tries.
        self.accepted = 0
        self.failed = 0

    def notify(self, zone: str) -> None:
        """Tell the secondaries that ``zone`` changed: now, or after the round under way."""
        if self.stopped or not self.secondaries:
            return
        if zone in self._rounds:
            self._again.add(zone)
            return
        self._rounds[zone] = asyncio.get_running_loop().create_task(self._run(zone))

    async def stop(self) -> None:
        self.stopped = True
        rounds = list(self._rounds.values())
        for task in rounds:
            task.cancel()
        await asyncio.gather(*rounds, return_exceptions=True)

    async def _run(self, zone: str) -> None:
        try:
            while True:
                self._again.discard(zone)
                message = notify_message(zone)  # one per round: a retry is the same message, as CoreDNS's
                told = await asyncio.gather(*(self._tell(message, s) for s in self.secondaries))
                log.debug("NOTIFY for zone %s accepted by %d of %s", zone, sum(told),
                          ", ".join(map(str, self.secondaries)))
                await asyncio.sleep(self.min_interval)
                if zone not in self._again:
                    return
        finally:
            self._rounds.pop(zone, None)

    async def _tell(self, message: dns.message.Message, secondary: Secondary) -> bool:
        zone = message.question[0].name.to_text()
        why = ""
        for _ in range(ATTEMPTS):
            try:
                reply = await dns.asyncquery.udp(
                    message, secondary.host, timeout=REPLY_TIMEOUT, port=secondary.port,
                    source=None if self.source is None else str(self.source))
            except (OSError, dns.exception.DNSException) as exc:
                why = str(exc) or type(exc).__name__
                continue
            if reply.rcode() == dns.rcode.NOERROR:
                self.accepted += 1
                return True
            why = f"rcode was {dns.rcode.to_text(reply.rcode())}"
        self.failed += 1
        log.warning("NOTIFY for zone %s was not accepted by %s: %s", zone, secondary, why)
        return False

