"""header: flags set or cleared on the query (what later plugins and the upstream see) and on
the response (whoever answered); parse errors; the README's examples."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import dns.flags
import dns.message
import pytest

from interkube.dns.wire import FLAG_AA, FLAG_QR, FLAG_RA, FLAG_RD
from interkube.errors import ConfigError
from interkube.plugins.header.handler import edit_flags
from interkube.plugins.header.parse import FlagEdit, HeaderConfig, parse
from testkit.corefile import directive
from testkit.fakeupstream import FakeUpstream
from testkit.readme import on_port, readme_examples
from testkit.servers import aquery, free_port, in_process

Running = Any  # tests/plugins/conftest.py's Running
Serve = Callable[[str], Awaitable[Running]]
#: What the `example_upstream` fixture (tests/plugins/conftest.py) answers for a.example. A.
EXAMPLE_A = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]


def flags(msg: dns.message.Message) -> set[str]:
    return {name for name, bit in (("aa", dns.flags.AA), ("ra", dns.flags.RA), ("rd", dns.flags.RD))
            if msg.flags & bit}


def test_rules_fold_in_order_the_last_one_wins() -> None:
    cfg = parse(directive("header {\n response set ra aa\n response clear aa\n query SET rd\n}"))
    assert cfg == HeaderConfig(query=FlagEdit(set=FLAG_RD), response=FlagEdit(set=FLAG_RA, clear=FLAG_AA))
    assert cfg.response.apply(FLAG_QR | FLAG_AA) == FLAG_QR | FLAG_RA


def test_edit_flags_touches_only_the_flags() -> None:
    wire = dns.message.make_query("a.example.", "A").to_wire()
    edited = edit_flags(wire, FlagEdit(clear=FLAG_RD))
    assert edited[:2] == wire[:2] and edited[4:] == wire[4:] and not (edited[2] << 8 | edited[3]) & FLAG_RD
    assert edit_flags(wire, FlagEdit(set=FLAG_RD)) is wire  # nothing to change


@pytest.mark.parametrize("body, line, words", [
    ("header", 2, "header: needs a block with at least one rule"),
    ("header x {\n response set ra\n}", 2, "header: expected exactly 0 arguments, got 1"),
    ("header {\n answer set ra\n}", 3, "invalid selector 'answer' (expected query or response)"),
    ("header {\n response\n}", 3, "needs an action (set or clear)"),
    ("header {\n response toggle ra\n}", 3, "unknown flag action 'toggle'"),
    ("header {\n response set\n}", 3, "`response set` needs at least one flag"),
    ("header {\n response set cd\n}", 3, "unknown or unsupported flag 'cd'"),
])
def test_parse_errors(body: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(directive(body))
    assert str(info.value).startswith(f"Corefile:{line}: ") and words in str(info.value), str(info.value)


async def test_query_rules_reach_the_upstream(serve: Serve, example_upstream: FakeUpstream) -> None:
    running = await serve(f".:PORT {{\n bind 127.0.0.1\n header {{\n  query clear rd\n }}\n"
                          f" forward . {example_upstream.address}\n}}\n")
    r = await running.query("a.example.", "A")  # RD set by the client
    assert not example_upstream.queries[-1][1].flags & dns.flags.RD
    assert sorted(rd.address for rd in r.answer[0]) == EXAMPLE_A


async def test_query_rules_shape_answers_from_memory(serve: Serve) -> None:
    running = await serve(".:PORT {\n bind 127.0.0.1\n header {\n  query clear rd\n }\n"
                          " hosts {\n  192.0.2.5 h.example\n }\n}\n")
    for _ in range(2):  # built, then from the template kept for the edited query
        r = await running.query("h.example.", "A")
        assert "rd" not in flags(r) and [rd.address for rd in r.answer[0]] == ["192.0.2.5"]


async def test_response_rules_apply_to_every_answer(serve: Serve) -> None:
    running = await serve(".:PORT {\n bind 127.0.0.1\n header {\n  response set ra\n  response clear aa rd\n }\n"
                          " hosts {\n  192.0.2.5 h.example\n }\n}\n")
    for name in ("h.example.", "H.EXAMPLE.", "other.example."):  # an answer, from memory, a SERVFAIL
        r = await running.query(name, "A")
        assert flags(r) == {"ra"}, name


@pytest.mark.parametrize("index", [0, 1, 2])
async def test_readme_examples(index: int, example_upstream: FakeUpstream) -> None:
    examples = readme_examples("header")
    assert len(examples) == 3
    port = free_port()
    async with in_process(on_port(examples[index], port).replace("127.0.0.1:5300", example_upstream.address)):
        r = await aquery("a.example.", "A", port, flags=0)  # the client asks without RD
        if index == 0:
            assert flags(r) == {"aa", "ra"}  # whoami's AA, and RA set
        elif index == 1:
            r = await aquery("a.example.", "A", port)  # with RD, which is cleared
            assert flags(r) == {"aa", "ra"}
        else:
            assert example_upstream.queries[-1][1].flags & dns.flags.RD
            assert "rd" in flags(r) and sorted(rd.address for rd in r.answer[0]) == EXAMPLE_A
