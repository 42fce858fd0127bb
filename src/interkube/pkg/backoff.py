"""How long to wait before trying again after failures in a row: exponential, capped, jittered.

Shared by the reconnects of TLS upstreams (:class:`interkube.upstream.transport.Backoff`) and the
relists and re-watches of a cluster's API (:mod:`interkube.kube.live`).
"""

from __future__ import annotations

import random

#: Doublings after which the delay is the cap whatever the numbers (and 2**n stays a float).
_MAX_DOUBLINGS = 30


def retry_delay(failures: int, *, first: float, cap: float) -> float:
    """Seconds to wait after the ``failures``-th failure in a row (1 for the first).

    ``first`` after one failure, doubled for each further one, at most ``cap``; then a random
    half to all of it, so that clients that lost a server together do not all come back to it
    in the same instant.
    """
    doublings = min(max(failures - 1, 0), _MAX_DOUBLINGS)
    ceiling = min(cap, first * 2.0 ** doublings)
    return ceiling * random.uniform(0.5, 1.0)
