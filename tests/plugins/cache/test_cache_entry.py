"""What may be cached and for how long, read from wire bytes; aged TTLs never below zero."""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest

from interkube.dns.wire import parse_query
from interkube.plugins.cache.entry import DENIAL, DROP, STALE_TTL, SUCCESS, Analysis, Entry, analyse

from cachetest import SOA, query, respond, ttls


def analysed(qwire: bytes, resp: bytes) -> Analysis:
    q = parse_query(qwire)
    assert q is not None
    a = analyse(resp, q)
    assert isinstance(a, Analysis), a
    return a


def test_success_takes_the_smallest_ttl_of_every_record_but_opt() -> None:
    qw = query()
    resp = respond(qw, [("www.example.org.", 300, "A", "192.0.2.1"), ("www.example.org.", 300, "A", "192.0.2.2")],
                   authority=[("example.org.", 120, "NS", "ns.example.org.")],
                   additional=[("ns.example.org.", 900, "A", "192.0.2.53")])
    a = analysed(qw, resp)
    assert (a.kind, a.servfail, a.ttl) == (SUCCESS, False, 120)
    # Four records, four TTL fields; the OPT record's "TTL" (EDNS flags) is not one of them.
    assert len(a.offsets) == 4
    assert sorted(struct.unpack_from("!I", resp, off)[0] for off in a.offsets) == [120, 300, 300, 900]


def test_nxdomain_lives_min_of_soa_ttl_and_soa_minimum() -> None:
    qw = query("nx.example.org.")
    low_minimum = respond(qw, authority=[("example.org.", 600, "SOA", SOA.format(minimum=60))],
                          rcode=dns.rcode.NXDOMAIN)
    assert analysed(qw, low_minimum)[:3] == (DENIAL, False, 60)
    low_ttl = respond(qw, authority=[("example.org.", 30, "SOA", SOA.format(minimum=300))],
                      rcode=dns.rcode.NXDOMAIN)
    assert analysed(qw, low_ttl)[:3] == (DENIAL, False, 30)


def test_nodata_with_soa_is_a_denial() -> None:
    qw = query("www.example.org.", "AAAA")
    resp = respond(qw, authority=[("example.org.", 3600, "SOA", SOA.format(minimum=90))])
    assert analysed(qw, resp)[:3] == (DENIAL, False, 90)


def test_servfail_is_kept_in_the_denial_cache() -> None:
    qw = query()
    a = analysed(qw, respond(qw, rcode=dns.rcode.SERVFAIL))
    assert (a.kind, a.servfail, a.ttl, a.offsets) == (DENIAL, True, -1, ())


def test_empty_noerror_without_soa_and_referrals_are_successes() -> None:
    qw = query("www.example.org.", "TXT")
    assert analysed(qw, respond(qw))[:3] == (SUCCESS, False, -1)
    referral = respond(qw, authority=[("sub.example.org.", 200, "NS", "ns.sub.example.org.")], aa=False)
    assert analysed(qw, referral)[:3] == (SUCCESS, False, 200)


@pytest.mark.parametrize("rcode", [dns.rcode.REFUSED, dns.rcode.FORMERR, dns.rcode.NOTIMP, dns.rcode.NXDOMAIN])
def test_never_cached(rcode: dns.rcode.Rcode) -> None:
    # NXDOMAIN here has no SOA: RFC 2308 says not to cache it.
    qw = query()
    q = parse_query(qw)
    assert q is not None
    assert analyse(respond(qw, rcode=rcode), q) is None


def test_truncated_and_malformed_are_not_cached() -> None:
    qw = query()
    q = parse_query(qw)
    assert q is not None
    good = respond(qw, [("www.example.org.", 300, "A", "192.0.2.1")])
    assert analyse(respond(qw, [("www.example.org.", 300, "A", "192.0.2.1")], tc=True), q) is None
    assert analyse(good[:-3], q) is None              # rdata cut short
    assert analyse(good + b"\x00", q) is None          # trailing garbage
    assert analyse(qw, q) is None                      # a query, not a response


