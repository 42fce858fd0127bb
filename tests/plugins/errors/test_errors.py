"""errors: the line it writes for a failure, `stacktrace`, and `consolidate` (counts per period
from the first error, the level, show_first, the first matching rule, the report at shutdown),
as CoreDNS's README describes them. test_errors_vs_coredns.py compares the lines with CoreDNS's.

The handler is driven directly here, with a next handler that fails as an upstream does, so
that a test decides exactly which errors fall into a period.
"""

from __future__ import annotations

import logging

import dns.message
import dns.name
import dns.rcode
import pytest

from interkube.dns.wire import parse_query
from interkube.errors import ConfigError, UpstreamTimeout
from interkube.plugin.handler import Handler
from interkube.plugin.request import Request
from interkube.plugins.errors import handler as errors_handler
from interkube.plugins.errors.handler import ErrorsHandler, go_duration
from interkube.plugins.errors.parse import ErrorsConfig, parse
from testkit.corefile import directive
from testkit.waiting import until

LOGGER = "interkube.plugin.errors"


def config(block: str = "") -> ErrorsConfig:
    body = f" {{\n{block}\n }}" if block else ""
    return parse(directive(f"errors{body}"))


def test_parse_every_option() -> None:
    cfg = config('  stacktrace\n  consolidate 5m ".* timed out$" warning\n  consolidate 30s "^refused" show_first\n'
                 '  consolidate 1.5s x info show_first')
    assert cfg.stacktrace
    assert [(c.period_ns, c.pattern.pattern, c.level, c.show_first) for c in cfg.consolidate] == [
        (300 * 10**9, ".* timed out$", "warning", False), (30 * 10**9, "^refused", "error", True),
        (1_500_000_000, "x", "info", True)]
    assert config() == ErrorsConfig()
    assert parse(directive("errors stdout")) == ErrorsConfig()


@pytest.mark.parametrize(("text", "message"), [
    ("errors errors.log", "invalid log file 'errors.log'"),
    ("errors {\n consolidate 5m\n }", "2 to 4 arguments"),
    ("errors {\n consolidate 5m [ warning\n }", "invalid regular expression"),
    (f"errors {{\n consolidate 5m {'a' * 10001}\n }}", "too long: 10001 > 10000"),
    ("errors {\n consolidate 5m x loud\n }", "unknown option 'loud'"),
    ("errors {\n consolidate 5m x warning error\n }", "more than one log level"),
    ("errors {\n consolidate 5m x show_first warning\n }", "must come before show_first"),
    ("errors {\n consolidate soon x\n }", "invalid duration"),
    ("errors {\n verbose\n }", "unknown option"),
])
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(directive(text))


@pytest.mark.parametrize(("ns", "text"), [
    (0, "0s"), (999, "999ns"), (1_500, "1.5µs"), (500_000_000, "500ms"), (1_500_000_000, "1.5s"),
    (90 * 10**9, "1m30s"), (300 * 10**9, "5m0s"), (3600 * 10**9, "1h0m0s"), (3723_500_000_000, "1h2m3.5s"),
])
def test_periods_are_written_as_go_writes_durations(ns: int, text: str) -> None:
    assert go_duration(ns) == text


class Failing(Handler):
    """What follows errors in the chain: fails every query with the message it is given."""

    plugin = "forward"

    def __init__(self) -> None:
        self.error: Exception = UpstreamTimeout("192.0.2.53:53", "no answer over UDP in time")

    async def serve(self, req: Request) -> bytes:
        raise self.error


def chain(cfg: ErrorsConfig) -> tuple[ErrorsHandler, Failing]:
    handler, failing = ErrorsHandler(cfg), Failing()
    handler.next = failing
    return handler, failing


def request(name: str = "www.example.org", rdtype: str = "A") -> Request:
    wire = dns.message.make_query(name, rdtype).to_wire()
    q = parse_query(wire)
    assert q is not None
    return Request(wire, q, ("127.0.0.1", 40000), "udp")


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in records(caplog)]


async def test_a_failure_is_answered_servfail_and_logged_as_coredns_writes_it(
        interkube_caplog: pytest.LogCaptureFixture) -> None:
    handler, _ = chain(config())
    resp = dns.message.from_wire(await handler.serve(request("WWW.Example.ORG", "AAAA")))
    assert resp.rcode() == dns.rcode.SERVFAIL
    assert lines(interkube_caplog) == [
        ("ERROR", "2 www.example.org. AAAA: 192.0.2.53:53: no answer over UDP in time")]
    assert records(interkube_caplog)[0].exc_info is None


