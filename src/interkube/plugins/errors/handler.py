"""The errors handler: log what the rest of the chain raised, answer SERVFAIL."""

from __future__ import annotations

import asyncio
import logging

from interkube.dns.mnemonics import type_text
from interkube.dns.wire import RCODE_SERVFAIL, error_response, name_to_text
from interkube.errors import DnsError
from interkube.plugin.handler import Handler
from interkube.plugin.request import Request
from interkube.plugins.errors.parse import Consolidate, ErrorsConfig

log = logging.getLogger("interkube.plugin.errors")
LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}


def go_duration(ns: int) -> str:
    """A duration as Go's time.Duration.String() writes it (CoreDNS's messages use it):
    ``1h0m0s``, ``1m30s``, ``2.5s``, ``500ms``, ``1.5µs``, ``0s``."""
    if ns == 0:
        return "0s"
    sign, u = ("-", -ns) if ns < 0 else ("", ns)

    def fixed(value: int, digits: int) -> str:
        whole, frac = divmod(value, 10 ** digits)
        tail = f"{frac:0{digits}d}".rstrip("0") if digits else ""
        return f"{whole}.{tail}" if tail else str(whole)

    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{fixed(u, 3)}µs"
    if u < 1_000_000_000:
        return f"{sign}{fixed(u, 6)}ms"
    seconds, frac = divmod(u, 1_000_000_000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    text = fixed(seconds * 1_000_000_000 + frac, 9) + "s"
    if minutes or hours:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


class Consolidation:
    """The errors one `consolidate` rule has counted since the first of the current period.

    As CoreDNS: the period starts with the first matching error (not on a fixed clock), one
    line gives the count when it ends, and the next error starts a new period.
    """

    def __init__(self, rule: Consolidate) -> None:
        self.rule = rule
        self.level = LEVELS[rule.level]
        self.count = 0
        self._timer: asyncio.TimerHandle | None = None

    def add(self) -> bool:
        """Count one error. False when the caller should log it itself: the first of a period
        under show_first."""
        self.count += 1
        if self.count > 1:
            return True
        self._timer = asyncio.get_running_loop().call_later(self.rule.period, self.flush)
        return not self.rule.show_first

    def flush(self) -> None:
        """End the period: say how many errors it had (unless show_first already showed the only one)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        count, self.count = self.count, 0
        if count > 1 or (count == 1 and not self.rule.show_first):
            log.log(self.level, "%d errors like '%s' occurred in last %s",
                    count, self.rule.pattern.pattern, go_duration(self.rule.period_ns))


class ErrorsHandler(Handler):
    plugin = "errors"

    def __init__(self, cfg: ErrorsConfig) -> None:
        self.cfg = cfg
        self.consolidations = [Consolidation(rule) for rule in cfg.consolidate]
        #: Once stopped (a reload replaced this configuration, or the process ends), every error
        #: is logged on its own line: no period would end to report it.
        self.stopped = False

    async def serve(self, req: Request) -> bytes:
        try:
            return await self.next.serve(req)
        except DnsError as exc:
            rcode = getattr(exc, "rcode", RCODE_SERVFAIL)
            self.report(req, rcode, exc)
            return error_response(req.wire, rcode, req.query)
        except Exception as exc:  # a bug below us: log it with its trace, answer SERVFAIL
            self.report(req, RCODE_SERVFAIL, exc, bug=True)
            return error_response(req.wire, RCODE_SERVFAIL, req.query)

    def report(self, req: Request, rcode: int, exc: BaseException, bug: bool = False) -> None:
        """Log one error as CoreDNS does (`RCODE NAME TYPE: MESSAGE`), or count it."""
        text = str(exc)
        level = logging.ERROR
        for c in self.consolidations:
            if c.rule.pattern.search(text):
                if not self.stopped and c.add():
                    return
                level = c.level  # show_first's first error is logged at the rule's level
                break
        line = f"{rcode} {name_to_text(req.query.lname)} {type_text(req.qtype)}: {text}"
        log.log(level, line, exc_info=exc if self.cfg.stacktrace or bug else None)

    async def stop(self) -> None:
        """Report what the periods under way have counted so far (CoreDNS does on shutdown)."""
        self.stopped = True
        for c in self.consolidations:
            if c.count:
                c.flush()
