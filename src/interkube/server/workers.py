"""Several worker processes on the same ports (SO_REUSEPORT), one core each.

CPython runs one thread of Python at a time, so using more cores means more processes. The
parent validates the Corefile, forks N workers, forwards signals to them and restarts one that
dies unexpectedly. Each worker is a complete server: it loads the Corefile itself, so its data
(zone files, cluster watches) is its own and always current; the kernel spreads datagrams and
connections over the workers' sockets.

Cluster data: each worker watches (the default), or worker 0 shares its watch. Measured with
``python bench/workers_kube.py`` (10,000 Services at a fake API, 2 workers, 200 changes):

                               each watches   shared (INTERKUBE_SHARED_WATCH=1)
  API objects listed, watches  40,292 / 6     20,146 / 3 (as one worker)
  PSS whole server             144 MiB        137 MiB (followers still hold an index)
  change -> last worker p99    4.3 ms         2.9 ms
  worker 0 killed -> served    63 ms          7.4 s (the others wait for its relist)
  QPS vs one worker            1.14x          1.06x (worker 0 also encodes the feed)

Each worker watching stays the default: the API load is N times one watch but it is only a
list at start and one event per change per worker; memory is the same either way (every
worker answers from its own index, the shared feed saves only the parsing); both are fresh
within milliseconds; and a worker that dies takes nothing with it, where a dead worker 0 leaves
the others on stale data until it has listed again. The shared watch is kept, opt-in, for
servers with many workers against an API server whose list load matters.

HTTP endpoints cannot be spread over the workers like datagrams (a scrape would see one
worker's counters), so only worker 0 serves health, ready and metrics; it merges the others'
metrics, which each worker publishes on a unix socket in a private directory, into one
exposition per scrape.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:  # aiohttp (20 MiB of RSS) loads only in a server with several workers
    from aiohttp import web

log = logging.getLogger("interkube.server")

#: A worker that dies within this many seconds of its start is not restarted (a crash loop
#: would only hide the error); the whole server stops instead.
MIN_UPTIME = 5.0
#: Seconds in place of MIN_UPTIME, from the environment of `interkube serve --workers N`: a host
#: whose workers start slowly may need more; tests that kill workers at once set 0.
MIN_UPTIME_ENV = "INTERKUBE_WORKER_MIN_UPTIME"

#: Set to 1 in the environment of `interkube serve --workers N` for the shared watch: worker 0
#: alone lists and watches each cluster and passes the changes on (see interkube.kube.shared).
SHARED_WATCH_ENV = "INTERKUBE_SHARED_WATCH"


def shared_watch_requested() -> bool:
    return os.environ.get(SHARED_WATCH_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def min_uptime() -> float:
    """The crash-loop guard's seconds: MIN_UPTIME_ENV if it is a number of seconds, else MIN_UPTIME."""
    raw = os.environ.get(MIN_UPTIME_ENV, "").strip()
    if not raw:
        return MIN_UPTIME
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds < math.inf:
        log.warning("%s=%r is not a number of seconds; using %gs", MIN_UPTIME_ENV, raw, MIN_UPTIME)
        return MIN_UPTIME
    return seconds


