"""Running the server: load a Corefile, build, start, wait for a signal, stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from interkube import __version__
from interkube.server.corefile.parser import ServerBlock, parse_file, parse_text
from interkube.server.listeners import ListenerOptions
from interkube.server.runtime import Built, Instance, build
from interkube.server.services import Services

log = logging.getLogger("interkube.server")


@dataclass(frozen=True)
class CorefileSource:
    """Where the configuration comes from: a file on disk, or the built-in default."""

    path: str | None              # None: the built-in default
    text: str | None = None       # set for the built-in default

    @property
    def name(self) -> str:
        return self.path or "<built-in default>"

    def parse(self) -> list[ServerBlock]:
        if self.path is not None:
            return parse_file(self.path)
        return parse_text(self.text or "", self.name)


def default_dir() -> Path:
    """The folder holding the built-in default's Corefile and data files."""
    return Path(str(resources.files("interkube.server") / "default"))


def builtin_default() -> CorefileSource:
    folder = default_dir()
    text = (folder / "Corefile").read_text(encoding="utf-8")
    # The default's data files live in the package; the Corefile names them through this
    # variable so it stays readable as an example.
    text = text.replace("{$INTERKUBE_DEFAULT_DIR}", str(folder))
    return CorefileSource(path=None, text=text)


def choose_corefile(conf: str | None) -> CorefileSource:
    """-conf FILE, else ./Corefile if present, else the built-in default (as the docs say)."""
    if conf:
        return CorefileSource(path=conf)
    if os.path.isfile("Corefile"):
        return CorefileSource(path="Corefile")
    return builtin_default()


@dataclass
class Server:
    """The process-level server: one running Instance at a time."""

    source: CorefileSource
    dns_port: int | None = None
    options: ListenerOptions = field(default_factory=ListenerOptions)
    services: Services = field(default_factory=Services)
    instance: Instance | None = None

    def build(self) -> Built:
        return build(self.source.parse(), self.source.name, self.services, self.dns_port)

    async def start(self, built: Built | None = None) -> None:
        built = built if built is not None else self.build()
        instance = Instance(built, self.options)
        await instance.start()
        self.instance = instance

    async def stop(self) -> None:
        if self.instance is not None:
            await self.instance.stop()
            self.instance = None

    def bound(self) -> list[str]:
        """The addresses actually listened on (ports resolved)."""
        assert self.instance is not None
        return [str(listener) for listener in self.instance.listeners.values()]


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
            return f"[{record.levelname.replace('WARNING', 'WARN')}] {prefix}{msg}"

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CoreStyle())
    root = logging.getLogger("interkube")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    root.propagate = False


async def serve_until_signalled(server: Server, built: Built, quiet: bool, banner: str | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start(built)
    if not quiet:
        assert server.instance is not None
        for line in server.instance.built.zone_lines:
            print(line)
        print(f"interkube-{__version__}")
        if banner:
            print(banner)
        sys.stdout.flush()
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    return 0


def run(source: CorefileSource, *, dns_port: int | None = None, quiet: bool = False,
        pidfile: str | None = None, loop: str = "auto", banner: str | None = None) -> int:
    """Serve until SIGINT/SIGTERM. Configuration errors raise before any socket is opened."""
    configure_logging(quiet)
    server = Server(source, dns_port=dns_port)
    built = server.build()  # everything is validated before any socket opens
    if pidfile:
        Path(pidfile).write_text(f"{os.getpid()}\n")
    try:
        return _run_loop(serve_until_signalled(server, built, quiet, banner), loop)
    finally:
        if pidfile:
            Path(pidfile).unlink(missing_ok=True)


def _run_loop(coro, loop: str) -> int:  # type: ignore[no-untyped-def]
    if loop in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise SystemExit("interkube serve: --loop uvloop needs `pip install uvloop`") from None
        else:
            return uvloop.run(coro)
    return asyncio.run(coro)
