"""The wire fast path: query parsing into keys, template patching, error and truncated responses."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset

from interkube.dns import wire
from interkube.dns.message import make_response, render
from interkube.dns.reader import Malformed


def q(name: str = "www.Example.org.", rdtype: str = "A", **kw) -> dns.message.Message:  # type: ignore[no-untyped-def]
    return dns.message.make_query(name, rdtype, **kw)


def test_plain_query_is_read() -> None:
    m = q(use_edns=False)
    parsed = wire.parse_query(m.to_wire())
    assert parsed is not None
    assert parsed.qtype == 1 and parsed.qclass == 1 and not parsed.edns
    assert parsed.lname == b"\x03www\x07example\x03org\x00"
    assert parsed.udp_limit == 512


def test_edns_query_is_read_with_payload_and_do() -> None:
    m = q(use_edns=0, payload=4096, want_dnssec=True)
    parsed = wire.parse_query(m.to_wire())
    assert parsed is not None and parsed.edns and parsed.do and parsed.payload == 4096
    assert parsed.udp_limit == 4096


def test_key_ignores_case_but_not_type_edns_or_rd() -> None:
    def key(m: dns.message.Message) -> bytes:
        parsed = wire.parse_query(m.to_wire())
        assert parsed is not None
        return parsed.key

    base = key(q("a.example.", "A"))
    assert key(q("A.EXAMPLE.", "A")) == base
    assert key(q("a.example.", "AAAA")) != base
    assert key(q("a.example.", "A", use_edns=0)) != base
    no_rd = q("a.example.", "A")
    no_rd.flags &= ~dns.flags.RD
    assert key(no_rd) != base


def test_qtype_bytes_are_not_lowercased() -> None:
    # QTYPE 65 (HTTPS) is the byte "A": lower-casing it would turn it into 97.
    parsed = wire.parse_query(q("x.example.", 65).to_wire())
    assert parsed is not None and parsed.qtype == 65
    assert parsed.key[-5:-1] == b"\x00\x41\x00\x01"


def test_what_goes_to_the_slow_path() -> None:
    assert wire.parse_query(b"\x00" * 11) is None
    resp = make_response(q())
    assert wire.parse_query(resp.to_wire()) is None  # QR=1
    notify = q()
    notify.set_opcode(dns.opcode.NOTIFY)
    assert wire.parse_query(notify.to_wire()) is None
    edns1 = q(use_edns=1)
    assert wire.parse_query(edns1.to_wire()) is None
    assert wire.parse_query(q().to_wire() + b"junk") is None
    # A compression pointer in the question.
    w = bytearray(q("a.example.").to_wire())
    w[12:12] = b""
    bad = bytes(w[:12]) + b"\xc0\x0c" + bytes(w[-4:])
    assert wire.parse_query(bad) is None


def test_template_serves_other_case_and_id() -> None:
    first = q("www.example.org.", "A")
    parsed = wire.parse_query(first.to_wire())
    assert parsed is not None
    resp = make_response(first)
    resp.answer.append(dns.rrset.from_text(first.question[0].name, 30, "IN", "A", "192.0.2.1"))
    tpl = wire.template_for(render(resp), parsed)

    second = q("WWW.EXAMPLE.org.", "A")
    second.id = 4242
    p2 = wire.parse_query(second.to_wire())
    assert p2 is not None and p2.key == parsed.key
    out = dns.message.from_wire(tpl.render(p2))
    assert out.id == 4242
    assert out.question[0].name.to_text() == "WWW.EXAMPLE.org."
    # The answer owner is a pointer to the question: it shows the client's case too.
    assert out.answer[0].name.to_text() == "WWW.EXAMPLE.org."
    assert out.answer[0][0].address == "192.0.2.1"


def test_a_template_keeps_each_querys_case_and_id_when_they_alternate() -> None:
    """The template keeps the last question's response after the ID (render()): queries whose
    letters differ, taking turns, and repeats of each, still get their own question back."""
    cases = ["www.example.org.", "WWW.example.ORG.", "wWw.ExAmPlE.org."]
    first = q(cases[0], "A")
    parsed = wire.parse_query(first.to_wire())
    assert parsed is not None
    resp = make_response(first)
    resp.answer.append(dns.rrset.from_text(first.question[0].name, 30, "IN", "A", "192.0.2.1"))
    tpl = wire.template_for(render(resp), parsed)
    for n in range(12):
        name = cases[n % 3 if n < 6 else (n // 2) % 3]  # alternating, then each twice in a row
        asked = q(name, "A")
        asked.id = 1000 + n
        query = wire.parse_query(asked.to_wire())
        assert query is not None
        out = dns.message.from_wire(tpl.render(query))
        assert out.id == 1000 + n
        assert out.question[0].name.to_text() == out.answer[0].name.to_text() == name


def test_error_response_echoes_id_question_rd_and_edns() -> None:
    m = q(use_edns=0, want_dnssec=True)
    m.id = 777
    parsed = wire.parse_query(m.to_wire())
    out = dns.message.from_wire(wire.error_response(m.to_wire(), wire.RCODE_REFUSED, parsed))
    assert out.id == 777 and out.rcode() == dns.rcode.REFUSED
    assert out.flags & dns.flags.RD and out.flags & dns.flags.QR
    assert out.edns == 0 and out.payload == wire.ADVERTISED_PAYLOAD and out.ednsflags & dns.flags.DO
    assert out.question == m.question


def test_error_response_without_question() -> None:
    raw = bytes([0x12, 0x34, 0x01, 0x00]) + b"\x00\x05" + b"\x00" * 6 + b"\xff"
    out = wire.error_response(raw, wire.RCODE_FORMERR)
    assert out[:2] == b"\x12\x34" and out[3] & 0x0F == wire.RCODE_FORMERR and len(out) == 12


def test_truncated_keeps_question_and_sets_tc() -> None:
    m = q(use_edns=0, payload=512)
    parsed = wire.parse_query(m.to_wire())
    assert parsed is not None
    resp = make_response(m)
    resp.answer.append(dns.rrset.from_text_list(m.question[0].name, 30, "IN", "TXT",
                                                ['"' + "x" * 250 + f'{i}"' for i in range(5)]))
    out = dns.message.from_wire(wire.truncated(render(resp), parsed))
    # Records of 264 bytes in 512: one fits after header, question and OPT.
    assert out.flags & dns.flags.TC and out.question == m.question and out.edns == 0
    assert len(out.answer) == 1 and len(out.answer[0]) == 1


def test_label_offsets() -> None:
    lname = b"\x01a\x02bc\x00"
    assert [lname[o:] for o in wire.label_offsets(lname)] == [lname, b"\x02bc\x00", b"\x00"]


def test_truncation_keeps_the_records_that_fit_as_coredns_does() -> None:
    m = q("big.example.", "A", use_edns=False)
    parsed = wire.parse_query(m.to_wire())
    assert parsed is not None
    resp = make_response(m)
    resp.answer.append(dns.rrset.from_text_list(m.question[0].name, 30, "IN", "A",
                                                [f"192.0.2.{i}" for i in range(1, 101)]))
    full = render(resp)
    assert len(full) > 512
    out = wire.truncated(full, parsed)
    assert len(out) <= 512
    msg = dns.message.from_wire(out)
    assert msg.flags & dns.flags.TC
    kept = {rd.address for rd in msg.answer[0]}
    # Each A record here is 16 bytes (2 pointer + 10 + 4): as many as fit after header+question.
    assert kept < {f"192.0.2.{i}" for i in range(1, 101)}
    assert len(kept) == (512 - len(m.to_wire())) // 16


def test_truncation_keeps_the_responses_own_opt_record() -> None:
    m = q("big.example.", "TXT", use_edns=0, payload=512)
    parsed = wire.parse_query(m.to_wire())
    assert parsed is not None
    resp = make_response(m)
    resp.use_edns(0, 0, 1232, options=[dns.edns.EDEOption(dns.edns.EDECode.STALE_ANSWER)])
    resp.answer.append(dns.rrset.from_text_list(m.question[0].name, 30, "IN", "TXT",
                                                ['"' + "x" * 200 + f'{i}"' for i in range(5)]))
    out = dns.message.from_wire(wire.truncated(render(resp), parsed))
    assert out.flags & dns.flags.TC and out.edns == 0
    assert [o.code for o in out.options] == [dns.edns.EDECode.STALE_ANSWER]
    # 29 bytes of header and question, 214 per record, 17 for the OPT with its EDE: two fit.
    assert len(out.answer[0]) == 2


def test_an_unwalkable_response_is_truncated_to_header_question_and_opt() -> None:
    m = q("big.example.", "A", use_edns=0, payload=512)
    parsed = wire.parse_query(m.to_wire())
    assert parsed is not None
    resp = make_response(m)
    resp.answer.append(dns.rrset.from_text_list(m.question[0].name, 30, "IN", "A",
                                                [f"192.0.2.{i}" for i in range(1, 101)]))
    full = bytearray(render(resp))
    # The second answer's owner (a pointer to the question) turned into a pointer to itself.
    second = parsed.question_end + 16
    assert full[second:second + 2] == b"\xc0\x0c"
    full[second:second + 2] = (0xC000 | second).to_bytes(2, "big")
    out = dns.message.from_wire(wire.truncated(bytes(full), parsed))
    assert out.flags & dns.flags.TC and out.question == m.question and not out.answer and out.edns == 0


def test_answer_records_refuse_with_malformed() -> None:
    m = q("web.example.", "A", use_edns=False)
    resp = make_response(m)
    resp.answer.append(dns.rrset.from_text_list(m.question[0].name, 30, "IN", "A", ["192.0.2.1", "192.0.2.2"]))
    full = render(resp)
    qe = len(m.to_wire())
    assert [(o, t, n) for o, t, _, n in wire.answer_records(full)] == [(qe, 1, 4), (qe + 16, 1, 4)]
    for bad in (full[:-1], full[:qe] + b"\x80" + full[qe + 1:], full[:qe] + b"\xc0\xff" + full[qe + 2:]):
        try:
            wire.answer_records(bad)
        except Malformed:
            continue
        raise AssertionError(f"accepted {bad.hex()}")


def test_formerr_is_written_as_coredns_writes_it() -> None:
    m = q("Web.Example.", "A", use_edns=0)
    m.flags |= dns.flags.CD
    out = dns.message.from_wire(wire.formerr(m.to_wire()))
    assert out.id == m.id and out.rcode() == dns.rcode.FORMERR and out.flags & dns.flags.QR
    assert out.flags & dns.flags.RD and out.flags & dns.flags.CD and not out.flags & dns.flags.AA
    assert out.question == m.question and str(out.question[0].name) == "Web.Example."  # case kept
    assert out.edns < 0 and not out.answer and not out.additional
    # A compressed question name (a pointer to offset 4, whose byte 0 makes the root) is written
    # out whole; an unreadable one leaves the header only.
    head = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    compressed = head + b"\xc0\x04\x00\x01\x00\x01"
    assert dns.message.from_wire(compressed).question[0].name.to_text() == "."
    assert wire.formerr(compressed) == b"\x12\x34\x81\x01" + head[4:] + b"\x00\x00\x01\x00\x01"
    garbage = head + b"\x3f\x00"
    assert wire.formerr(garbage) == b"\x12\x34\x81\x01" + b"\x00" * 8
