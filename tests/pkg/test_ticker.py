"""The one periodic ticker (file, hosts and snapshot reloading, certificate rotation, reload)."""

from __future__ import annotations

import logging
import random

import pytest

from interkube.pkg.ticker import Ticker
from testkit.waiting import until

log = logging.getLogger("interkube.test.ticker")


class Ticks:
    """A tick that counts its calls; the ones listed in ``failing`` raise (a bug in a check)."""

    def __init__(self, failing: tuple[int, ...] = ()) -> None:
        self.count = 0
        self.failing = failing

    async def __call__(self) -> None:
        self.count += 1
        if self.count in self.failing:
            raise RuntimeError("a bug in one check")


async def test_interval_zero_never_starts() -> None:
    ticks = Ticks()
    ticker = Ticker(0, ticks, log)
    ticker.start()
    assert not ticker.running
    await ticker.stop()
    assert ticks.count == 0


async def test_a_failing_tick_is_logged_and_the_ticking_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    ticks = Ticks(failing=(1,))
    ticker = Ticker(0.01, ticks, log, what="checking things")
    with caplog.at_level(logging.ERROR, logger=log.name):
        ticker.start()
        await until(lambda: ticks.count >= 3, "ticks after the failing one")
        await ticker.stop()
    assert [r.getMessage() for r in caplog.records] == ["checking things failed"]


async def test_start_and_stop_are_idempotent() -> None:
    ticks = Ticks()
    ticker = Ticker(0.01, ticks, log)
    ticker.start()
    first = ticker._task
    ticker.start()
    assert ticker._task is first  # one task, however often started
    await until(lambda: ticks.count >= 1, "a tick")
    await ticker.stop()
    await ticker.stop()
    assert not ticker.running
    assert first is not None and first.done()  # stopped means its task has ended: no more ticks


async def test_an_interval_function_is_read_when_the_ticker_starts() -> None:
    every = {"now": 3600.0}
    ticks = Ticks()
    ticker = Ticker(lambda: every["now"], ticks, log)
    every["now"] = 0.01  # lowered after the ticker was made, as tests lower POLL_INTERVAL
    ticker.start()
    await until(lambda: ticks.count >= 2, "ticks at the lowered interval")
    await ticker.stop()


async def test_jitter_is_drawn_around_the_interval_and_cut_to_half(monkeypatch: pytest.MonkeyPatch) -> None:
    draws: list[tuple[float, float]] = []
    real = random.uniform

    def uniform(a: float, b: float) -> float:
        draws.append((a, b))
        return real(a, b)

    monkeypatch.setattr(random, "uniform", uniform)
    ticks = Ticks()
    ticker = Ticker(0.02, ticks, log, jitter=1.0)  # more than half the interval: cut to 0.01
    ticker.start()
    await until(lambda: ticks.count >= 2, "jittered ticks")
    await ticker.stop()
    assert draws and all(d == (-0.01, 0.01) for d in draws)
