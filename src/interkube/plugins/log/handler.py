"""The log handler: one line per answered query, in CoreDNS's format."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from interkube.dns.names import ZoneSet
from interkube.dns.wire import HEADER_LEN, RCODE_NXDOMAIN, RCODE_NOERROR, RCODE_SERVFAIL, error_response, name_to_text
from interkube.errors import DnsError
from interkube.plugins.log.parse import LogConfig
from interkube.plugin.handler import Handler
from interkube.plugin.request import Request

log = logging.getLogger("interkube.query")

Field = Callable[[Request, bytes, float], str]

_FLAG_NAMES = ((0x8000, "qr"), (0x0400, "aa"), (0x0200, "tc"), (0x0100, "rd"), (0x0080, "ra"),
               (0x0040, "z"), (0x0020, "ad"), (0x0010, "cd"))


def _text(fn: Callable[[int], object], value: int) -> str:
    try:
        return str(fn(value))
    except ValueError:
        return str(value)


def _remote(req: Request, resp: bytes, d: float) -> str:
    ip = str(req.client[0])
    return f"[{ip}]" if ":" in ip else ip


def _rflags(req: Request, resp: bytes, d: float) -> str:
    flags = (resp[2] << 8) | resp[3]
    return ",".join(name for bit, name in _FLAG_NAMES if flags & bit)


def _duration(req: Request, resp: bytes, d: float) -> str:
    return f"{d:.9f}".rstrip("0").rstrip(".") + "s"


FIELDS: dict[str, Field] = {
    "type": lambda r, s, d: _text(dns.rdatatype.to_text, r.query.qtype),
    "class": lambda r, s, d: _text(dns.rdataclass.to_text, r.query.qclass),
    "name": lambda r, s, d: name_to_text(r.wire[HEADER_LEN:r.query.qname_end]),
    "proto": lambda r, s, d: "tcp" if r.proto == "tls" else r.proto,
    "remote": _remote,
    "port": lambda r, s, d: str(r.client[1]),
    "size": lambda r, s, d: str(len(r.wire)),
    "rcode": lambda r, s, d: _text(dns.rcode.to_text, s[3] & 0x0F),
    "rsize": lambda r, s, d: str(len(s)),
    "duration": _duration,
    ">id": lambda r, s, d: str((r.wire[0] << 8) | r.wire[1]),
    ">opcode": lambda r, s, d: _text(dns.opcode.to_text, (r.wire[2] >> 3) & 0x0F),
    ">do": lambda r, s, d: "true" if r.query.do else "false",
    ">bufsize": lambda r, s, d: str(r.query.payload if r.query.edns else 512),
    ">rflags": _rflags,
    "zone": lambda r, s, d: r.zone,
    "server": lambda r, s, d: r.server,
}

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


def compile_format(fmt: str) -> Callable[[Request, bytes, float], str]:
    """Turn a format string into a function; unknown placeholders are printed as `-`."""
    parts: list[str | Field] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(fmt):
        parts.append(fmt[pos:m.start()])
        parts.append(FIELDS.get(m.group(1), lambda r, s, d: "-"))
        pos = m.end()
    parts.append(fmt[pos:])

    def render(req: Request, resp: bytes, d: float) -> str:
        return "".join(p if isinstance(p, str) else p(req, resp, d) for p in parts)

    return render


def classify(resp: bytes) -> str:
    rcode = resp[3] & 0x0F
    if rcode == RCODE_NOERROR:
        return "success" if (resp[6] or resp[7]) else "denial"
    if rcode == RCODE_NXDOMAIN:
        return "denial"
    return "error"


class LogHandler(Handler):
    plugin = "log"

    def __init__(self, cfg: LogConfig) -> None:
        self.cfg = cfg
        self.names = ZoneSet(cfg.names)
        self.render = compile_format(cfg.format)
        self.every_class = "all" in cfg.classes

    def _emit(self, req: Request, resp: bytes) -> None:
        if self.names.match(req.query.lname) is None:
            return
        if not self.every_class and classify(resp) not in self.cfg.classes:
            return
        log.info(self.render(req, resp, time.monotonic() - req.started))

    def fast(self, req: Request) -> bytes | None:
        resp = self.next.fast(req)
        if resp is not None:
            self._emit(req, resp)
        return resp

    async def serve(self, req: Request) -> bytes:
        try:
            resp = await self.next.serve(req)
        except DnsError:
            self._emit(req, error_response(req.wire, RCODE_SERVFAIL, req.query))
            raise
        self._emit(req, resp)
        return resp
