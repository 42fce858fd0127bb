"""DNS responses as dnspython writes them, drawn by hypothesis: what the readers' tests
(test_reader.py, test_records.py) read and compare with dnspython's own reading."""

from __future__ import annotations

from collections.abc import Sequence

import dns.message
import dns.rrset
from hypothesis import strategies as st

#: One record: (owner, TTL, type, rdata in presentation format).
Record = tuple[str, int, str, str]

LABELS = ("web", "Web", "WEB", "web-0", "shop", "svc", "x", "a" * 40)


def names(labels: Sequence[str] = LABELS) -> st.SearchStrategy[str]:
    """Names below cluster.local. of up to four of ``labels``."""
    return st.lists(st.sampled_from(labels), min_size=0, max_size=4).map(lambda ls: ".".join([*ls, "cluster.local."]))


def any_records(names: st.SearchStrategy[str], *, max_ttl: int, dname: bool) -> st.SearchStrategy[Record]:
    """Records of the common types (DNAME too when ``dname``); owners and the names in rdata
    from ``names``."""
    rdata: dict[str, st.SearchStrategy[str]] = {
        "A": st.sampled_from(["10.0.0.1", "10.0.0.2", "192.0.2.7"]),
        "AAAA": st.sampled_from(["fd00::1", "2001:db8::7"]),
        "TXT": st.sampled_from(['"x"', '"hello world"', '"a" "b"']),
        "CNAME": names, "NS": names, "PTR": names,
        "MX": st.builds(lambda p, n: f"{p} {n}", st.integers(0, 0xFFFF), names),
        "SRV": st.builds(lambda p, w, port, n: f"{p} {w} {port} {n}", st.integers(0, 9), st.integers(0, 99),
                         st.integers(0, 0xFFFF), names),
        "SOA": st.builds(lambda m, r, n: f"{m} {r} 1 7200 1800 86400 {n}", names, names, st.integers(0, 2**31)),
    }
    if dname:
        rdata["DNAME"] = names
    return st.sampled_from(sorted(rdata)).flatmap(
        lambda t: st.tuples(names, st.integers(0, max_ttl), st.just(t), rdata[t]))


def three_sections(records: st.SearchStrategy[Record]) -> st.SearchStrategy[list[list[Record]]]:
    """Answer, authority and additional: up to four records each."""
    return st.lists(st.lists(records, max_size=4), min_size=3, max_size=3)


def response(question: str, sections: Sequence[Sequence[Record]], edns: bool) -> dns.message.Message:
    """A response to an A query for ``question`` holding ``sections`` (answer, authority,
    additional); dnspython compresses names wherever it can when it writes it."""
    q = dns.message.make_query(question, "A", use_edns=0 if edns else False)
    m = dns.message.make_response(q)
    for section, records in zip((m.answer, m.authority, m.additional), sections, strict=True):
        for name, ttl, rdtype, text in records:
            section.append(dns.rrset.from_text(name, ttl, "IN", rdtype, text))
    return m
