"""`interkube serve`: the DNS server. Flags follow CoreDNS's (-conf, -dns.port, -pidfile, -quiet)."""

from __future__ import annotations

import argparse


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
                   help="event loop: uvloop when installed (auto), or force one")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="serve with N processes sharing the ports (SO_REUSEPORT), one core each")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from interkube.server import registry
    from interkube.server.main import choose_corefile, run

    if args.plugins:
        for name in registry.available():
            print(name)
        return 0
    source = choose_corefile(args.conf)
    banner = None
    if source.path is None:
        from interkube.server.default import banner as default_banner

        banner = default_banner()
    if args.workers < 1:
        raise SystemExit("interkube serve: --workers must be at least 1")
    return run(source, dns_port=args.dns_port, quiet=args.quiet, pidfile=args.pidfile,
               loop=args.loop, banner=banner, workers=args.workers)
