"""Running the server: load a Corefile, build, start, wait for a signal, stop."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interkube.corefile.parser import Directive, ServerBlock
from interkube.errors import InterkubeError
from interkube.plugin.services import Services
from interkube.server import collector, limits, openssl
from interkube.server.listeners import ListenerOptions
from interkube.server.runtime import Built, Instance, build

# Where the configuration is read from (a module of its own: see there), named here as before.
from interkube.server.source import CorefileSource as CorefileSource
from interkube.server.source import builtin_default as builtin_default
from interkube.server.source import choose_corefile as choose_corefile
from interkube.server.source import default_dir as default_dir

if TYPE_CHECKING:  # the workers' module (and its metrics merging) loads only with --workers > 1
    from interkube.server.workers import WorkerContext

log = logging.getLogger("interkube.server")


#: How long a replaced configuration keeps its handlers after a reload, so that queries already
#: on their way (a forward waiting on an upstream) finish on the chain they started with. One
#: forward deadline plus a margin.
RETIRE_AFTER = 6.0


class Server:
    """The process-level server: one running Instance at a time, replaced whole on reload.

    A plain class, not a dataclass: each dataclass is a few exec'd functions at import, a
    millisecond of every start (issue 18, goal 4)."""

    def __init__(self, source: CorefileSource, dns_port: int | None = None, options: ListenerOptions | None = None,
                 services: Services | None = None, worker: WorkerContext | None = None) -> None:
        self.source = source
        self.dns_port = dns_port
        self.options = ListenerOptions() if options is None else options
        self.services = Services() if services is None else services
        self.instance: Instance | None = None
        self.digest = ""
        self.fatal_message: str | None = None
        self._stopping: asyncio.Event | None = None
        self._retiring: set[asyncio.Task[object]] = set()
        self._old: set[Instance] = set()
        self._reload_lock: asyncio.Lock | None = None
        self._metrics_runner: Any = None
        #: Collections by the clock while a configuration runs (issue 19).
        self._collections = collector.Schedule()
        #: Which worker of a multi-worker server this is (None: the only process).
        self.worker = worker
        self.services.worker = worker
        # The TCP and TLS connections' counts (closed by reason, open now): one table per process.
        self.services.metrics.add_source(self.options.table, self.options.table.collect)

    def build(self, warn: bool = True) -> Built:
        blocks = self.source.parse(warn)
        built = build(blocks, self.source.name, self.services, self.dns_port)
        # A configuration whose setup loaded OpenSSL (TLS, a Kubernetes API) in a server started
        # without it: the standard modules imported without it use it from now on, before
        # anything of this configuration connects.
        openssl.catch_up()
        built.digest = config_digest(blocks)
        return built

    def _serve(self, instance: Instance) -> None:
        self.instance = instance
        self.digest = instance.built.digest
        self.services.current_readiness = instance.readiness
        self.services.current_digest = lambda: self.digest
        self.services.request_reload = self.request_reload
        self.services.digest_on_disk = self.digest_on_disk
        self.services.fatal = self.fail

    async def start(self, built: Built | None = None) -> None:
        built = built if built is not None else self.build()
        instance = Instance(built, self.options)
        await instance.start()
        self._serve(instance)
        log.info("Running configuration SHA512 = %s", self.digest)
        worker = self.worker
        if worker is not None and not worker.serves_http:
            self._metrics_runner = await worker.publish_metrics(self.services.metrics.registry)
        await instance.announce()
        collector.settle()  # full collections walk only what is made from now on (issue 19)
        self._collections.start()

    async def reload(self) -> bool:
        """Re-read the Corefile; on any error keep serving the old configuration.

        Sockets whose address is unchanged are kept (with their TCP connections); only the
        chain behind them changes, in one step.
        """
        if self._reload_lock is None:
            self._reload_lock = asyncio.Lock()
        async with self._reload_lock:
            old = self.instance
            assert old is not None
            try:
                built = self.build()
            except InterkubeError as exc:
                self.services.metrics.reload_failed.inc()
                log.error("reload failed, still serving the previous configuration: %s", exc)
                return False
            if built.digest == self.digest:
                # Same configuration: nothing to do (but the setup above read files anew; a
                # zone file change is the file plugin's own reload to pick up).
                return True
            log.info("Reloading")
            new = Instance(built, self.options)
            try:
                await new.start_handlers()
                await new.bind(existing=old.listeners)
            except (InterkubeError, OSError) as exc:
                await new.stop_handlers()
                self.services.metrics.reload_failed.inc()
                log.error("reload failed, still serving the previous configuration: %s", exc)
                return False
            new.activate()
            self._serve(new)
            for lkey, listener in old.listeners.items():
                if lkey not in new.listeners:
                    await listener.stop()
            old.listeners.clear()
            self._old.add(old)
            task = asyncio.get_running_loop().create_task(self._retire(old))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
            self.services.metrics.reloads.inc()
            log.info("Running configuration SHA512 = %s", self.digest)
            log.info("Reloading complete")
            await new.announce()
            return True

    async def _retire(self, old: Instance) -> None:
        await asyncio.sleep(RETIRE_AFTER)
        self._old.discard(old)
        await old.stop_handlers()
        collector.settle()  # the old configuration's cycles are collected, the new one frozen

    def digest_on_disk(self) -> str:
        """The digest of the configuration as it is on disk now.

        An unreadable or unparsable file yields a digest of its raw bytes, so each distinct
        broken version is tried (and reported) once, not at every check.
        """
        try:
            return config_digest(self.source.parse(warn=False))  # checked every few seconds: no warnings
        except InterkubeError:
            try:
                raw = Path(self.source.path).read_bytes() if self.source.path else b""
            except OSError:
                raw = b"<unreadable>"
            return "invalid:" + hashlib.sha512(raw).hexdigest()

    def request_reload(self) -> None:
        """Reload soon (from a signal handler or the reload plugin's timer)."""
        loop = asyncio.get_running_loop()
        task = loop.create_task(self.reload())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def fail(self, message: str) -> None:
        """Stop serving and make the process exit non-zero (loop detection)."""
        log.error("%s", message)
        self.fatal_message = message
        if self._stopping is not None:
            self._stopping.set()

    async def stop(self, final: bool = False) -> None:
        """Stop serving; ``final`` (the process is asked to end) runs the final-shutdown hooks
        first, while still answering (health's lameduck)."""
        if self.instance is None:
            return
        if final:
            await self.instance.final_shutdown()
        for task in list(self._retiring):
            task.cancel()
        for old in list(self._old):  # replaced by a reload moments ago: stop them now
            self._old.discard(old)
            await old.stop_handlers()
        await self.instance.stop()
        self.instance = None
        self._collections.stop()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
            self._metrics_runner = None

    def bound(self) -> list[str]:
        """The addresses actually listened on (ports resolved)."""
        assert self.instance is not None
        return [str(listener) for listener in self.instance.listeners.values()]


def config_digest(blocks: list[ServerBlock]) -> str:
    """SHA512 of the configuration's meaning: tokens and structure, not comments or spacing."""
    h = hashlib.sha512()

    def feed(directives: Iterable[Directive]) -> None:
        for d in directives:
            h.update(b"\x01" + d.name.encode())
            for a in d.args:
                h.update(b"\x02" + a.text.encode())
            if d.has_block:
                h.update(b"\x03")
                feed(d.block)
                h.update(b"\x04")

    for block in blocks:
        h.update(b"\x05" + "\x00".join(k.text for k in block.keys).encode())
        feed(block.directives)
    return h.hexdigest()


def configure_logging(quiet: bool = False) -> None:
    """CoreDNS-style log lines on stdout: ``[INFO] plugin/forward: ...``."""

    class CoreStyle(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            name = record.name
            prefix = ""
            if name.startswith("interkube.plugin."):
                prefix = "plugin/" + name.split(".", 2)[2] + ": "
            elif name == "interkube.query":
                prefix = ""
            msg = record.getMessage()
            if record.exc_info and record.levelno >= logging.ERROR:
                msg += "\n" + self.formatException(record.exc_info)
            return f"[{record.levelname}] {prefix}{msg}"

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CoreStyle())
    root = logging.getLogger("interkube")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    root.propagate = False


async def serve_until_signalled(server: Server, built: Built, quiet: bool, banner: str | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    server._stopping = stop
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # CoreDNS reloads on SIGUSR1; SIGHUP is the Unix habit. Both re-read the Corefile.
    for sig in (signal.SIGHUP, signal.SIGUSR1):
        loop.add_signal_handler(sig, server.request_reload)
    await server.start(built)
    if not quiet:
        from interkube import __version__  # (read from the package's metadata: only when printed)

        assert server.instance is not None
        for line in server.instance.built.zone_lines:
            print(line)
        print(f"interkube-{__version__}")
        if banner:
            print(banner)
        sys.stdout.flush()
    await stop.wait()
    if server.fatal_message is not None:
        await server.stop()
        print(f"interkube serve: {server.fatal_message}", file=sys.stderr)
        return 1
    log.info("shutting down")
    await server.stop(final=True)
    return 0


def run(source: CorefileSource, *, dns_port: int | None = None, quiet: bool = False,
        pidfile: str | None = None, loop: str = "auto", banner: str | None = None,
        workers: int = 1, options: ListenerOptions | None = None) -> int:
    """Serve until SIGINT/SIGTERM. Configuration errors raise before any socket is opened.

    With ``workers`` > 1, that many processes serve the same ports (SO_REUSEPORT); see
    interkube.server.workers. ``options`` are the listeners' limits (serve's flags).
    """
    configure_logging(quiet)
    options = options or ListenerOptions()
    server = Server(source, dns_port=dns_port, options=options)
    try:
        built = server.build()  # everything is validated before any socket opens
    finally:
        collector.release()  # the start's imports and build made, collections resume (see collector.hold)
    # Before any socket opens (and before workers fork, which inherit it); the cap is sized from
    # the limit this leaves.
    before, after = limits.raise_open_files_limit()
    log.info("%s", limits.describe(options.table, before, after))
    if pidfile:
        Path(pidfile).write_text(f"{os.getpid()}\n")
    try:
        if workers <= 1:
            return _run_loop(serve_until_signalled(server, built, quiet, banner), loop)

        def one(ctx: WorkerContext) -> int:
            server = Server(source, dns_port=dns_port, options=replace(options, reuse_port=True), worker=ctx)
            talk = not quiet and ctx.index == 0
            built = server.build(warn=False)  # the parent's build above has logged the warnings
            return _run_loop(serve_until_signalled(server, built, not talk, banner), loop)

        from interkube.server.workers import run_workers

        return run_workers(workers, one)
    finally:
        if pidfile:
            Path(pidfile).unlink(missing_ok=True)


def _run_loop(coro: Coroutine[Any, Any, int], loop: str) -> int:
    if loop in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise SystemExit("interkube serve: --loop uvloop needs `pip install uvloop`") from None
        else:
            return uvloop.run(coro)
    return asyncio.run(coro)
