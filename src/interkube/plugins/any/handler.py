"""The any handler: ANY questions get one HINFO record instead of everything the name has.

RFC 8482 lets a server answer ANY with a synthesized HINFO record (CPU "ANY obsoleted", OS "See
RFC 8482", TTL 8482); CoreDNS's *any* does so for ANY of any name and class, and passes every
other type on. The answer depends only on the question, so it is built once per question shape
and served from a template on the fast path.
"""

from __future__ import annotations

import dns.rdataclass
import dns.rdatatype
import dns.rrset

from interkube.dns.message import make_response, render
from interkube.dns.wire import template_for
from interkube.plugin.answers import INLINE_BUILDS, Entry, TemplateHandler, TemplateTable
from interkube.plugin.handler import passes_later
from interkube.plugin.request import Request

TYPE_ANY = 255
HINFO_TTL = 8482
HINFO_CPU = "ANY obsoleted"
HINFO_OS = "See RFC 8482"
#: Question shapes answered from memory: every name asked with ANY has its own.
CAPACITY = 10_000


class AnyHandler(TemplateHandler):
    plugin = "any"

    def __init__(self) -> None:
        self.templates = TemplateTable(CAPACITY, per_query_capacity=CAPACITY)

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        if req.query.qtype != TYPE_ANY:
            return self.next.fast(req)
        return super().fast(req)

    async def serve(self, req: Request) -> bytes:
        if req.query.qtype != TYPE_ANY:
            return await self.next.serve(req)
        return await super().serve(req)

    def template(self, req: Request) -> Entry:
        q = req.query
        tpl = self.templates.get(q.key)
        if tpl is None:
            started = INLINE_BUILDS.begin()
            tpl = template_for(hinfo_response(req), q)
            INLINE_BUILDS.end(started)
            self.templates.put(q.key, tpl)
        return tpl


def hinfo_response(req: Request) -> bytes:
    """The RFC 8482 answer to ``req`` (not authoritative: CoreDNS's is not either)."""
    response = make_response(req.message, authoritative=False)
    # Class IN whatever the question's class, as CoreDNS writes it.
    response.answer.append(dns.rrset.from_text(req.qname, HINFO_TTL, dns.rdataclass.IN, dns.rdatatype.HINFO,
                                               f'"{HINFO_CPU}" "{HINFO_OS}"'))
    return render(response)
