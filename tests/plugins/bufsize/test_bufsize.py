"""bufsize: the size a query advertises is capped for the plugins after it (and the upstream),
and answers over UDP are cut to it; the README's examples."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import pytest

from interkube.dns.wire import parse_query
from interkube.errors import ConfigError
from interkube.plugin.request import Request
from interkube.plugins.bufsize.handler import BufsizeHandler
from interkube.plugins.bufsize.parse import BufsizeConfig, parse
from testkit.corefile import directive
from testkit.fakeupstream import FakeUpstream
from testkit.readme import on_port, readme_examples
from testkit.servers import aquery, free_port, in_process

Running = Any  # tests/plugins/conftest.py's Running
Serve = Callable[[str], Awaitable[Running]]

#: 40 TXT strings of 40 bytes: an answer of about 2 KB.
BIG_TXT = [f'"{i:02d}' + "x" * 37 + '"' for i in range(40)]
ZONE = "$ORIGIN example.org.\n@ 3600 IN SOA ns. admin. 1 7200 3600 1209600 3600\n" + "".join(
    f"big 3600 IN TXT {t}\n" for t in BIG_TXT)


def request(payload: int | None) -> Request:
    q = dns.message.make_query("a.example.", "A", use_edns=0 if payload else False, payload=payload or 512)
    wire = q.to_wire()
    parsed = parse_query(wire)
    assert parsed is not None
    return Request(wire, parsed, ("127.0.0.1", 5), "udp")


def test_parse() -> None:
    assert parse(directive("bufsize")) == BufsizeConfig(1232)
    assert parse(directive("bufsize 4096")) == BufsizeConfig(4096)
    for body, words in (("bufsize 511", "below the minimum of 512"), ("bufsize 4097", "above the maximum of 4096"),
                        ("bufsize big", "invalid buffer size 'big'"),
                        ("bufsize 1 2", "expected 0 to 1 argument, got 2")):
        with pytest.raises(ConfigError, match=f"Corefile:2: .*{words}"):
            parse(directive(body))


def test_only_larger_sizes_are_lowered() -> None:
    handler = BufsizeHandler(1232)
    for payload, want in ((4096, 1232), (1232, 1232), (800, 800), (None, None)):
        req = request(payload)
        before = req.wire
        handler.clamp(req)
        msg = dns.message.from_wire(req.wire)
        assert (msg.payload if msg.edns >= 0 else None) == want
        assert req.query.payload == (want or 0)
        assert req.wire[:2] == before[:2] and (req.wire is before) == (payload != 4096)


async def test_the_upstream_sees_the_cap(serve: Serve, example_upstream: FakeUpstream) -> None:
    running = await serve(f".:PORT {{\n bind 127.0.0.1\n bufsize 1100\n forward . {example_upstream.address}\n}}\n")
    await running.query("a.example.", "A", use_edns=0, payload=4096)
    assert example_upstream.queries[-1][1].payload == 1100
    await running.query("a.example.", "A", use_edns=0, payload=900)
    assert example_upstream.queries[-1][1].payload == 900


@pytest.mark.parametrize("with_bufsize", [True, False])
async def test_udp_answers_are_cut_to_the_cap(with_bufsize: bool, serve: Serve, tmp_path: Path) -> None:
    (tmp_path / "db").write_text(ZONE)
    line = " bufsize 1232\n" if with_bufsize else ""
    running = await serve(f"example.org:PORT {{\n bind 127.0.0.1\n{line} file {tmp_path / 'db'}\n}}\n")
    r = await running.query("big.example.org", "TXT", use_edns=0, payload=4096)
    assert bool(r.flags & dns.flags.TC) == with_bufsize
    assert (len(r.to_wire()) <= 1232) == with_bufsize
    r = await running.query("big.example.org", "TXT", use_edns=0, payload=4096, tcp=True)
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 40  # TCP: the whole answer


@pytest.mark.parametrize("index", [0, 1])
async def test_readme_examples(index: int, example_upstream: FakeUpstream, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    examples = readme_examples("bufsize")
    assert len(examples) == 2
    monkeypatch.chdir(tmp_path)
    (tmp_path / "db.example.org").write_text(ZONE)
    port = free_port()
    async with in_process(on_port(examples[index], port).replace("127.0.0.1:5300", example_upstream.address)):
        if index == 0:
            await aquery("a.example.", "A", port, use_edns=0, payload=4096)
            assert example_upstream.queries[-1][1].payload == 1100
        else:
            r = await aquery("big.example.org", "TXT", port, use_edns=0, payload=4096)
            assert r.flags & dns.flags.TC and len(r.to_wire()) <= 1220
