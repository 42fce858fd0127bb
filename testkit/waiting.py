"""Waiting for a condition in tests: converge, or fail naming what never happened.

Tests of live sources and running servers wait for effects (a watch event applied, an answer
changed) without asserting how long they take; the timeout only bounds a test that would
otherwise hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def until(condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 15.0) -> None:
    """Poll ``condition`` (which may be async, e.g. ask a server) until it holds; AssertionError
    naming ``what`` if it has not within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        held = condition()
        if not isinstance(held, bool):
            held = await held
        if held:
            return
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.02)
