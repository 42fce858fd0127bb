"""The acl handler: the first rule that matches a query's type and source decides."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, Metric

from interkube.dns.memo import Memo
from interkube.dns.names import ZoneSet
from interkube.dns.wire import EDE_BLOCKED, EDE_FILTERED, RCODE_NOERROR, RCODE_REFUSED, ede_option, error_response
from interkube.pkg.metrics import NAMESPACE
from interkube.pkg.shared import Kind
from interkube.plugin import later
from interkube.plugin.handler import LATER, Handler, passes_later
from interkube.plugin.metrics import Metrics
from interkube.plugin.request import Request
from interkube.plugins.acl.parse import AclConfig

ALLOW, BLOCK, FILTER, DROP = 0, 1, 2, 3
_CODES = {"allow": ALLOW, "block": BLOCK, "filter": FILTER, "drop": DROP}
_BLOCKED = ede_option(EDE_BLOCKED)
_FILTERED = ede_option(EDE_FILTERED)
#: Decisions remembered per (client address, qtype); bounded, the oldest forgotten first (see
#: interkube.dns.memo), so a flood of sources costs CPU, never memory, and never a stall.
_MEMO_LIMIT = 65536


class AclStats:
    __slots__ = ("blocked", "filtered", "dropped", "allowed")

    def __init__(self) -> None:
        self.blocked = self.filtered = self.dropped = self.allowed = 0



ACL_STATS = Kind('acl statistics', AclStats)

class AclHandler(Handler):
    plugin = "acl"

    def __init__(self, cfg: AclConfig, zones: tuple[str, ...], server: str = "",
                 metrics: Metrics | None = None, stats: AclStats | None = None) -> None:
        self.cfg = cfg
        self.server = server
        self.metrics = metrics
        self.zone_label = " ".join(cfg.zones or zones)
        self.zones = ZoneSet(cfg.zones or zones)
        self.rules = [(_CODES[r.action], r.types, r.nets) for r in cfg.rules]
        self.memos: Memo[tuple[str, int], int] = Memo(_MEMO_LIMIT)
        self.memo = self.memos.table
        self.stats = stats or AclStats()

    def decide(self, client_ip: str, qtype: int) -> int:
        key = (client_ip, qtype)
        action = self.memo.get(key)
        if action is not None:
            return action
        addr = ipaddress.ip_address(client_ip.split("%", 1)[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped  # a v4 client on a dual-stack socket
        action = ALLOW
        for code, types, nets in self.rules:
            if types is not None and qtype not in types:
                continue
            if nets is not None and not any(addr.version == n.version and addr in n for n in nets):
                continue
            action = code
            break
        self.memos.remember(key, action)
        return action

    def _refusal(self, req: Request, action: int) -> bytes:
        q = req.query
        if action == DROP:
            self.stats.dropped += 1
            return b""
        req.answered_by = "acl"
        if action == BLOCK:
            self.stats.blocked += 1
            return error_response(req.wire, RCODE_REFUSED, q, _BLOCKED)
        self.stats.filtered += 1
        return error_response(req.wire, RCODE_NOERROR, q, _FILTERED)

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        q = req.query
        if self.zones.match(q.lname) is not None:
            action = self.decide(req.client[0], q.qtype)
            if action != ALLOW:
                return self._refusal(req, action)
            resp = self.next.fast(req)
            if resp is LATER:  # counted when it comes (the slow path counts it if it goes there)
                later.after(req, self._allowed)
            elif resp is not None:
                self.stats.allowed += 1
            return resp
        return self.next.fast(req)

    def _allowed(self, req: Request, resp: bytes) -> bytes:
        self.stats.allowed += 1
        return resp

    async def serve(self, req: Request) -> bytes:
        q = req.query
        if self.zones.match(q.lname) is not None:
            action = self.decide(req.client[0], q.qtype)
            if action != ALLOW:
                return self._refusal(req, action)
            self.stats.allowed += 1
        return await self.next.serve(req)

    async def start(self) -> None:
        if self.metrics is not None:
            self.metrics.add_source(self, self.collect)

    async def stop(self) -> None:
        if self.metrics is not None:
            self.metrics.remove_source(self)

    def collect(self) -> Iterable[Metric]:
        labels = [self.server, self.zone_label, ""]
        for what, value in (("blocked", self.stats.blocked), ("filtered", self.stats.filtered),
                            ("allowed", self.stats.allowed), ("dropped", self.stats.dropped)):
            fam = CounterMetricFamily(f"{NAMESPACE}_acl_{what}_requests", f"Counter of DNS requests {what}.",
                                      labels=["server", "zone", "view"])
            fam.add_metric(labels, value)
            yield fam
