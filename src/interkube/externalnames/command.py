"""``interkube externalnames``: keep ExternalName Services in a target cluster for a source's Services."""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from interkube.externalnames.controller import Controller

_HELP = "keep ExternalName Services in one cluster for another cluster's Services"
_DESCRIPTION = """\
For every selected Service of the --source cluster (and, for a headless one, every ready endpoint
with a hostname, by that hostname), create or update in the --target cluster an ExternalName
Service of the same namespace and name whose externalName is the name interkube serves there from
the source's data: <svc>.<ns>.svc.cluster.<source> (<host>.<svc>.<ns>.svc.cluster.<source> for an
endpoint), or in a merged zone (--target-domain cluster.all) <svc>.<ns>.svc.cluster.all and
<host>.<source>.<svc>.<ns>.svc.cluster.all. Ports are copied.

What it makes is labelled app.kubernetes.io/managed-by=interkube-externalnames and
externalnames.interkube.io/source-cluster=<source>; it updates and deletes only those. A Service
someone else made under the same name is a conflict: left alone, counted, logged.

--watch (the default) keeps them in step with the source's watch; --once makes one pass and exits;
--dry-run prints the changes (create, update, delete, conflict) and makes none (once, unless
--watch is given).
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``externalnames`` subcommand."""
    p = subparsers.add_parser("externalnames", help=_HELP, description=_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", ""), metavar="FILE",
                   help="kubeconfig holding both contexts (default $KUBECONFIG)")
    p.add_argument("--source", required=True, metavar="CONTEXT", help="the context of the cluster whose Services "
                   "are mirrored")
    p.add_argument("--target", required=True, metavar="CONTEXT", help="the context of the cluster the "
                   "ExternalName Services are kept in")
    p.add_argument("--source-name", default="", metavar="NAME",
                   help="the source cluster's name in the target's DNS (its kubernetes stanza's `cluster NAME`, "
                        "cluster.NAME); default the --source context")
    p.add_argument("--selector", default="", metavar="LABELS", help="only source Services with these labels "
                   "(a label selector: app=db,tier in (a,b))")
    p.add_argument("--namespace", default="", metavar="NS", help="only this namespace (in both clusters)")
    p.add_argument("--create-namespaces", action="store_true",
                   help="create a namespace the target lacks (default: its Services are skipped and logged)")
    p.add_argument("--target-domain", default="", metavar="DOMAIN",
                   help="the zone the target's interkube serves the source under: cluster.<source> (default) or "
                        "a merged zone, cluster.all or clusterset.local (the clusterset plugin)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="make one pass and exit")
    mode.add_argument("--watch", action="store_true", help="keep the target in step (the default)")
    p.add_argument("--dry-run", action="store_true", help="print the changes, make none")
    p.add_argument("--http", default="", metavar="[HOST]:PORT", help="serve /metrics, /ready and /health here "
                   "(default: none)")
    p.add_argument("--lease", default="", metavar="NAMESPACE/NAME",
                   help="leader election on this Lease in the target cluster: of several replicas one acts")
    p.add_argument("--lease-duration", default="15s", metavar="DURATION",
                   help="how long a Lease holds without renewal (default 15s)")
    p.add_argument("--identity", default=os.environ.get("POD_NAME", ""), metavar="NAME",
                   help="this replica's name in the Lease (default $POD_NAME, else host name and process id)")
    p.add_argument("--resync", default="5m", metavar="DURATION",
                   help="a full pass (the target listed again) this often (default 5m)")
    p.add_argument("--conflict-recheck", default="10s", metavar="DURATION",
                   help="read Services in conflict (made by someone else) this often, to take the name "
                        "over once they are deleted (default 10s)")
    p.add_argument("--concurrency", type=int, default=16, metavar="N", help="writes in flight (default 16)")
    p.add_argument("--sync-timeout", default="60s", metavar="DURATION",
                   help="how long to wait for the source's first sync at start (default 60s)")
    p.add_argument("--quiet", action="store_true", help="log only warnings")
    p.set_defaults(func=run)


def _duration(text: str, flag: str) -> float:
    from interkube.corefile.lexer import Token
    from interkube.errors import ConfigError, ExternalNamesError
    from interkube.pkg.args import duration

    try:
        return duration(Token(text, "", 0))
    except ConfigError as exc:
        raise ExternalNamesError(f"{flag}: {exc.message}") from None


def build(args: argparse.Namespace) -> Controller:
    """The controller the flags describe (nothing started); errors name the flag or the file."""
    from interkube.errors import ExternalNamesError
    from interkube.externalnames.controller import Controller, OwnedFilters, Settings, SourceFilters
    from interkube.externalnames.plan import LABEL_VALUE, Naming, owned_selector
    from interkube.externalnames.target import TargetApi
    from interkube.kube import access as api_access
    from interkube.kube.cluster import Cluster
    from interkube.kube.labels import SelectorError, parse_selector
    from interkube.kube.live import LiveSource
    from interkube.kube.registry import ClusterRegistry

    if not args.kubeconfig:
        raise ExternalNamesError("--kubeconfig: no file given and $KUBECONFIG is not set")
    name = args.source_name or args.source
    if not LABEL_VALUE.fullmatch(name):
        raise ExternalNamesError(f"the source cluster's name {name!r} cannot be a label value (letters, digits, "
                                 "'-', '_', '.'; at most 63): give --source-name")
    try:
        selector = parse_selector(args.selector)
    except SelectorError as exc:
        raise ExternalNamesError(f"--selector: {exc}") from None
    if args.concurrency < 1:
        raise ExternalNamesError("--concurrency: at least 1")
    if args.lease and args.lease.count("/") != 1:
        raise ExternalNamesError(f"--lease: {args.lease!r} is not NAMESPACE/NAME")
    naming = Naming.of(name, args.target_domain or None)
    settings = Settings(naming=naming, namespace=args.namespace or None,
                        create_namespaces=args.create_namespaces, dry_run=args.dry_run,
                        resync=_duration(args.resync, "--resync"), concurrency=args.concurrency,
                        conflict_recheck=_duration(args.conflict_recheck, "--conflict-recheck"))
    source_access = api_access.ApiAccess(kubeconfig=args.kubeconfig, context=args.source)
    target_access = api_access.ApiAccess(kubeconfig=args.kubeconfig, context=args.target)
    source_config = api_access.resolve(source_access, name)
    target_config = api_access.resolve(target_access, args.target)
    filters = SourceFilters(namespaces=frozenset([args.namespace]) if args.namespace else frozenset(),
                            service_selector=selector)
    clusters = ClusterRegistry()
    source = Cluster(name, LiveSource(source_access, source_config, filters), stats=clusters.stats(name))
    target = TargetApi(target_config, cluster=args.target, context=args.target)
    owned = OwnedFilters(namespaces=filters.namespaces, selector=parse_selector(owned_selector(naming)),
                         endpoints=False)
    # Its own name, so that its logs and metrics are not taken for the source's.
    target_view = Cluster(f"{args.target}-externalnames", LiveSource(target_access, target_config, owned))
    return Controller(settings, source, target, clusters=clusters, target_view=target_view)


def run(args: argparse.Namespace) -> int:
    from interkube.server.main import _run_loop, configure_logging

    controller = build(args)
    lease_duration = _duration(args.lease_duration, "--lease-duration")
    sync_timeout = _duration(args.sync_timeout, "--sync-timeout")
    once = args.once or (args.dry_run and not args.watch)
    configure_logging(args.quiet)
    return _run_loop(_main(controller, args, once=once, lease_duration=lease_duration, sync_timeout=sync_timeout),
                     "auto")


async def _main(controller: Controller, args: argparse.Namespace, *, once: bool, lease_duration: float,
                sync_timeout: float) -> int:
    import asyncio
    import signal

    log = logging.getLogger("interkube.externalnames")
    try:
        await controller.start_source(sync_timeout)
        if once:
            await controller.full_pass()
            return 0
        await controller.watch_target()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await _serve(controller, args, stop, lease_duration, log)
        return 0
    finally:
        await controller.stop()
        await controller.target.aclose()


async def _serve(controller: Controller, args: argparse.Namespace, stop: asyncio.Event, lease_duration: float,
                 log: logging.Logger) -> None:
    """Watch mode: HTTP endpoint, leader election or acting at once, until ``stop``."""
    import asyncio
    import socket

    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST

    from interkube.errors import ExternalNamesError, ListenerError
    from interkube.externalnames.lease import LeaderElection
    from interkube.plugin.http import HttpEndpoint, parse_http_address

    endpoint = None
    if args.http:
        try:
            host, port = parse_http_address(args.http, 0)
        except ValueError as exc:
            raise ExternalNamesError(f"--http: {exc}") from None

        async def metrics(request: web.Request) -> web.Response:
            response = web.Response(body=controller.metrics.exposition())
            response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
            return response

        async def ready(request: web.Request) -> web.Response:
            return web.Response(text="OK") if controller.ready else web.Response(status=503, text="not ready")

        async def health(request: web.Request) -> web.Response:
            return web.Response(text="OK")

        endpoint = HttpEndpoint(host, port)
        try:
            for path, handler in (("/metrics", metrics), ("/ready", ready), ("/health", health)):
                await endpoint.add(path, controller, handler)
        except ListenerError as exc:
            raise ExternalNamesError(f"--http: {exc}") from None
        log.info("externalnames: /metrics, /ready and /health on %s", endpoint)
    election: LeaderElection | None = None
    elect_task: asyncio.Task[None] | None = None
    pending: set[asyncio.Task[None]] = set()
    naming = controller.naming
    log.info("externalnames: mirroring Services of %s (%s) into %s (%s) as *.svc.%s%s", naming.source,
             controller.source.source.description, controller.target.cluster, controller.target.server,
             naming.domain, " (dry run)" if controller.settings.dry_run else "")
    try:
        if args.lease:
            namespace, name = args.lease.split("/")
            identity = args.identity or f"{socket.gethostname()}_{os.getpid()}"

            def leading(now: bool) -> None:
                task = asyncio.get_running_loop().create_task(controller.set_acting(now))
                pending.add(task)
                task.add_done_callback(pending.discard)

            election = LeaderElection(controller.target, namespace, name, identity, leading, duration=lease_duration)
            elect_task = asyncio.get_running_loop().create_task(election.run(), name="externalnames-lease")
        else:
            await controller.set_acting(True)
        await stop.wait()
        log.info("externalnames: shutting down")
    finally:
        if elect_task is not None:
            elect_task.cancel()
            await asyncio.gather(elect_task, return_exceptions=True)
        if pending:  # a leadership change still on its way must not start the passes again
            await asyncio.gather(*pending, return_exceptions=True)
        await controller.set_acting(False)  # no write after the Lease is given up
        if election is not None:
            await election.release()
            await asyncio.gather(*pending, return_exceptions=True)
        if endpoint is not None:
            await endpoint.remove(controller)
