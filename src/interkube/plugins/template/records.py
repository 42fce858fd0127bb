"""A resource record from the zone-file text a template printed, read as CoreDNS reads it
(miekg/dns's NewRR): the owner first, then a TTL and a class in either order, both optional (3600
and IN), then the type and its data; names not ending in a dot are below the root; parentheses
may span lines; `;` starts a comment; only the first record counts. No I/O."""

from __future__ import annotations

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tokenizer
import dns.ttl

#: miekg's TTL for a record that names none (and has no $TTL before it).
DEFAULT_TTL = 3600


class RecordError(Exception):
    """The text is not a resource record."""


def parse_record(text: str) -> dns.rrset.RRset:
    """The one record ``text`` holds, as an RRset; RecordError says why it is not one."""
    try:
        tok = dns.tokenizer.Tokenizer(text)
        first = tok.get()
        if first.is_eol_or_eof():
            raise RecordError("no record in the text")
        owner = dns.name.from_text(first.value, origin=dns.name.root)
        ttl: int | None = None
        rdclass: dns.rdataclass.RdataClass | None = None
        word = tok.get_string()
        for _ in range(2):
            if ttl is None and word[:1].isdigit():
                ttl = dns.ttl.from_text(word)
                word = tok.get_string()
            elif rdclass is None and _is_class(word):
                rdclass = dns.rdataclass.from_text(word)
                word = tok.get_string()
        rdtype = dns.rdatatype.from_text(word)
        rdclass = rdclass if rdclass is not None else dns.rdataclass.IN
        rdata = dns.rdata.from_text(rdclass, rdtype, tok, origin=dns.name.root, relativize=False)
    except (dns.exception.DNSException, ValueError) as exc:
        raise RecordError(str(exc) or type(exc).__name__) from None
    rrset = dns.rrset.RRset(owner, rdclass, rdtype)
    rrset.add(rdata, DEFAULT_TTL if ttl is None else ttl)
    return rrset


def _is_class(word: str) -> bool:
    try:
        dns.rdataclass.from_text(word)
    except dns.exception.DNSException:
        return False
    return True


__all__ = ["DEFAULT_TTL", "RecordError", "parse_record"]
