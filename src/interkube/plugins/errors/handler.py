"""The errors handler: log what the rest of the chain raised, answer SERVFAIL."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable

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
    """The errors one `consolidate` rule (or one message, see ByMessage) has counted since the
    first of the current period.

    As CoreDNS: the period starts with the first matching error (not on a fixed clock), one
    line gives the count when it ends, and the next error starts a new period.
    """

    def __init__(self, rule: Consolidate, label: str | None = None,
                 ended: Callable[[Consolidation], object] | None = None) -> None:
        self.rule = rule
        self.level = LEVELS[rule.level]
        #: What the count line says the errors were like: the rule's pattern, or the message.
        self.label = rule.pattern.pattern if label is None else label
        self.count = 0
        self._ended = ended
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
                    count, self.label, go_duration(self.rule.period_ns))
        if self._ended is not None:
            self._ended(self)


#: The consolidation of an `errors` without `consolidate` (see ByMessage): each distinct message
#: shown when it first occurs, then counted for this long.
DEFAULT_PERIOD_NS = 5 * 10**9
#: Distinct messages counted at once; errors with a message beyond these share one count.
MAX_MESSAGES = 100
#: A message is told apart by this many of its first characters (a long one is a bug's text).
MESSAGE_KEY_LEN = 200
#: What the count of the messages beyond MAX_MESSAGES is "like" (a regular expression, as in
#: the count lines of CoreDNS's rules).
OTHER_MESSAGES = ".*"


class ByMessage:
    """The default of an `errors` without `consolidate`: one `consolidate DEFAULT_PERIOD "MESSAGE"
    error show_first` per distinct error message.

    CoreDNS logs every error on a line of its own; a failing upstream under load made that tens
    of thousands of lines a minute (and the logging, most of the server's time). Here the first
    error with a message is logged as CoreDNS writes it, at once (so a rare error looks exactly
    as in CoreDNS), and while more with the same message follow, one line per period gives
    their count, e.g. `1523 errors like '127.0.0.1:53: no answer over UDP in time' occurred in
    last 5s`. An error with another message is logged at once too.
    """

    def __init__(self, period_ns: int | None = None) -> None:
        rule = Consolidate(DEFAULT_PERIOD_NS if period_ns is None else period_ns, re.compile(""), "error",
                           show_first=True)
        self.rule = rule
        self.periods: dict[str, Consolidation] = {}

    def period_for(self, message: str) -> Consolidation:
        key = message[:MESSAGE_KEY_LEN]
        periods = self.periods
        c = periods.get(key)
        if c is None:
            if len(periods) >= MAX_MESSAGES:
                key = OTHER_MESSAGES
                c = periods.get(key)
            if c is None:
                c = periods[key] = Consolidation(self.rule, key, self._ended)
        return c

    def _ended(self, c: Consolidation) -> None:
        # A period that ended forgets its message: the table holds the messages of the periods
        # under way, never every message seen.
        if self.periods.get(c.label) is c:
            del self.periods[c.label]

    def flush(self) -> None:
        for c in list(self.periods.values()):
            c.flush()


class ErrorsHandler(Handler):
    plugin = "errors"
    # It acts on the slow path's errors only: its fast() is the base class's, which passes on.
    memo_safe = True

    def __init__(self, cfg: ErrorsConfig) -> None:
        self.cfg = cfg
        self.consolidations = [Consolidation(rule) for rule in cfg.consolidate]
        self.by_message = ByMessage() if cfg.by_message else None
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
        """Log one error as CoreDNS does (`RCODE NAME TYPE: MESSAGE`), or count it.

        Only what the request already holds is read (the question's name and type from the
        fast parser): a failure costs no parse, and a counted one no formatting either.
        """
        text = str(exc)
        level = logging.ERROR
        if self.by_message is not None:
            if not self.stopped and self.by_message.period_for(text).add():
                return
        else:
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
        if self.by_message is not None:
            self.by_message.flush()
