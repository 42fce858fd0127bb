"""Process-wide services shared by every server block and kept across reloads.

Plugins reach these through their SetupContext: one object per process, so that two server
blocks asking for the same HTTP address (health, metrics) share one listener, and readiness is
reported for the whole server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from interkube.server.metrics import Metrics


def _raise_fatal(message: str) -> None:
    raise SystemExit(message)


class Services:
    def __init__(self) -> None:
        #: Prometheus registry and the plugins' metric sources (see interkube.server.metrics).
        self.metrics = Metrics()
        #: Objects that plugins share across server blocks, keyed by what they are
        #: (e.g. ("http", "127.0.0.1:8080")).
        self.shared: dict[Any, Any] = {}
        #: The handlers of the configuration being served now (set by the Server at start and at
        #: every reload); `ready` asks them.
        self.current_handlers: Callable[[], list[Any]] = lambda: []
        #: True while shutting down in lameduck (health's option): `ready` says not ready.
        self.lameduck = False
        #: Called by a plugin that finds the server must not run (loop detection); the Server
        #: stops and exits non-zero with this message.
        self.fatal: Callable[[str], None] = _raise_fatal
        #: Ask the Server to re-read the Corefile (the reload plugin's timer uses it).
        self.request_reload: Callable[[], None] = lambda: None
        #: SHA512 of the configuration being served (reload compares the file's against it).
        self.current_digest: Callable[[], str] = lambda: ""
        #: Set in a multi-worker server (see interkube.server.workers): which worker this is.
        self.worker: Any = None
        #: SHA512 of the configuration as it is on disk now (see Server.digest_on_disk).
        self.digest_on_disk: Callable[[], str] = lambda: ""

    def share(self, key: Any, factory: Callable[[], Any]) -> Any:
        """The shared object for ``key``, created by ``factory`` on first use."""
        obj = self.shared.get(key)
        if obj is None:
            obj = self.shared[key] = factory()
        return obj

    def not_ready(self) -> list[str]:
        """Names of the parts of the running configuration that are not ready, sorted."""
        missing: set[str] = set()
        for handler in self.current_handlers():
            for name, ok in handler.readiness().items():
                if not ok:
                    missing.add(name)
        return sorted(missing)
