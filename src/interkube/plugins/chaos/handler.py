"""The chaos handler: TXT questions of class CH about the server itself.

``version.bind`` and ``version.server`` give the version, ``hostname.bind`` and ``id.server``
the host's name, ``authors.bind`` one TXT record per author in a random order. Any other CH
TXT question, and every question of another class or type, goes on to the next plugin, as in
CoreDNS. The answers are not authoritative and have TTL 0. Fixed answers are served from
templates; the authors are shuffled for each query.
"""

from __future__ import annotations

import random

import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

from interkube.dns.message import make_response, render
from interkube.dns.names import to_wire
from interkube.dns.wire import template_for
from interkube.plugin.answers import PASS, Entry, TemplateHandler, TemplateTable
from interkube.plugin.handler import passes_later
from interkube.plugin.request import Request
from interkube.plugins.chaos.parse import ChaosConfig

CLASS_CH = 3
TYPE_TXT = 16
VERSION_NAMES = (to_wire("version.bind."), to_wire("version.server."))
HOSTNAME_NAMES = (to_wire("hostname.bind."), to_wire("id.server."))
AUTHORS_NAME = to_wire("authors.bind.")
#: Question shapes kept: five names times the few shapes a client asks with.
CAPACITY = 256


class ChaosHandler(TemplateHandler):
    plugin = "chaos"

    def __init__(self, cfg: ChaosConfig, hostname: str, rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.answers: dict[bytes, tuple[str, ...]] = {name: (cfg.version,) for name in VERSION_NAMES}
        self.answers.update({name: (hostname,) for name in HOSTNAME_NAMES})
        self.templates = TemplateTable(CAPACITY, per_query_capacity=CAPACITY)
        self.rng = rng or random.Random()

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        q = req.query
        if q.qclass != CLASS_CH or q.qtype != TYPE_TXT:
            return self.next.fast(req)  # (nearly every query: one test, no template lookup)
        return super().fast(req)

    def template(self, req: Request) -> Entry:
        q = req.query
        if q.qclass != CLASS_CH or q.qtype != TYPE_TXT:
            return PASS
        if q.lname == AUTHORS_NAME:
            # Shuffled per query, so never kept (a diagnostic question, rarely asked).
            authors = list(self.cfg.authors)
            self.rng.shuffle(authors)
            return template_for(self._response(req, authors), q)
        texts = self.answers.get(q.lname)
        if texts is None:
            return PASS
        tpl = self.templates.get(q.key)
        if tpl is None:
            tpl = template_for(self._response(req, texts), q)
            self.templates.put(q.key, tpl)
        return tpl

    @staticmethod
    def _response(req: Request, texts: list[str] | tuple[str, ...]) -> bytes:
        response = make_response(req.message, authoritative=False)
        if texts:
            rrset = dns.rrset.RRset(req.qname, dns.rdataclass.CH, dns.rdatatype.TXT)
            for text in texts:
                rrset.add(dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.CH, dns.rdatatype.TXT, [text.encode()]), 0)
            response.answer.append(rrset)
        return render(response)
