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

from interkube.errors import InterkubeError

# Order is the order of `interkube --help`; beside each module, the subcommands it adds.
SUBCOMMAND_MODULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("interkube.server.command", ("serve",)),
    ("interkube.netplan.command", ("check", "plan")),
    ("interkube.deploy.command", ("render",)),
    ("interkube.webhook.command", ("webhook",)),
    ("interkube.proxy.command", ("proxy",)),
    ("interkube.externalnames.command", ("externalnames",)),
    ("interkube.lab.command", ("lab",)),
    ("interkube.doctor.command", ("doctor",)),
    ("interkube.tlsutil.command", ("certs",)),
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or only of ``command`` when it names one.

    A process runs one subcommand: registering the others would import their modules (and what
    those import at the top) into a long-running server for nothing, in memory and start time.
    """
    modules = [name for name, commands in SUBCOMMAND_MODULES if command in commands]
    if not modules:  # --help, --version, a misspelt command: argparse needs them all
        modules = [name for name, _ in SUBCOMMAND_MODULES]
    parser = argparse.ArgumentParser(
        prog="interkube",
        description="Connect Kubernetes clusters: DNS between clusters, address plans, deployment.",
    )
    parser.add_argument("--version", "-version", action=_Version, nargs=0,
                        help="show program's version number and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):  # subcommand not built in this tree yet
                continue
            raise
        module.register(sub)
    return parser


class _Version(argparse.Action):
    """argparse's ``version`` action, with the version read only when asked for (reading the
    package's metadata is a few ms that every other command, a server's start first, spares)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from interkube import __version__

        print(f"interkube {__version__}")
        parser.exit()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv else None)
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