def traceback_of(record: logging.LogRecord) -> str:
    assert record.exc_info is not None
    return logging.Formatter().formatException(record.exc_info)


async def test_stacktrace_logs_the_traceback(interkube_caplog: pytest.LogCaptureFixture) -> None:
    handler, _ = chain(config("  stacktrace"))
    await handler.serve(request())
    [record] = records(interkube_caplog)
    assert "in serve\n    raise self.error" in traceback_of(record)


async def test_a_bug_below_is_logged_with_its_traceback_even_without_stacktrace(
        interkube_caplog: pytest.LogCaptureFixture) -> None:
    handler, failing = chain(config())
    failing.error = KeyError("cluster")
    resp = dns.message.from_wire(await handler.serve(request()))
    assert resp.rcode() == dns.rcode.SERVFAIL
    [record] = records(interkube_caplog)
    assert record.getMessage() == "2 www.example.org. A: 'cluster'"
    assert "KeyError: 'cluster'" in traceback_of(record)


async def test_consolidate_counts_per_period_at_its_level(interkube_caplog: pytest.LogCaptureFixture) -> None:
    handler, failing = chain(config('  consolidate 50ms "in time$" warning'))
    for _ in range(3):  # no await gives the loop a turn between them: one period holds all three
        await handler.serve(request())
    failing.error = UpstreamTimeout("192.0.2.53:53", "refused")
    await handler.serve(request())  # does not match: logged on its own, at once
    assert lines(interkube_caplog) == [("ERROR", "2 www.example.org. A: 192.0.2.53:53: refused")]
    summary = ("WARNING", "3 errors like 'in time$' occurred in last 50ms")
    await until(lambda: summary in lines(interkube_caplog), "the period's count is logged")
    # The next matching error starts a new period, with its own count.
    failing.error = UpstreamTimeout("192.0.2.53:53", "no answer over UDP in time")
    await handler.serve(request())
    again = ("WARNING", "1 errors like 'in time$' occurred in last 50ms")
    await until(lambda: again in lines(interkube_caplog), "the second period's count is logged")
    assert lines(interkube_caplog)[1:] == [summary, again]


async def test_the_first_matching_rule_counts_an_error(interkube_caplog: pytest.LogCaptureFixture) -> None:
    handler, _ = chain(config('  consolidate 1h "no answer"\n  consolidate 1h "."'))
    for _ in range(2):
        await handler.serve(request())
    assert [c.count for c in handler.consolidations] == [2, 0]
    await handler.stop()
    assert lines(interkube_caplog) == [("ERROR", "2 errors like 'no answer' occurred in last 1h0m0s")]


async def test_show_first_logs_the_first_error_then_the_count(interkube_caplog: pytest.LogCaptureFixture) -> None:
    handler, _ = chain(config('  consolidate 50ms "in time$" info show_first'))
    for _ in range(3):
        await handler.serve(request())
    first = ("INFO", "2 www.example.org. A: 192.0.2.53:53: no answer over UDP in time")
    assert lines(interkube_caplog) == [first]
    summary = ("INFO", "3 errors like 'in time$' occurred in last 50ms")
    await until(lambda: summary in lines(interkube_caplog), "the period's count is logged")
    # A period with one error only: that error was shown, and no count follows it.
    await handler.serve(request())
    await until(lambda: handler.consolidations[0].count == 0, "the second period ends")
    assert lines(interkube_caplog) == [first, summary, first]


async def test_stopping_reports_the_periods_under_way(interkube_caplog: pytest.LogCaptureFixture) -> None:
    """A reload or the end of the process does not lose what was counted (CoreDNS reports it on
    shutdown); errors after that are logged one by one, at the rule's level, as CoreDNS's are."""
    handler, _ = chain(config('  consolidate 1h "in time$" warning'))
    for _ in range(2):
        await handler.serve(request())
    assert lines(interkube_caplog) == []
    await handler.stop()
    await handler.serve(request())
    assert lines(interkube_caplog) == [
        ("WARNING", "2 errors like 'in time$' occurred in last 1h0m0s"),
        ("WARNING", "2 www.example.org. A: 192.0.2.53:53: no answer over UDP in time")]


# -- without `consolidate`: consolidated by message (issue 19; docs/divergences.md D19) ----------

