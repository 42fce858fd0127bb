"""`interkube serve`: the DNS server. Flags follow CoreDNS's (-conf, -dns.port, -pidfile, -quiet).

The TCP and TLS limits are flags rather than Corefile directives: they hold for the whole
process (one connection table for every listener, sized from the process's open-files limit),
while a directive belongs to one server block.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from interkube.corefile.parser import ServerBlock
    from interkube.server.listeners import ListenerOptions
    from interkube.server.source import CorefileSource


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the DNS server (CoreDNS Corefile syntax)",
        description="Run the DNS server. Without -conf it reads ./Corefile if present, else "
                    "serves the built-in demo on 127.0.0.1:5353.",
    )
    p.add_argument("-conf", "--conf", dest="conf", metavar="FILE", help="Corefile to load")
    p.add_argument("-dns.port", "--dns-port", dest="dns_port", type=int, metavar="PORT",
                   help="default port for server keys without one (default 53)")
    p.add_argument("-pidfile", "--pidfile", dest="pidfile", metavar="FILE", help="write the PID here")
    p.add_argument("-quiet", "--quiet", dest="quiet", action="store_true", help="print nothing at start")
    p.add_argument("-plugins", "--plugins", dest="plugins", action="store_true",
                   help="list the plugins this build has, in execution order, and exit")
    p.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                   help="event loop: uvloop when installed (auto), or force one; on asyncio a server whose "
                        "Corefile uses no TLS runs without OpenSSL's libraries (5 MiB less; uvloop loads them)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="serve with N processes sharing the ports (SO_REUSEPORT), one core each")
    limits = p.add_argument_group(
        "TCP and TLS connections",
        "Limits for the whole process: every listener's connections share one table.")
    limits.add_argument("-tcp.idle-timeout", "--tcp-idle-timeout", dest="tcp_idle_timeout", type=_duration,
                        default="10s", metavar="DURATION",
                        help="close a connection that has asked no whole query for this long (default 10s)")
    limits.add_argument("-tcp.frame-timeout", "--tcp-frame-timeout", dest="tcp_frame_timeout", type=_duration,
                        default="3s", metavar="DURATION",
                        help="close a connection whose message is not whole this long after its first byte "
                             "(default 3s)")
    limits.add_argument("-tls.handshake-timeout", "--tls-handshake-timeout", dest="tls_handshake_timeout",
                        type=_duration, default="3s", metavar="DURATION",
                        help="close a TLS connection whose handshake is not done this long after the accept "
                             "(default 3s, and never more than the idle timeout)")
    limits.add_argument("-tcp.max-connections", "--tcp-max-connections", dest="tcp_max_connections",
                        type=_count(1), metavar="N",
                        help="connections open at once; when full the one idle longest is closed for a new "
                             "one (default: 1024, less if the open files limit leaves fewer than a quarter "
                             "of it, at least 256, free)")
    limits.add_argument("-tcp.max-per-client", "--tcp-max-per-client", dest="tcp_max_per_client",
                        type=_count(0), default=64, metavar="N",
                        help="connections one client address may hold; 0: no limit (default 64)")
    p.add_argument("-udp.rcvbuf", "--udp-rcvbuf", dest="udp_rcvbuf", type=_count(0), default=4 * 1024 * 1024,
                   metavar="BYTES", help="receive buffer of each UDP socket, for bursts (default 4194304; past "
                                         "net.core.rmem_max only as root; 0: the kernel's default); the size "
                                         "obtained is logged at start")
    p.set_defaults(func=_serve)


def _duration(text: str) -> float:
    """A Go duration (500ms, 10s, 1m) in seconds, above zero, as CoreDNS's flags take them."""
    from interkube.corefile.lexer import Token
    from interkube.errors import ConfigError
    from interkube.pkg.args import duration

    try:
        value = duration(Token(text, "", 0))
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not above zero")
    return value


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value

    return parse


def listener_options(args: argparse.Namespace) -> ListenerOptions:
    """The listeners' limits that serve's flags ask for."""
    from interkube.server.listeners import ListenerOptions

    return ListenerOptions(tcp_idle_timeout=args.tcp_idle_timeout, tcp_frame_timeout=args.tcp_frame_timeout,
                           tls_handshake_timeout=args.tls_handshake_timeout,
                           max_tcp_connections=args.tcp_max_connections,
                           max_tcp_per_client=args.tcp_max_per_client, udp_rcvbuf=args.udp_rcvbuf)


def _serve(args: argparse.Namespace) -> int:
    # httpcore2 (under the API clients' httpx2) imports trio at its own import whenever trio is
    # installed, in case it runs under trio: 51 modules and 3.7 MiB that a server, which runs on
    # asyncio or uvloop only, never uses. Marked absent before anything imports httpx2 (httpcore2
    # and anyio take an absent trio as they take an uninstalled one).
    sys.modules.setdefault("trio", None)  # type: ignore[arg-type]  # None: "not importable", as documented
    if args.plugins:
        from interkube.server import registry

        for name in registry.available():
            print(name)
        return 0
    from interkube.server import collector

    # No garbage collections while the server's modules load and its configuration is built:
    # run() releases the collector once built (see collector.hold).
    collector.hold()
    try:
        return _start(args)
    finally:
        collector.release()  # (when run() did not get as far)


def _start(args: argparse.Namespace) -> int:
    """Read the Corefile, load what it needs (OpenSSL only if it uses it) and run the server."""
    from interkube.server import openssl
    from interkube.server.source import choose_corefile

    source = choose_corefile(args.conf)
    # Before anything imports asyncio: a server that uses no TLS runs without OpenSSL's libraries
    # (see interkube.server.openssl). Not with workers, whose metrics (aiohttp, prometheus_client)
    # load ssl. A Corefile that cannot be read is reported by run() below.
    if args.workers == 1 and _asyncio_loop(args.loop) and not openssl.needed(_blocks(source)):
        openssl.import_without()
    from interkube.server.main import run

    banner = None
    if source.path is None:
        from interkube.server.default import banner as default_banner

        banner = default_banner()
    if args.workers < 1:
        raise SystemExit("interkube serve: --workers must be at least 1")
    return run(source, dns_port=args.dns_port, quiet=args.quiet, pidfile=args.pidfile,
               loop=args.loop, banner=banner, workers=args.workers, options=listener_options(args))


def _asyncio_loop(loop: str) -> bool:
    """Whether the server will run on asyncio's event loop (as main._run_loop chooses it)."""
    if loop == "auto":
        import importlib.util

        return importlib.util.find_spec("uvloop") is None
    return loop == "asyncio"


def _blocks(source: CorefileSource) -> list[ServerBlock]:
    """The server blocks of ``source``, parsed without warnings (the build parses it again, and
    warns); none when it cannot be parsed (the build reports why, and nothing starts)."""
    from interkube.errors import InterkubeError

    try:
        return source.parse(warn=False)
    except InterkubeError:
        return []