def test_other_question_is_a_drop() -> None:
    qw = query("www.example.org.")
    q = parse_query(qw)
    assert q is not None
    other = respond(query("ww2.example.org."), [("ww2.example.org.", 300, "A", "192.0.2.1")])
    assert analyse(other, q) == DROP
    # The same name in another case is the same question.
    upper = respond(query("WWW.EXAMPLE.ORG."), [("WWW.EXAMPLE.ORG.", 300, "A", "192.0.2.1")])
    assert isinstance(analyse(upper, q), Analysis)


def test_extended_rcode_is_not_cached_and_edns_options_are_dropped_from_the_copy() -> None:
    msg = dns.message.make_query("www.example.org.", "A", use_edns=0)
    qw = msg.to_wire()
    resp = dns.message.make_response(msg)
    resp.use_edns(0, 0, 1232, options=[dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"c" * 16)])
    a = analysed(qw, resp.to_wire())
    kept = dns.message.from_wire(a.wire)
    assert kept.edns == 0 and not kept.options
    q = parse_query(qw)
    assert q is not None
    resp.set_rcode(dns.rcode.BADCOOKIE)
    assert analyse(resp.to_wire(), q) is None


def entry(qw: bytes, resp: bytes, lifetime: float, *, keepttl: bool = False) -> Entry:
    q = parse_query(qw)
    assert q is not None
    a = analysed(qw, resp)
    return Entry(q.key, a.kind, a.servfail, a.wire, q, a.offsets, lifetime, 100.0, keepttl=keepttl,
                 prefetch_percentage=10)


def test_aged_ttls_count_down_per_whole_second_and_never_below_zero() -> None:
    qw = query()
    q = parse_query(qw)
    assert q is not None
    e = entry(qw, respond(qw, [("www.example.org.", 300, "A", "192.0.2.1")],
                          additional=[("ns.example.org.", 900, "A", "192.0.2.53")]), 10)
    assert ttls(e.tpl.render(q)) == [10, 10]
    e.age(100.999)
    assert ttls(e.tpl.render(q)) == [10, 10] and e.until == 101.0
    e.age(103.5)
    assert ttls(e.tpl.render(q)) == [7, 7] and e.until == 104.0
    e.age(109.2)
    assert ttls(e.tpl.render(q)) == [1, 1] and e.until == 110.0 == e.expires
    e.age(5000.0)  # far past expiry: zero, not a negative number wrapped to 4 billion
    assert ttls(e.tpl.render(q)) == [0, 0]
    assert ttls(e.stale.render(q)) == [STALE_TTL, STALE_TTL]


def test_keepttl_keeps_the_lifetime() -> None:
    qw = query()
    q = parse_query(qw)
    assert q is not None
    e = entry(qw, respond(qw, [("www.example.org.", 300, "A", "192.0.2.1")]), 60, keepttl=True)
    assert e.until == e.expires == 160.0
    e.age(150.0)
    assert ttls(e.tpl.render(q)) == [60]


def test_entries_are_never_authoritative_and_keep_ad_only_for_do() -> None:
    plain = query()
    resp = bytearray(respond(plain, [("www.example.org.", 300, "A", "192.0.2.1")]))
    resp[3] |= 0x20  # AD
    q = parse_query(plain)
    assert q is not None
    out = dns.message.from_wire(entry(plain, bytes(resp), 60).tpl.render(q))
    assert not out.flags & dns.flags.AA and not out.flags & dns.flags.AD
    do = query(do=True)
    resp = bytearray(respond(do, [("www.example.org.", 300, "A", "192.0.2.1")]))
    resp[3] |= 0x20
    qd = parse_query(do)
    assert qd is not None
    out = dns.message.from_wire(entry(do, bytes(resp), 60).tpl.render(qd))
    assert not out.flags & dns.flags.AA and out.flags & dns.flags.AD
