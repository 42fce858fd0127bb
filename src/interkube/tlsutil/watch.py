"""Polling certificate files for changes.

cert-manager (through the kubelet) rotates a mounted Secret by swapping a symlink to a new
directory; other tools rename a new file over the old one or rewrite it in place. Polling the
files' contents catches all of these, needs no inotify (which misses symlink swaps made above
the watched path), and costs a few small reads per interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from interkube.pkg.ticker import Ticker

log = logging.getLogger("interkube.tlsutil")

#: Seconds between two looks at the files. Read when a follower starts, so tests may lower it.
POLL_INTERVAL = 2.0


def _poll_interval() -> float:
    return POLL_INTERVAL


def follower(check: Callable[[], object], name: str = "") -> Ticker:
    """A ticker (for its owner to start and stop) that calls ``check()`` every POLL_INTERVAL.

    ``check`` reads a few small files and rebuilds a context only when they changed: cheap
    enough to run on the event loop rather than in a thread.
    """
    async def tick() -> None:
        check()

    return Ticker(_poll_interval, tick, log, what=f"checking {name or 'certificate files'} for changes")
