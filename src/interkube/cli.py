"""The ``interkube`` command line: subcommands only; each lives with the code it drives.

A subcommand module exposes ``register(subparsers)``, which adds its parser(s) and sets
``func`` to a callable taking the parsed arguments and returning an exit status. Modules import
their heavy dependencies inside ``func`` so that ``interkube --version`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from interkube import __version__
from interkube.errors import InterkubeError

# Order is the order of `interkube --help`.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "interkube.server.command",    # serve
    "interkube.netplan.command",   # check, plan
    "interkube.deploy.command",    # render
    "interkube.webhook.command",   # webhook
    "interkube.proxy.command",     # proxy
    "interkube.externalnames.command",  # externalnames
    "interkube.lab.command",       # lab
    "interkube.doctor.command",    # doctor
    "interkube.tlsutil.command",   # certs
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interkube",
        description="Connect Kubernetes clusters: DNS between clusters, address plans, deployment.",
    )
    parser.add_argument("--version", "-version", action="version", version=f"interkube {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):  # subcommand not built in this tree yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except InterkubeError as exc:
        print(f"interkube {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
