"""template answering through real sockets: matching, groups, each section, rcode, ederror,
fallthrough, classes and types, failures, and answers kept in memory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from interkube.plugin.answers import INLINE_BUILDS, Deferred
from interkube.plugins.template.handler import CLIENT_ANSWERS, TemplatingHandler
from testkit.chains import chain_handler, request

Serve = Callable[[str], Awaitable[Any]]  # the `serve` fixture (tests/plugins/conftest.py)

IP_A = """template IN A example {
            match (^|[.])ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
            answer "{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
            %s
        }"""

# What the next plugin answers, so that a pass from template shows in the response.
NEXT_ZONE = """\
$TTL 300
@ IN SOA ns.example.net. hostmaster.example.net. 1 7200 3600 86400 300
@ IN NS ns.example.net.
* IN A 198.51.100.1
* IN AAAA 2001:db8::1
"""


def records(r: dns.message.Message, section: str = "answer") -> list[str]:
    return [f"{rrset.name} {rrset.ttl} {dns.rdataclass.to_text(rrset.rdclass)} "
            f"{dns.rdatatype.to_text(rrset.rdtype)} {rd}" for rrset in getattr(r, section) for rd in rrset]


def aa(r: dns.message.Message) -> bool:
    return bool(r.flags & dns.flags.AA)


def handler(srv: Any, index: int = 0) -> TemplatingHandler:
    found = [h for h in srv.server.instance.built.handlers if h.plugin == "template"]
    assert isinstance(found[index], TemplatingHandler)
    return found[index]


def next_zone(tmp_path: Path) -> Path:
    path = tmp_path / "db.example"
    path.write_text(NEXT_ZONE)
    return path


async def test_a_record_from_named_groups(serve: Serve) -> None:
    srv = await serve(f".:PORT {{\n bind 127.0.0.1\n {IP_A % ''}\n}}")
    r = await srv.query("ip-10-1-2-3.example", "A")
    assert (r.rcode(), aa(r), records(r)) == (dns.rcode.NOERROR, True, ["ip-10-1-2-3.example. 60 IN A 10.1.2.3"])
    # The pattern is not anchored at the start: any name below matches too.
    assert records(await srv.query("www.ip-192-0-2-1.example", "A")) == [
        "www.ip-192-0-2-1.example. 60 IN A 192.0.2.1"]


async def test_names_are_matched_in_lower_case_and_the_owner_keeps_the_clients_case(serve: Serve) -> None:
    srv = await serve(""".:PORT {
        bind 127.0.0.1
        template IN TXT example {
            match ^(?P<host>[a-z]+)[.]example[.]$
            answer "{{ .Name }} 60 IN TXT {{ .Group.host }} {{ .Name }}"
        }
    }""")
    r = await srv.query("WwW.Example", "TXT")
    assert r.answer[0].name.labels == (b"WwW", b"Example", b"")
    assert [rd.strings for rd in r.answer[0]] == [(b"www", b"www.example.")]


async def test_match_list_first_pattern_that_matches_wins(serve: Serve) -> None:
    srv = await serve(r""".:PORT {
        bind 127.0.0.1
        template IN TXT example {
            match ^a[.](?P<x>[a-z]+)[.]example[.]$ ^(?<x>[a-z]+)[.]b[.]example[.]\z
            match ^(?P<x>[a-z]+)[.]
            answer "{{ .Name }} 60 IN TXT {{ .Group.x }} \"{{ .Regex }}\" {{ len .Match }}"
        }
    }""")
    txt = {name: (await srv.query(name, "TXT")).answer[0][0].strings
           for name in ("a.one.example", "two.b.example", "a.b.example", "three.example")}
    assert txt == {"a.one.example": (b"one", b"^a[.](?P<x>[a-z]+)[.]example[.]$", b"2"),
                   "two.b.example": (b"two", b"^(?<x>[a-z]+)[.]b[.]example[.]z", b"2"),  # (\\z read as z in TXT)
                   "a.b.example": (b"b", b"^a[.](?P<x>[a-z]+)[.]example[.]$", b"2"),
                   "three.example": (b"three", b"^(?P<x>[a-z]+)[.]", b"2")}


async def test_every_section_in_the_order_written(serve: Serve) -> None:
    srv = await serve(""".:PORT {
        bind 127.0.0.1
        template IN MX example {
            match ^mx-(?P<n>[0-9]+)[.]example[.]$
            answer "{{ .Name }} 60 IN MX 10 mail{{ .Group.n }}.example." "{{ .Name }} 60 IN MX 20 backup.example."
            authority "example. 120 IN NS ns0.example." "example. 120 IN NS ns1.example."
            additional "mail{{ .Group.n }}.example. 30 IN A 192.0.2.{{ .Group.n }}"
            additional "ns0.example IN A 203.0.113.8"
        }
    }""")
    r = await srv.query("mx-7.example", "MX")
    assert records(r) == ["mx-7.example. 60 IN MX 10 mail7.example.", "mx-7.example. 60 IN MX 20 backup.example."]
    assert records(r, "authority") == ["example. 120 IN NS ns0.example.", "example. 120 IN NS ns1.example."]
    # A record without a TTL gets miekg's 3600; a name without its dot is below the root.
    assert records(r, "additional") == ["mail7.example. 30 IN A 192.0.2.7", "ns0.example. 3600 IN A 203.0.113.8"]


async def test_srv_txt_and_ptr_answers(serve: Serve) -> None:
    srv = await serve(""".:PORT {
        bind 127.0.0.1
        template IN SRV example {
            match ^_(?P<s>[a-z]+)[.]_tcp[.](?P<h>[a-z0-9]+)[.]example[.]$
            answer "{{.Name}} 60 IN SRV 0 5 {{if eq .Group.s `https`}}443{{else}}80{{end}} {{.Group.h}}.example."
        }
        template IN TXT example {
            answer "{{ .Name }} 60 IN TXT \\"type {{ .Type }} class {{ .Class }} zone {{ .Zone }}\\""
        }
        template IN PTR in-addr.arpa {
            match ^(?P<d>[0-9]+)[.]2[.]0[.]192[.]in-addr[.]arpa[.]$
            answer "{{ .Name }} 60 IN PTR host-{{ .Group.d }}.example."
        }
    }""")
    assert records(await srv.query("_https._tcp.web1.example", "SRV")) == [
        "_https._tcp.web1.example. 60 IN SRV 0 5 443 web1.example."]
    assert records(await srv.query("_ldap._tcp.dc.example", "SRV")) == [
        "_ldap._tcp.dc.example. 60 IN SRV 0 5 80 dc.example."]
    assert records(await srv.query("anything.example", "TXT")) == [
        'anything.example. 60 IN TXT "type TXT class IN zone example."']
    assert records(await srv.query("9.2.0.192.in-addr.arpa", "PTR")) == [
        "9.2.0.192.in-addr.arpa. 60 IN PTR host-9.example."]


async def test_rcode_nxdomain_with_an_soa(serve: Serve) -> None:
    srv = await serve(""".:PORT {
        bind 127.0.0.1
        template ANY ANY invalid {
            rcode NXDOMAIN
            authority "invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)"
        }
    }""")
    for name, rdtype in (("foo.invalid", "A"), ("invalid", "SOA"), ("a.b.invalid", "TXT")):
        r = await srv.query(name, rdtype)
        assert (r.rcode(), aa(r), r.answer) == (dns.rcode.NXDOMAIN, True, [])
        assert records(r, "authority") == ["invalid. 60 IN SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60"]
    q = dns.message.make_query("x.invalid", "TXT", rdclass="CH")
    r = await dns.asyncquery.udp(q, "127.0.0.1", port=srv.port, timeout=3)
    assert records(r, "authority") == ["invalid. 60 CH SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60"]


async def test_rcode_servfail_answers_nothing(serve: Serve) -> None:
    srv = await serve(""".:PORT {
        bind 127.0.0.1
        template IN A example {
            answer "{{ .Name }} 60 IN A 192.0.2.1"
            rcode SERVFAIL
            ederror 3 "stale"
        }
    }""")
    r = await srv.query("x.example", "A", use_edns=0)
    assert (r.rcode(), aa(r), r.answer, r.options) == (dns.rcode.SERVFAIL, False, [], ())


async def test_ederror_for_clients_that_sent_edns(serve: Serve) -> None:
    srv = await serve(""".:PORT {
        bind 127.0.0.1
        template ANY ANY blocked.example {
            rcode REFUSED
            ederror 15 "Blocked by policy"
        }
        template IN A other.example {
            answer "{{ .Name }} 60 IN A 192.0.2.1"
            ederror 65000
        }
    }""")
    r = await srv.query("x.blocked.example", "A", use_edns=0, want_dnssec=True)
    assert r.rcode() == dns.rcode.REFUSED
    assert [(int(o.code), o.text) for o in r.options if isinstance(o, dns.edns.EDEOption)] == [
        (15, "Blocked by policy")]
    assert r.ednsflags & dns.flags.DO  # the client's DO echoed
    r = await srv.query("x.other.example", "A", use_edns=0)
    assert records(r) == ["x.other.example. 60 IN A 192.0.2.1"]
    assert [(int(o.code), o.text) for o in r.options if isinstance(o, dns.edns.EDEOption)] == [(65000, None)]
    assert not r.ednsflags & dns.flags.DO
    # A client without EDNS gets no OPT record at all (RFC 6891 section 7).
    r = await srv.query("x.blocked.example", "A")
    assert (r.rcode(), r.edns) == (dns.rcode.REFUSED, -1)


async def test_no_match_is_servfail_without_fallthrough(serve: Serve) -> None:
    srv = await serve(f".:PORT {{\n bind 127.0.0.1\n {IP_A % ''}\n}}")
    r = await srv.query("www.example", "A")
    assert (r.rcode(), aa(r), r.answer) == (dns.rcode.SERVFAIL, False, [])


async def test_fallthrough_to_the_next_plugin(serve: Serve, tmp_path: Path) -> None:
    srv = await serve(f"example:PORT {{\n bind 127.0.0.1\n {IP_A % 'fallthrough'}\n file {next_zone(tmp_path)}\n}}")
    assert records(await srv.query("ip-10-1-2-3.example", "A")) == ["ip-10-1-2-3.example. 60 IN A 10.1.2.3"]
    assert records(await srv.query("www.example", "A")) == ["www.example. 300 IN A 198.51.100.1"]


async def test_fallthrough_zones_limit_what_passes(serve: Serve, tmp_path: Path) -> None:
    srv = await serve(f"example:PORT {{\n bind 127.0.0.1\n {IP_A % 'fallthrough sub.example'}\n"
                      f" file {next_zone(tmp_path)}\n}}")
    assert records(await srv.query("www.sub.example", "A")) == ["www.sub.example. 300 IN A 198.51.100.1"]
    assert (await srv.query("www.example", "A")).rcode() == dns.rcode.SERVFAIL


async def test_other_types_classes_and_zones_go_to_the_next_plugin(serve: Serve, tmp_path: Path) -> None:
    srv = await serve(f""".:PORT {{
        bind 127.0.0.1
        {IP_A % ''}
        file {next_zone(tmp_path)} example example.net
    }}""")
    # AAAA is not the template's type; example.net is not its zone.
    assert records(await srv.query("ip-10-1-2-3.example", "AAAA")) == [
        "ip-10-1-2-3.example. 300 IN AAAA 2001:db8::1"]
    assert records(await srv.query("ip-10-1-2-3.example.net", "A")) == [
        "ip-10-1-2-3.example.net. 300 IN A 198.51.100.1"]
    # CH is not the template's class (nor file's, which as the last plugin refuses what is not its own).
    q = dns.message.make_query("ip-10-1-2-3.example", "A", rdclass="CH")
    r = await dns.asyncquery.udp(q, "127.0.0.1", port=srv.port, timeout=3)
    assert (r.rcode(), r.answer) == (dns.rcode.REFUSED, [])


async def test_a_question_of_type_any_is_taken_by_a_template_of_any_type(serve: Serve) -> None:
    srv = await serve(""".:PORT {
        bind 127.0.0.1
        template IN MX example {
            answer "{{ .Name }} 60 IN TXT \\"{{ .Type }} {{ .Question.Qtype }}\\""
        }
    }""")
    assert records(await srv.query("x.example", "ANY")) == ['x.example. 60 IN TXT "MX 255"']


async def test_templates_of_a_block_in_corefile_order(serve: Serve) -> None:
    srv = await serve(""".:PORT {
        bind 127.0.0.1
        template IN A example {
            match ^first[.]
            answer "{{ .Name }} 60 IN A 192.0.2.1"
            fallthrough
        }
        template IN A example {
            answer "{{ .Name }} 60 IN A 192.0.2.2"
        }
    }""")
    assert records(await srv.query("first.example", "A")) == ["first.example. 60 IN A 192.0.2.1"]
    assert records(await srv.query("second.example", "A")) == ["second.example. 60 IN A 192.0.2.2"]


async def test_a_failing_template_is_servfail_logged_once_and_counted(
        serve: Serve, interkube_caplog: pytest.LogCaptureFixture) -> None:
    srv = await serve(""".:PORT {
        bind 127.0.0.1
        template IN A example {
            match ^(?P<b>[a-z0-9]+)[.]example[.]$
            answer "{{ .Name }} 60 IN A 10.0.0.{{ parseInt .Group.b 10 8 }}"
        }
        template IN TXT example {
            answer "{{ .Name }} 60 IN BOGUS x"
        }
    }""")
    assert records(await srv.query("7.example", "A")) == ["7.example. 60 IN A 10.0.0.7"]
    for name in ("x.example", "y.example", "x.example"):
        r = await srv.query(name, "A")
        assert (r.rcode(), r.answer) == (dns.rcode.SERVFAIL, [])
    assert (await srv.query("z.example", "TXT")).rcode() == dns.rcode.SERVFAIL
    warnings = [r.getMessage() for r in interkube_caplog.records if r.name == "interkube.plugin.template"]
    assert len(warnings) == 2, warnings
    assert "answer for x.example. A: the template failed: error calling parseInt" in warnings[0]
    assert "'z.example. 60 IN BOGUS x' is not a resource record" in warnings[1]
    samples = {(f.name, s.labels.get("section"), s.labels["type"]): s.value
               for f in handler(srv).stats.collect() for s in f.samples}
    assert samples[("interkube_template_matches", None, "A")] >= 4
    assert samples[("interkube_template_template_failures", "answer", "A")] == 3
    assert samples[("interkube_template_rr_failures", "answer", "TXT")] == 1


async def test_answers_are_built_once_per_question_and_served_from_memory(serve: Serve) -> None:
    srv = await serve(f".:PORT {{\n bind 127.0.0.1\n {IP_A % ''}\n}}")
    h = handler(srv)
    first = await srv.query("ip-10-1-2-3.example", "A")
    assert len(h.templates) == 1

    def no_build(*_: object) -> None:
        raise AssertionError("the same question must not be built again")

    h.build = no_build  # type: ignore[method-assign]
    again = await srv.query("IP-10-1-2-3.example", "A")
    assert records(again)[0].split()[1:] == records(first)[0].split()[1:]
    assert again.answer[0].name.labels[0] == b"IP-10-1-2-3"
    # The queries answered from memory are counted as matches all the same.
    (matches,) = [s.value for f in h.stats.collect() for s in f.samples if f.name == "interkube_template_matches"]
    assert matches == 2


async def test_remote_answers_are_kept_per_client(serve: Serve) -> None:
    srv = await serve(""".:PORT {
        bind 127.0.0.1
        template IN TXT whoami.example {
            answer "{{ .Name }} 0 IN TXT \\"{{ .Remote }}\\""
        }
    }""")
    h = handler(srv)
    q = dns.message.make_query("whoami.example", "TXT")
    seen = []
    for source in ("127.0.0.1", "127.0.0.2", "127.0.0.1"):
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=srv.port, source=source, timeout=3)
        seen.append(r.answer[0][0].strings[0].decode())
    assert seen == ["127.0.0.1", "127.0.0.2", "127.0.0.1"]
    assert len(h.templates) == 2 and h.templates.capacity == CLIENT_ANSWERS


async def test_question_name_answers_are_kept_per_spelling(serve: Serve) -> None:
    srv = await serve(""".:PORT {
        bind 127.0.0.1
        template IN TXT example {
            answer "{{ .Name }} 0 IN TXT \\"{{ .Question.Name }}\\""
        }
    }""")
    for name in ("Mixed.Example", "mixed.example", "MIXED.EXAMPLE", "Mixed.Example"):
        assert (await srv.query(name, "TXT")).answer[0][0].strings == (f"{name}.".encode(),)
    assert len(handler(srv).templates) == 3


async def test_message_id_answers_are_built_per_query_off_the_fast_path(serve: Serve) -> None:
    srv = await serve(""".:PORT {
        bind 127.0.0.1
        template IN TXT example {
            answer "{{ .Name }} 0 IN TXT \\"{{ .Message.Id }}\\""
        }
    }""")
    for qid in (1234, 4321):
        q = dns.message.make_query("id.example", "TXT")
        q.id = qid
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=srv.port, timeout=3)
        assert r.answer[0][0].strings == (str(qid).encode(),)
    h = handler(srv)
    assert len(h.templates) == 1  # what is kept is that the question matched, not an answer
    from interkube.dns.wire import parse_query
    from interkube.plugin.request import Request

    wire = dns.message.make_query("id.example", "TXT").to_wire()
    query = parse_query(wire)
    assert query is not None
    assert not INLINE_BUILDS.serving
    with pytest.raises(Deferred):
        h.template(Request(wire, query, ("127.0.0.1", 5), "udp"))
    assert h.fast(Request(wire, query, ("127.0.0.1", 5), "udp")) is None  # SLOW


def test_answers_are_bounded_as_made_per_query(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each answer is made from the asked name: as many as a client asks, so the table keeps
    them within its per-query bound (interkube.plugin.answers.PER_QUERY_CAPACITY)."""
    templating = chain_handler(".:53 {\n " + IP_A % "" + "\n}\n", TemplatingHandler)
    monkeypatch.setattr(INLINE_BUILDS, "serving", True)  # (every miss built, as the slow path does)
    monkeypatch.setattr(templating.templates, "per_query_capacity", 10)
    for i in range(50):
        response = templating.fast(request(dns.message.make_query(f"ip-10-0-0-{i}.example.", "A").to_wire()))
        assert response is not None and dns.message.from_wire(response).answer
    assert len(templating.templates) == 10
