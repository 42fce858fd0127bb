"""The log handler: one line per answered query, in CoreDNS's format.

The placeholders print what CoreDNS 1.15 prints for the same query and answer (checked by
tests/plugins/log/test_log_vs_coredns.py), with the differences docs/divergences.md lists.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from interkube.dns.mnemonics import class_text, rcode_text, type_text
from interkube.dns.names import ZoneSet
from interkube.dns.records import Malformed, read_message
from interkube.dns.wire import (
    FLAG_TC,
    RCODE_NOERROR,
    RCODE_NOTIMP,
    RCODE_NXDOMAIN,
    RCODE_SERVFAIL,
    ZONE_TRANSFERS,
    error_response,
    name_to_text,
)
from interkube.errors import DnsError
from interkube.plugin import later, metadata
from interkube.plugin.handler import LATER, Handler, passes_later
from interkube.plugin.request import Request
from interkube.plugins.log.parse import LogConfig, Rule

log = logging.getLogger("interkube.query")

Field = Callable[[Request, bytes, float], str]

_FLAG_NAMES = ((0x8000, "qr"), (0x0400, "aa"), (0x0200, "tc"), (0x0100, "rd"), (0x0080, "ra"),
               (0x0040, "z"), (0x0020, "ad"), (0x0010, "cd"))
#: What CoreDNS prints for a value it does not have (no response: an acl drop).
EMPTY = "-"
#: An RRSIG's validity is compared in RFC 1982 serial arithmetic, as miekg/dns does.
_YEAR68 = 1 << 31
TYPE_RRSIG = 46
TYPE_SOA = 6
TYPE_NS = 2


def _type(req: Request, resp: bytes, d: float) -> str:
    return type_text(req.query.qtype)


def _class(req: Request, resp: bytes, d: float) -> str:
    return class_text(req.query.qclass)


def _name(req: Request, resp: bytes, d: float) -> str:
    # CoreDNS prints the name lower-cased (request.Name()), whatever case the client used.
    return name_to_text(req.query.lname)


def _bracketed(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def _remote(req: Request, resp: bytes, d: float) -> str:
    return _bracketed(str(req.client[0]))


def _local(req: Request, resp: bytes, d: float) -> str:
    if req.local:
        return _bracketed(str(req.local[0]))
    # The listener's address, as the route's server label writes it (dns://127.0.0.1:53): the
    # socket is bound to exactly that address. A listener on every interface has none to give.
    host = req.route.server.partition("://")[2].rpartition(":")[0]
    return host or EMPTY


def _bufsize(req: Request, resp: bytes, d: float) -> str:
    # CoreDNS's request.Size(): 64 KiB over TCP, else the EDNS size but never below 512.
    if req.proto != "udp":
        return "65535"
    q = req.query
    return str(max(q.payload, 512) if q.edns else 512)


def _rcode(req: Request, resp: bytes, d: float) -> str:
    return rcode_text(resp[3] & 0x0F) if resp else EMPTY


def _rflags(req: Request, resp: bytes, d: float) -> str:
    if not resp:
        return EMPTY
    flags = (resp[2] << 8) | resp[3]
    if req.proto == "udp" and len(resp) > req.query.udp_limit:
        flags |= FLAG_TC  # the dispatcher sends it truncated; CoreDNS's line shows tc too
    return ",".join(name for bit, name in _FLAG_NAMES if flags & bit)


def _duration(req: Request, resp: bytes, d: float) -> str:
    # Go's strconv.FormatFloat(secs, 'f', -1): no exponent; nanoseconds are the resolution.
    return f"{d:.9f}".rstrip("0").rstrip(".") + "s"


FIELDS: dict[str, Field] = {
    "{type}": _type,
    "{class}": _class,
    "{name}": _name,
    "{proto}": lambda r, s, d: "tcp" if r.proto == "tls" else r.proto,
    "{remote}": _remote,
    "{local}": _local,
    "{port}": lambda r, s, d: str(r.client[1]),
    "{size}": lambda r, s, d: str(len(r.wire)),
    "{rcode}": _rcode,
    "{rsize}": lambda r, s, d: str(len(s)),
    "{duration}": _duration,
    "{>id}": lambda r, s, d: str((r.wire[0] << 8) | r.wire[1]),
    "{>opcode}": lambda r, s, d: str((r.wire[2] >> 3) & 0x0F),
    "{>do}": lambda r, s, d: "true" if r.query.do else "false",
    "{>bufsize}": _bufsize,
    "{>rflags}": _rflags,
    # interkube's own: the server block's zone and the server label of its metrics.
    "{zone}": lambda r, s, d: r.zone,
    "{server}": lambda r, s, d: r.server,
}

_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def compile_format(fmt: str) -> Callable[[Request, bytes, float], str]:
    """Turn a format string into a function, as CoreDNS's replacer reads it.

    A placeholder is the innermost `{...}` (so `{ {type} }` holds one). `{/LABEL}` is a metadata
    label: its value when the query has one (see the *metadata* plugin), else `-`, as CoreDNS
    prints it. Anything else in braces is not a placeholder and is printed as written.
    """
    parts: list[str | Field] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(fmt):
        label = m.group(0)
        field = FIELDS.get(label)
        if field is None and label.startswith("{/"):
            field = _metadata_field(label[2:-1])
        if field is None:
            continue
        parts.append(fmt[pos:m.start()])
        parts.append(field)
        pos = m.end()
    parts.append(fmt[pos:])
    literals = [p for p in parts if p != ""]

    def render(req: Request, resp: bytes, d: float) -> str:
        return "".join(p if isinstance(p, str) else p(req, resp, d) for p in literals)

    return render


def _metadata_field(label: str) -> Field:
    def field(req: Request, resp: bytes, d: float) -> str:
        found = metadata.value(req, label)
        return EMPTY if found is None else found

    return field


def _signature_expired(wire: bytes, now: int) -> bool:
    """Whether an RRSIG in the response is outside its validity period (CoreDNS's typifyExpired,
    with miekg's ValidityPeriod)."""
    try:
        msg = read_message(wire)
    except Malformed:
        return False
    for section in (msg.answer, msg.authority, msg.additional):
        for _, rtype, _, _, rdata in section:
            if rtype != TYPE_RRSIG or len(rdata) < 16:
                continue
            expiration = int.from_bytes(rdata[8:12], "big")
            inception = int.from_bytes(rdata[12:16], "big")
            # Go's integer division truncates toward zero; Python's // would floor.
            ti = inception + int((inception - now) / _YEAR68) * _YEAR68
            te = expiration + int((expiration - now) / _YEAR68) * _YEAR68
            if not ti <= now <= te:
                return True
    return False


def typify(req: Request, resp: bytes) -> str:
    """The answer's type as CoreDNS's response.Typify names it (NOERROR, NXDOMAIN, NODATA, ...)."""
    if not resp:
        return "OTHERERROR"  # nothing was sent (acl drop)
    opcode = (resp[2] >> 3) & 0x0F
    if opcode == 5:
        return "UPDATE"
    if opcode == 4 or req.query.qtype in ZONE_TRANSFERS:
        return "META"  # NOTIFY and transfers
    # CoreDNS checks signatures when the response's OPT has DO, which its server has set from
    # the query's (request.SizeAndDo) by the time log classifies: so, when the query had DO.
    if req.query.do and _signature_expired(resp, int(time.time())):
        return "OTHERERROR"
    rcode = resp[3] & 0x0F
    answers = (resp[6] << 8) | resp[7]
    if answers and rcode in (RCODE_NOERROR, RCODE_NXDOMAIN):
        return "NOERROR" if rcode == RCODE_NOERROR else "OTHERERROR"  # NXDOMAIN with answers
    # A SOA in the authority section makes a NOERROR a NODATA; NS records, a referral.
    soa = referral = False
    if rcode == RCODE_NOERROR and (resp[8] or resp[9]):
        try:
            authority = read_message(resp).authority
        except Malformed:
            return "OTHERERROR"
        soa = any(rtype == TYPE_SOA for _, rtype, _, _, _ in authority)
        referral = any(rtype == TYPE_NS for _, rtype, _, _, _ in authority)
    if soa:
        return "NODATA"
    if rcode == RCODE_NXDOMAIN:
        return "NXDOMAIN"
    if rcode in (RCODE_SERVFAIL, RCODE_NOTIMP):
        return "SERVERERROR"
    if referral:
        return "DELEGATION"
    return "NOERROR" if rcode == RCODE_NOERROR else "OTHERERROR"


#: CoreDNS's response.Classify: the class of each type.
CLASSES = {"NOERROR": "success", "DELEGATION": "success", "NXDOMAIN": "denial", "NODATA": "denial"}


def classify(req: Request, resp: bytes) -> str:
    """The answer's class as CoreDNS's response.Typify and Classify decide it."""
    return CLASSES.get(typify(req, resp), "error")


@dataclass(frozen=True)
class _Compiled:
    names: ZoneSet
    render: Callable[[Request, bytes, float], str]
    classes: frozenset[str]
    every: bool

    @classmethod
    def of(cls, rule: Rule) -> _Compiled:
        return cls(ZoneSet((rule.name,)), compile_format(rule.format), rule.classes, "all" in rule.classes)


class LogHandler(Handler):
    """Every `log` directive of a server block, as one handler with a rule per name.

    As CoreDNS, the first rule whose name contains the query's decides: it logs the query if
    the answer's class is one of its classes, and no later rule is tried.
    """

    plugin = "log"

    def __init__(self, cfg: LogConfig) -> None:
        self.rules: list[_Compiled] = []
        self.add(cfg)

    def add(self, cfg: LogConfig) -> None:
        """Append the rules of another `log` directive of the same server block."""
        self.rules.extend(_Compiled.of(rule) for rule in cfg.rules)

    def _emit(self, req: Request, resp: bytes) -> None:
        lname = req.query.lname
        for rule in self.rules:
            if rule.names.match(lname) is None:
                continue
            if req.meta is not None:
                # CoreDNS's log sets these for its format (and later plugins) when metadata is on.
                kind = typify(req, resp)
                metadata.set_value(req, "log/type", kind)
                metadata.set_value(req, "log/class", CLASSES.get(kind, "error"))
            if rule.every or classify(req, resp) in rule.classes:
                log.info(rule.render(req, resp, time.monotonic() - req.started))
            return

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        resp = self.next.fast(req)
        if resp is not None:
            if resp is LATER:
                later.after(req, self._emitted)
            else:
                self._emit(req, resp)
        return resp

    def _emitted(self, req: Request, resp: bytes) -> bytes:
        self._emit(req, resp)
        return resp

    async def serve(self, req: Request) -> bytes:
        try:
            resp = await self.next.serve(req)
        except DnsError as exc:
            # The answer the client gets: errors (or the dispatcher) answers with this rcode.
            self._emit(req, error_response(req.wire, getattr(exc, "rcode", RCODE_SERVFAIL), req.query))
            raise
        self._emit(req, resp)
        return resp


__all__ = ["EMPTY", "FIELDS", "LogHandler", "classify", "compile_format"]