TIMEOUT_TEXT = "192.0.2.53:53: no answer over UDP in time"


def test_parse_consolidate_off() -> None:
    assert config().by_message
    assert not config('  consolidate 5m "x"').by_message  # a CoreDNS rule: no default beside it
    off = config("  consolidate off")
    assert not off.by_message and off.consolidate == ()
    with pytest.raises(ConfigError, match="also has consolidate rules"):
        config('  consolidate off\n  consolidate 5m "x"')


async def test_without_consolidate_each_message_is_shown_once_then_counted_per_period(
        interkube_caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(errors_handler, "DEFAULT_PERIOD_NS", 50_000_000)
    handler, failing = chain(config())
    for _ in range(500):
        await handler.serve(request())
    first = ("ERROR", f"2 www.example.org. A: {TIMEOUT_TEXT}")
    assert lines(interkube_caplog) == [first]
    failing.error = UpstreamTimeout("192.0.2.54:53", "refused")
    await handler.serve(request("other.example.org"))  # another message: shown at once too
    other = ("ERROR", "2 other.example.org. A: 192.0.2.54:53: refused")
    assert lines(interkube_caplog) == [first, other]
    count = ("ERROR", f"500 errors like '{TIMEOUT_TEXT}' occurred in last 50ms")
    await until(lambda: count in lines(interkube_caplog), "the period's count is logged")
    await until(lambda: not handler.by_message.periods, "both periods end")  # type: ignore[union-attr]
    # 500 failures, three lines: the first, the count, and the other message's (a period of one
    # error writes no count). The next failure starts a new period and is shown again.
    assert sorted(lines(interkube_caplog)) == sorted([first, other, count])
    failing.error = UpstreamTimeout("192.0.2.53:53", "no answer over UDP in time")
    await handler.serve(request())
    assert lines(interkube_caplog)[-1] == first


async def test_messages_beyond_the_bound_share_one_count(
        interkube_caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(errors_handler, "MAX_MESSAGES", 2)
    handler, failing = chain(config())
    for n in range(4):
        failing.error = UpstreamTimeout(f"192.0.2.{n}:53", "refused")
        for _ in range(3):
            await handler.serve(request())
    assert len(handler.by_message.periods) == 3  # type: ignore[union-attr]  # two messages and '.*'
    await handler.stop()
    assert lines(interkube_caplog) == [
        ("ERROR", "2 www.example.org. A: 192.0.2.0:53: refused"),
        ("ERROR", "2 www.example.org. A: 192.0.2.1:53: refused"),
        ("ERROR", "2 www.example.org. A: 192.0.2.2:53: refused"),  # the first of the '.*' period
        ("ERROR", "3 errors like '192.0.2.0:53: refused' occurred in last 5s"),
        ("ERROR", "3 errors like '192.0.2.1:53: refused' occurred in last 5s"),
        ("ERROR", "6 errors like '.*' occurred in last 5s")]


async def test_consolidate_off_logs_every_error(interkube_caplog: pytest.LogCaptureFixture) -> None:
    handler, _ = chain(config("  consolidate off"))
    for _ in range(3):
        await handler.serve(request())
    assert lines(interkube_caplog) == [("ERROR", f"2 www.example.org. A: {TIMEOUT_TEXT}")] * 3


@pytest.mark.parametrize("block", ["", "  consolidate off", '  consolidate 1h "in time$" error show_first'])
async def test_a_failure_is_reported_without_parsing_the_query(
        block: str, interkube_caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """The name and type come from what the fast parser read: dnspython never runs for a
    failure (it cost a quarter of the server's time under a failing upstream)."""
    handler, _ = chain(config(block))
    req = request(r"We\.Ird(1)\@x.Example.org", "TXT")

    def no_dnspython(*args: object, **kwargs: object) -> None:
        raise AssertionError("dnspython parsed on the failure path")

    monkeypatch.setattr(dns.message, "from_wire", no_dnspython)
    monkeypatch.setattr(dns.name, "from_wire", no_dnspython)
    for _ in range(2):
        await handler.serve(req)
    monkeypatch.undo()
    assert req._message is None
    # Written as dnspython (and CoreDNS) write it: lower case, specials escaped.
    assert lines(interkube_caplog)[0] == ("ERROR", rf"2 we\.ird\(1\)\@x.example.org. TXT: {TIMEOUT_TEXT}")