class WorkerContext:
    """What a worker knows of its siblings; kept in Services as ``services.worker``."""

    def __init__(self, index: int, count: int, socket_dir: str, shared_watch: bool = False) -> None:
        self.index = index
        self.count = count
        self.socket_dir = socket_dir
        #: Worker 0 alone watches the clusters' APIs and feeds the others (kube.shared).
        self.shared_watch = shared_watch

    @property
    def serves_http(self) -> bool:
        return self.index == 0

    def metrics_socket(self, index: int) -> str:
        return os.path.join(self.socket_dir, f"metrics-{index}.sock")

    async def publish_metrics(self, registry: CollectorRegistry) -> web.AppRunner:
        """Serve this worker's registry on its unix socket (workers other than 0)."""
        from aiohttp import web

        async def handle(request: web.Request) -> web.Response:
            return web.Response(body=generate_latest(registry))

        app = web.Application()
        app.router.add_get("/metrics", handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        path = self.metrics_socket(self.index)
        Path(path).unlink(missing_ok=True)
        await web.UnixSite(runner, path).start()
        return runner

    async def gather_metrics(self, own: bytes) -> bytes:
        """This worker's exposition merged with every sibling's: counters and buckets summed."""
        from aiohttp import ClientSession, ClientTimeout, UnixConnector
        texts = [own.decode()]
        for i in range(self.count):
            if i == self.index:
                continue
            try:
                async with ClientSession(connector=UnixConnector(path=self.metrics_socket(i))) as s, \
                        s.get("http://worker/metrics", timeout=ClientTimeout(total=2)) as resp:
                    texts.append(await resp.text())
            except Exception as exc:  # a worker restarting is left out of one scrape
                log.debug("worker %d metrics unavailable: %s", i, exc)
        return merge_expositions(texts).encode()


def merge_expositions(texts: list[str]) -> str:
    """Sum identical series across Prometheus text expositions (build_info-style gauges: max).

    The families are parsed and built again with prometheus_client, which writes the text.
    """
    families: dict[str, Metric] = {}
    #: Per family, (sample name, sorted labels) -> value, in the order first seen.
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for fam in text_string_to_metric_families(text):
            if fam.name not in families:
                families[fam.name] = Metric(fam.name, fam.documentation, fam.type)
                values[fam.name] = {}
            series = values[fam.name]
            # An *_info gauge says what every worker runs (version, build): the same 1 each, not a sum.
            same_everywhere = fam.type == "gauge" and fam.name.endswith("_info")
            for sample in fam.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                seen = series.get(key)
                if seen is None:
                    series[key] = sample.value
                else:
                    series[key] = max(seen, sample.value) if same_everywhere else seen + sample.value
    for name, family in families.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
    return generate_latest(_Families(list(families.values()))).decode()


class _Families(Collector):
    """Metric families already built, as a collector for prometheus_client's text writer."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def run_workers(count: int, run_one: Callable[[WorkerContext], int]) -> int:
    """Fork ``count`` workers running ``run_one`` and supervise them until they all stop."""
    socket_dir = tempfile.mkdtemp(prefix="interkube-workers-")
    shared_watch = shared_watch_requested()
    guard = min_uptime()
    if shared_watch:
        log.info("%s: worker 0 alone watches each cluster's API and passes the changes on", SHARED_WATCH_ENV)
    children: dict[int, tuple[int, float]] = {}
    stopping = False
    exit_code = 0

    def spawn(index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            code = 1
            try:
                code = run_one(WorkerContext(index, count, socket_dir, shared_watch))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # report and leave with a failure status
                logging.getLogger("interkube.server").exception("worker %d failed", index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = (index, time.monotonic())

    def forward(sig: int, _frame: object) -> None:
        nonlocal stopping
        if sig in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for pid in list(children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, forward)
    for i in range(count):
        spawn(i)
    try:
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            index, started = children.pop(pid, (-1, 0.0))
            code = os.waitstatus_to_exitcode(status)
            if stopping or index < 0:
                exit_code = exit_code or (code if code > 0 else 0)
                continue
            if code == 0 or time.monotonic() - started < guard:
                # A clean exit, a configuration error or a crash loop: stop everything.
                if code != 0:
                    log.error("worker %d exited with status %d within %gs of its start (%s); stopping the "
                              "server", index, code, guard, MIN_UPTIME_ENV)
                # A worker killed by signal N (code -N) fails the server as a shell would say it,
                # 128 + N: a crash loop must not end in a success status.
                exit_code = code if code > 0 else (128 - code if code < 0 else exit_code)
                stopping = True
                forward(signal.SIGTERM, None)
                continue
            log.warning("worker %d exited with status %d; starting it again", index, code)
            spawn(index)
    finally:
        for name in os.listdir(socket_dir):
            Path(socket_dir, name).unlink(missing_ok=True)
        os.rmdir(socket_dir)
    return exit_code


__all__ = ["SHARED_WATCH_ENV", "WorkerContext", "run_workers", "merge_expositions"]
