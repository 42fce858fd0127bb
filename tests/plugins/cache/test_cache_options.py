"""The cache options CoreDNS 1.15 has beyond the classic ones: capacity 0, serve_stale's
RESPONSE_TTL, FAILURE_RECHECK and VERIFY_TIMEOUT, and serve_stale_policy prefer_positive."""

from __future__ import annotations

import asyncio
from typing import Any

import dns.rcode
import pytest

from interkube.errors import ConfigError
from interkube.plugins.cache.parse import Bucket, ServeStale, parse
from testkit.corefile import directive

from cachetest import SOA, Scripted, a_record, make_cache, nx_or_a, query, refreshes_done, request, respond, ttls


def test_capacity_zero_and_serve_stale_arguments_parse() -> None:
    cfg = parse(directive("cache {\n success 0\n denial 0 60 2\n}"))
    assert (cfg.success, cfg.denial) == (Bucket(0, 3600, 5), Bucket(0, 60, 2))
    stale = parse(directive("cache {\n serve_stale 1h immediate 10s 1m\n}")).serve_stale
    assert stale == ServeStale(3600.0, False, 1.8, 10, 60.0)
    stale = parse(directive("cache {\n serve_stale 1h verify 100ms 0 0\n}")).serve_stale
    assert stale == ServeStale(3600.0, True, 0.1, 0, 0.0)
    assert parse(directive("cache {\n serve_stale 1h verify 0 30s\n}")).serve_stale == \
        ServeStale(3600.0, True, None, 30, 30.0)  # 0: wait for the next plugin, as CoreDNS's default
    cfg = parse(directive("cache {\n serve_stale\n serve_stale_policy prefer_positive\n}"))
    assert cfg.serve_stale is not None and cfg.serve_stale.prefer_positive


@pytest.mark.parametrize("body, line, words", [
    ("cache {\n serve_stale 1h immediate 1.5s\n}", 3, "response TTL '1.5s' must be a whole number of seconds"),
    ("cache {\n serve_stale 1h immediate 1s 6m\n}", 3, "the failure recheck cannot exceed 5 minutes"),
    ("cache {\n serve_stale 1h immediate 1s 1s 1s\n}", 3, "unexpected '1s' (at most 4 arguments with immediate)"),
    ("cache {\n serve_stale_policy prefer_positive\n}", 3, "cache: serve_stale_policy requires serve_stale"),
    ("cache {\n serve_stale\n serve_stale_policy newest\n}", 4, "invalid policy 'newest' (expected prefer_positive)"),
    ("cache {\n serve_stale\n serve_stale_policy prefer_positive\n serve_stale_policy prefer_positive\n}", 5,
     "serve_stale_policy can only be specified once (first at Corefile:4)"),
])
def test_errors(body: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(directive(body))
    assert str(info.value).startswith(f"Corefile:{line}: ") and words in str(info.value), str(info.value)


def test_denial_zero_caches_no_denials_but_successes() -> None:
    nxt = Scripted(nx_or_a)
    cache, _ = make_cache("cache {\n denial 0\n}", nxt)
    for _ in range(3):
        resp = cache.fast(request(query("nx.example.org.")))
        assert resp is not None and resp[3] & 0x0F == dns.rcode.NXDOMAIN
        cache.fast(request(query("www.example.org.")))
    assert nxt.calls == 4 and len(cache) == 1  # every denial asked again; the success kept


def test_success_zero_caches_no_successes() -> None:
    nxt = Scripted(nx_or_a)
    cache, _ = make_cache("cache {\n success 0\n}", nxt)
    for _ in range(2):
        cache.fast(request(query("www.example.org.")))
        cache.fast(request(query("nx.example.org.")))
    assert nxt.calls == 3 and len(cache) == 1


async def test_stale_answers_carry_the_response_ttl_and_the_recheck_is_set() -> None:
    nxt = Scripted(a_record(60), on_fast=False)
    cache, clock = make_cache("cache {\n serve_stale 1h immediate 7s 2m\n}", nxt)
    await cache.serve(request(query()))
    clock.advance(61)
    nxt.error = ConnectionError("down")  # type: ignore[assignment]
    stale = cache.fast(request(query()))
    assert stale is not None and ttls(stale) == [7]
    await refreshes_done(cache)
    clock.advance(100)  # within the 2 minutes after the failure: no refresh asked
    cache.fast(request(query()))
    await refreshes_done(cache)
    assert nxt.serve_calls == 2
    clock.advance(21)
    cache.fast(request(query()))
    await refreshes_done(cache)
    assert nxt.serve_calls == 3


@pytest.mark.parametrize("timeout, waits", [("50ms", 0.05), ("0", None), ("", 1.8)])
async def test_verify_waits_as_long_as_it_is_told(timeout: str, waits: float | None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    nxt = Scripted(a_record(60), on_fast=False)
    cache, clock = make_cache(f"cache {{\n serve_stale 1h verify {timeout}\n}}", nxt)
    await cache.serve(request(query()))
    clock.advance(61)
    asked: list[float | None] = []
    wait_for = asyncio.wait_for

    async def recorded(aw: Any, timeout: float | None) -> Any:
        asked.append(timeout)
        return await wait_for(aw, timeout)

    monkeypatch.setattr(asyncio, "wait_for", recorded)
    fresh = await cache.serve(request(query()))  # the next plugin answers at once
    assert ttls(fresh) == [60] and asked == [waits]


def nx_after_first(answers: list[int]) -> Scripted:
    """A next handler: an A record first, then NXDOMAIN (with SOA) for everything."""
    def answer(wire: bytes) -> bytes:
        answers.append(1)
        if len(answers) == 1:
            return a_record(60)(wire)
        return respond(wire, authority=[("example.org.", 60, "SOA", SOA.format(minimum=60))],
                       rcode=dns.rcode.NXDOMAIN)
    return Scripted(answer, on_fast=False)


@pytest.mark.parametrize("policy, positive", [("serve_stale_policy prefer_positive", True), ("", False)])
async def test_prefer_positive_keeps_the_answer_a_denial_would_replace(policy: str, positive: bool) -> None:
    answers: list[int] = []
    nxt = nx_after_first(answers)
    cache, clock = make_cache(f"cache {{\n serve_stale 1h immediate\n {policy}\n}}", nxt)
    await cache.serve(request(query()))
    clock.advance(61)
    stale = cache.fast(request(query()))  # stale, and refreshed in the background: NXDOMAIN
    assert stale is not None and stale[3] & 0x0F == dns.rcode.NOERROR
    await refreshes_done(cache)
    after = cache.fast(request(query()))
    assert after is not None
    assert (after[3] & 0x0F == dns.rcode.NOERROR) == positive
    # Past the serve_stale duration, the denial goes through either way.
    clock.advance(3600)
    resp = await cache.serve(request(query()))
    assert resp[3] & 0x0F == dns.rcode.NXDOMAIN
