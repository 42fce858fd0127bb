"""Process-wide services shared by every server block and kept across reloads.

Plugins reach these through their SetupContext: one object per process, so that two server
blocks asking for the same HTTP address (health, metrics) share one listener, and readiness is
reported for the whole server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from interkube.pkg.shared import SharedObjects
from interkube.plugin.metrics import Metrics

if TYPE_CHECKING:
    from interkube.plugin.setup import ReadinessCheck

def _raise_fatal(message: str) -> None:
    raise SystemExit(message)


class Services:
    def __init__(self) -> None:
        #: Prometheus registry and the plugins' metric sources (see interkube.plugin.metrics).
        self.metrics = Metrics()
        #: Objects that plugins share across server blocks and reloads.
        self.shared = SharedObjects()
        #: The readiness checks of the configuration being served now (set by the Server at
        #: start and at every reload); `ready` asks them.
        self.current_readiness: Callable[[], list[ReadinessCheck]] = lambda: []
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
        self.worker: WorkerInfo | None = None
        #: SHA512 of the configuration as it is on disk now (see Server.digest_on_disk).
        self.digest_on_disk: Callable[[], str] = lambda: ""

    def not_ready(self) -> list[str]:
        """Names of the parts of the running configuration that are not ready, sorted."""
        missing: set[str] = set()
        for check in self.current_readiness():
            for name, ok in check().items():
                if not ok:
                    missing.add(name)
        return sorted(missing)


class WorkerInfo(Protocol):
    """What a worker of a multi-worker server knows of itself and its siblings (implemented by
    interkube.server.workers.WorkerContext)."""

    index: int
    count: int
    socket_dir: str
    #: Worker 0 alone watches the clusters' APIs and feeds the others (kube.shared).
    shared_watch: bool

    @property
    def serves_http(self) -> bool:
        """Only worker 0 serves health, ready and metrics."""

    async def gather_metrics(self, own: bytes) -> bytes:
        """``own`` exposition merged with every sibling's."""


__all__ = ["Services", "WorkerInfo"]
