"""reload: INTERVAL and JITTER as CoreDNS reads them, and a running server that notices a changed
Corefile, keeps its configuration when the new one is broken (tried once, counted) and takes the
next valid one. How a reload swaps configurations is in tests/server/test_reload.py."""

from __future__ import annotations

from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from interkube.errors import ConfigError
from interkube.plugins.reload.parse import ReloadConfig, parse
from testkit.corefile import directive
from testkit.fakeupstream import FakeUpstream
from testkit.servers import free_port, in_process
from testkit.waiting import until


def parsed(line: str) -> ReloadConfig:
    return parse(directive(line))


@pytest.mark.parametrize(("line", "interval", "jitter"), [
    ("reload", 30.0, 15.0),
    ("reload 10s", 10.0, 5.0),       # the default jitter, cut to half the interval
    ("reload 1m 10s", 60.0, 10.0),
    ("reload 2s 1s", 2.0, 1.0),
])
def test_parse(line: str, interval: float, jitter: float) -> None:
    assert parsed(line) == ReloadConfig(interval, jitter)


@pytest.mark.parametrize(("line", "message"), [
    ("reload 1s", "below the minimum of 2s"),
    ("reload 5s 500ms", "below the minimum of 1s"),
    ("reload 5s 1s 1s", "0 to 2 arguments"),
    ("reload {\n every 5s\n }", "takes no block"),
    ("reload often", "invalid duration"),
])
def test_parse_errors(line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parsed(line)


def corefile(port: int, upstream: str, extra: str = "") -> str:
    return f"example.:{port} {{\n    bind 127.0.0.1\n    errors\n{extra}    forward . {upstream}\n}}\n"


async def test_reload_plugin_notices_the_change_and_counts_failures(
        two_upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    a, b = two_upstreams
    port = free_port()
    body = "    reload 2s 1s\n"
    async with in_process(corefile(port, a.address, extra=body), name="Corefile") as server:
        core = Path(server.source.path)  # type: ignore[attr-defined]
        metrics = server.services.metrics  # type: ignore[attr-defined]

        async def answer() -> str:
            r = await dns.asyncquery.udp(dns.message.make_query("a.example.", "A"), "127.0.0.1", port=port, timeout=2)
            return r.answer[0][0].address if r.answer else dns.rcode.to_text(r.rcode())

        async def answer_is(expected: str) -> bool:
            return await answer() == expected

        assert await answer() == "192.0.2.1"
        core.write_text(corefile(port, a.address, extra=body + "    nosuch\n"))
        await until(lambda: metrics.reload_failed._value.get() == 1, "the broken Corefile counted as a failed reload")
        assert await answer() == "192.0.2.1"
        core.write_text(corefile(port, b.address, extra=body))
        await until(lambda: answer_is("192.0.2.2"), "the answer of the next valid Corefile")
        # The broken version was tried once, not at every interval.
        assert metrics.reload_failed._value.get() == 1
        assert metrics.reloads._value.get() == 1
