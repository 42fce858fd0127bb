"""Process-wide services shared by every server block and kept across reloads.

Plugins reach these through their SetupContext: one object per process, so that two server
blocks asking for the same HTTP address (health, metrics) share one listener, and readiness is
reported for the whole server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from interkube.server.metrics import Metrics


class Services:
    def __init__(self) -> None:
        #: Prometheus registry and the plugins' metric sources (see interkube.server.metrics).
        self.metrics = Metrics()
        #: Objects that plugins share across server blocks, keyed by what they are
        #: (e.g. ("http", "127.0.0.1:8080")).
        self.shared: dict[Any, Any] = {}
        #: name -> callable returning whether that part is ready (ready plugin).
        self.readiness: dict[str, Callable[[], bool]] = {}

    def share(self, key: Any, factory: Callable[[], Any]) -> Any:
        """The shared object for ``key``, created by ``factory`` on first use."""
        obj = self.shared.get(key)
        if obj is None:
            obj = self.shared[key] = factory()
        return obj
