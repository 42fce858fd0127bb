"""The errors handler: log what the rest of the chain raised, answer SERVFAIL."""

from __future__ import annotations

import asyncio
import logging

import dns.rdatatype

from interkube.dns.wire import RCODE_SERVFAIL, error_response
from interkube.errors import DnsError
from interkube.plugins.errors.parse import ErrorsConfig
from interkube.plugin.handler import Handler
from interkube.plugin.request import Request

log = logging.getLogger("interkube.plugin.errors")
_LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}


def _type_text(qtype: int) -> str:
    try:
        return dns.rdatatype.to_text(qtype)  # type: ignore[arg-type]
    except ValueError:
        return str(qtype)


class ErrorsHandler(Handler):
    plugin = "errors"

    def __init__(self, cfg: ErrorsConfig) -> None:
        self.cfg = cfg
        self.counts = [0] * len(cfg.consolidate)
        self._task: asyncio.Task[None] | None = None

    def fast(self, req: Request) -> bytes | None:
        return self.next.fast(req)

    async def serve(self, req: Request) -> bytes:
        try:
            return await self.next.serve(req)
        except DnsError as exc:
            rcode = getattr(exc, "rcode", RCODE_SERVFAIL)
            self.report(req, rcode, exc)
            return error_response(req.wire, rcode, req.query)
        except Exception as exc:  # a bug below us: log it with its trace, answer SERVFAIL
            self.report(req, RCODE_SERVFAIL, exc, force_trace=True)
            return error_response(req.wire, RCODE_SERVFAIL, req.query)

    def report(self, req: Request, rcode: int, exc: BaseException, force_trace: bool = False) -> None:
        text = str(exc)
        for i, rule in enumerate(self.cfg.consolidate):
            if rule.pattern.search(text):
                self.counts[i] += 1
                return
        try:
            name = req.qname_text
        except Exception:  # noqa: BLE001 - the name is only for the log line
            name = "?"
        line = f"{rcode} {name} {_type_text(req.qtype)}: {text}"
        if self.cfg.stacktrace or force_trace:
            log.error(line, exc_info=exc)
        else:
            log.error(line)

    async def start(self) -> None:
        if self.cfg.consolidate:
            self._task = asyncio.get_running_loop().create_task(self._flush_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _flush_loop(self) -> None:
        period = min(rule.period for rule in self.cfg.consolidate)
        elapsed = [0.0] * len(self.cfg.consolidate)
        while True:
            await asyncio.sleep(period)
            for i, rule in enumerate(self.cfg.consolidate):
                elapsed[i] += period
                if elapsed[i] + 1e-9 < rule.period:
                    continue
                elapsed[i] = 0.0
                if self.counts[i]:
                    log.log(_LEVELS[rule.level], "%d errors like '%s' occurred in last %gs",
                            self.counts[i], rule.pattern.pattern, rule.period)
                    self.counts[i] = 0
