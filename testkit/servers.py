"""Starting DNS servers for tests: interkube in-process or as a process, dnsmasq and unbound.

Everything binds to loopback and every process is stopped by its PID. Used by the project's own
tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO, Any

import dns.message
import dns.query
import dns.rdatatype

from testkit.processes import stop_process
from testkit.waiting import NeverHappened, wait_until

LOOPBACK = "127.0.0.1"

#: What each process started here prints (stdout and stderr), for process_output.
_OUTPUT: weakref.WeakKeyDictionary[subprocess.Popen[bytes], IO[bytes]] = weakref.WeakKeyDictionary()


def free_port(host: str = LOOPBACK) -> int:
    """A port free for both UDP and TCP on ``host`` right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind((host, 0))
            port: int = t.getsockname()[1]
            with socket.socket(t.family, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port found")


def query(name: str, rdtype: str | int = "A", port: int = 53, host: str = LOOPBACK, *,
          tcp: bool = False, timeout: float = 3.0, **make_kwargs: Any) -> dns.message.Message:
    """Send one query with dnspython and return the response."""
    q = dns.message.make_query(name, dns.rdatatype.RdataType.make(rdtype), **make_kwargs)
    if tcp:
        return dns.query.tcp(q, host, port=port, timeout=timeout)
    return dns.query.udp(q, host, port=port, timeout=timeout, ignore_unexpected=True)


def wait_for_dns(port: int, host: str = LOOPBACK, timeout: float = 15.0,
                 proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until something answers DNS on host:port (any rcode); RuntimeError if ``proc``
    exits first, TimeoutError if nothing answers within ``timeout``."""
    try:
        wait_until(lambda: query("probe.invalid.", "A", port, host, timeout=0.3),
                   f"an answer on {host}:{port}", timeout, ignoring=(Exception,),
                   alive=None if proc is None else lambda: proc.poll() is None)
    except NeverHappened as exc:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before answering on {host}:{port}") from None
        raise TimeoutError(str(exc)) from None


def wait_listening(port: int, host: str = LOOPBACK, timeout: float = 15.0,
                   proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until something accepts TCP connections on host:port (a DNS-over-TLS or TCP
    listener, which :func:`wait_for_dns` does not probe); NeverHappened, with what ``proc`` printed
    when this module started it, if ``proc`` exits first or nothing listens within ``timeout``."""
    def connects() -> bool:
        socket.create_connection((host, port), timeout=0.5).close()
        return True

    def what() -> str:
        said = f"; it printed:\n{process_output(proc)}" if proc is not None and proc in _OUTPUT else ""
        return f"a listener on {host}:{port}{said}"

    wait_until(connects, what, timeout, ignoring=(OSError,),
               alive=None if proc is None else lambda: proc.poll() is None)


@contextlib.contextmanager
def interkube_process(corefile: str | Path | None, port: int, *, env: dict[str, str] | None = None,
                      args: tuple[str, ...] = (), wait: bool = True,
                      cwd: Path | None = None,
                      preexec_fn: Callable[[], object] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``interkube serve -conf corefile ARGS`` as a process (without ``-conf`` when
    ``corefile`` is None: the Corefile in ``cwd``, or the built-in default), wait until it
    answers on ``port`` unless not ``wait``, and stop it by PID afterwards.
    :func:`process_output` reads what it printed, also after it stopped. ``preexec_fn`` runs in
    the child before interkube starts (to lower a resource limit, say)."""
    conf = ("-conf", str(corefile)) if corefile is not None else ()
    cmd = [sys.executable, "-m", "interkube", "serve", *conf, *args]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                            env={**os.environ, **(env or {})}, preexec_fn=preexec_fn)
    _OUTPUT[proc] = log
    try:
        if wait:
            wait_for_dns(port, proc=proc)
        yield proc
    finally:
        stop_process(proc)


@contextlib.contextmanager
def interkube_command(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``interkube ARGS`` (any subcommand: a controller, a proxy) as a process whose output
    :func:`process_output` reads; stopped by its PID afterwards."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "interkube", *args], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})
    _OUTPUT[proc] = log
    try:
        yield proc
    finally:
        stop_process(proc)


def process_output(proc: subprocess.Popen[bytes]) -> str:
    """What a process started by this module has printed so far."""
    log = _OUTPUT[proc]
    log.flush()
    log.seek(0)
    return log.read().decode(errors="replace")


@contextlib.contextmanager
def dnsmasq(port: int, records: dict[str, list[str]] | None = None, *,
            extra: tuple[str, ...] = (), srv: tuple[str, ...] = ()) -> Iterator[subprocess.Popen[bytes]]:
    """A dnsmasq on loopback answering host-record entries; no upstream (never forwards)."""
    exe = shutil.which("dnsmasq")
    if exe is None:
        import pytest

        pytest.skip("dnsmasq is not installed (Debian package dnsmasq)")
    args = [exe, "--keep-in-foreground", "--no-daemon", "--no-resolv", "--no-hosts", "--no-poll",
            f"--listen-address={LOOPBACK}", "--bind-interfaces", f"--port={port}",
            "--log-facility=-", "--user=root" if os.geteuid() == 0 else "--user=" + os.environ.get("USER", "nobody"),
            "--pid-file=", "--cache-size=0"]
    for name, addrs in (records or {}).items():
        args.append(f"--host-record={name},{','.join(addrs)}")
    args.extend(f"--srv-host={s}" for s in srv)
    args.extend(extra)
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    _OUTPUT[proc] = log
    try:
        wait_for_dns(port, proc=proc)
        yield proc
    finally:
        stop_process(proc)


@contextlib.contextmanager
def unbound(port: int, local_data: list[str], *, zone: str = "example.", zone_type: str = "static",
            extra: str = "") -> Iterator[subprocess.Popen[bytes]]:
    """An unbound on loopback serving local-data only (no recursion off the machine)."""
    exe = shutil.which("unbound")
    if exe is None:
        import pytest

        pytest.skip("unbound is not installed (Debian package unbound)")
    tmp = Path(tempfile.mkdtemp(prefix="interkube-unbound-"))
    data = "\n".join(f'    local-data: "{rr}"' for rr in local_data)
    conf = tmp / "unbound.conf"
    conf.write_text(f"""server:
    interface: {LOOPBACK}
    port: {port}
    do-daemonize: no
    use-syslog: no
    logfile: ""
    verbosity: 0
    chroot: ""
    username: ""
    directory: "{tmp}"
    pidfile: ""
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    local-zone: "{zone}" {zone_type}
{data}
{extra}
""")
    proc = subprocess.Popen([exe, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_dns(port, proc=proc)
        yield proc
    finally:
        stop_process(proc)
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.asynccontextmanager
async def in_process(corefile_text: str, *, name: str | None = None,
                     options: object | None = None) -> AsyncIterator[object]:
    """Build and start a Corefile inside this event loop; yields the Server.

    ``options`` is a ListenerOptions (idle timeout, connection cap) for the listeners.
    """
    from interkube.server.listeners import ListenerOptions
    from interkube.server.main import CorefileSource, Server

    tmpdir = Path(tempfile.mkdtemp(prefix="interkube-test-"))
    path = tmpdir / (name or "Corefile")
    path.write_text(corefile_text)
    server = Server(CorefileSource(path=str(path)), options=options or ListenerOptions())  # type: ignore[arg-type]
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        shutil.rmtree(tmpdir, ignore_errors=True)


async def aquery(name: str, rdtype: str | int = "A", port: int = 53, host: str = LOOPBACK, *,
                 tcp: bool = False, timeout: float = 3.0, **make_kwargs: Any) -> dns.message.Message:
    """Async form of :func:`query` (for tests that run the server in the same loop)."""
    import dns.asyncquery

    q = dns.message.make_query(name, dns.rdatatype.RdataType.make(rdtype), **make_kwargs)
    if tcp:
        return await dns.asyncquery.tcp(q, host, port=port, timeout=timeout)
    return await dns.asyncquery.udp(q, host, port=port, timeout=timeout, ignore_unexpected=True)


async def aaddresses(name: str, port: int, rdtype: str = "A") -> tuple[str, list[str]]:
    """(rcode, the answer's addresses of ``rdtype`` sorted) of one query: what a test of which
    addresses a name has compares."""
    import dns.rcode

    msg = await aquery(name, rdtype, port)
    wanted = dns.rdatatype.RdataType.make(rdtype)
    return dns.rcode.to_text(msg.rcode()), sorted(rd.to_text() for rrset in msg.answer
                                                  if rrset.rdtype == wanted for rd in rrset)


async def read_frame(reader: asyncio.StreamReader, timeout: float = 10.0) -> bytes:
    """The next message on a DNS-over-TCP (or TLS) stream, without its length prefix (write
    with ``interkube.pkg.framing.frame``); ``timeout`` only bounds a stream that goes quiet."""
    length = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), timeout), "big")
    return await asyncio.wait_for(reader.readexactly(length), timeout)


async def http_get(url: str) -> tuple[int, str]:
    """GET ``url`` (a server's health, ready or metrics endpoint): the status and the body."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


__all__ = ["free_port", "query", "aquery", "wait_for_dns", "stop_process", "interkube_process",
           "dnsmasq", "unbound", "in_process", "process_output", "http_get", "LOOPBACK"]
