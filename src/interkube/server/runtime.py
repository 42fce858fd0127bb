"""From parsed server blocks to running listeners.

:func:`build` does all of the configuration work (parse every directive, set every plugin up,
group zones by listening address) and raises a ConfigError with file:line before anything is
opened. :class:`Instance` then runs the startup hooks, binds every socket and only then serves
them (an address that cannot be bound is reported at its server block's line, and no socket of
the configuration has answered), and stops them by the same list. A reload builds a new Instance
and moves the sockets that did not change over to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from interkube.corefile.keys import TRANSPORT_HTTPS, TRANSPORT_TLS, ZoneAddr, parse_keys
from interkube.corefile.lexer import Token
from interkube.corefile.parser import Directive, ServerBlock
from interkube.errors import ConfigError, InterkubeError, ListenerError
from interkube.plugin.handler import Handler, link
from interkube.plugin.request import Route
from interkube.plugin.services import Services
from interkube.plugin.setup import BlockSettings, ConnectionTimeouts, Hooks, Plugin, ReadinessCheck, SetupContext, View
from interkube.server import registry
from interkube.server.dispatch import Chain, Dispatcher
from interkube.server.listeners import Listener, ListenerOptions, wildcard_host
from interkube.server.views import ViewChain

log = logging.getLogger("interkube.server")

ListenKey = tuple[str, str, int]  # transport, host ("" = all interfaces), port


class Built:
    """A configuration set up but not started. (A plain class: a dataclass is a few exec'd
    functions at import, a millisecond of every start, issue 18.)"""

    def __init__(self) -> None:
        self.chains: dict[ListenKey, dict[str, Chain]] = {}
        #: Every chain's handlers, in order (for tests and tools that look one up by plugin).
        self.handlers: list[Handler] = []
        #: The lifecycle hooks of every directive (see interkube.plugin.setup).
        self.hooks: list[Hooks] = []
        self.tls: dict[ListenKey, Any] = {}
        self.zone_lines: list[str] = []
        self.settings: list[BlockSettings] = []
        self.digest = ""
        #: The server key that first asked for each address: where a failure to bind it is reported.
        self.origin: dict[ListenKey, Token] = {}
        #: The `timeouts` of the blocks on each address (the last block to set a value wins).
        self.timeouts: dict[ListenKey, ConnectionTimeouts] = {}
        #: The blocks with a `view`, per address and zone, in Corefile order (before the zone's
        #: block without one, in ``chains``, if it has one).
        self.views: dict[ListenKey, dict[str, list[ViewChain]]] = {}


def _format_server(transport: str, host: str, port: int) -> str:
    h = f"[{host}]" if ":" in host else host
    return f"{transport}://{h}:{port}"


def parse_directives(block: ServerBlock) -> list[tuple[int, Plugin[Any], Any, Directive]]:
    """(rank, plugin, parsed config, directive) of every directive of ``block``, in execution
    order. Pure (no file is opened, nothing set up): what ``interkube render`` checks a Corefile
    with before writing manifests. Raises ConfigError (file:line) on an unknown plugin, a
    repeated single-use one or a directive its plugin cannot parse."""
    parsed = []
    seen: dict[str, Token] = {}
    for d in block.directives:
        plugin = registry.lookup(d.token)
        if not plugin.multiple and plugin.name in seen:
            raise d.error(f"may appear only once in a server block (first at {seen[plugin.name].where})")
        seen.setdefault(plugin.name, d.token)
        parsed.append((registry.rank(plugin.name), plugin, plugin.parse(d), d))
    parsed.sort(key=lambda item: item[0])  # stable: several stanzas keep their order
    return parsed


def build(blocks: list[ServerBlock], corefile: str, services: Services,
          dns_port: int | None = None) -> Built:
    """Parse and set up every server block. Raises ConfigError (file:line) on any mistake."""
    built = Built()
    owner: dict[tuple[ListenKey, str], Token] = {}
    hidden: set[tuple[str, str]] = set()  # (view line, zone) said to be hidden (once, not per address)
    for block in blocks:
        keyed = parse_keys(block.keys, dns_port)
        # Parse every directive first: parsing is pure, so a typo anywhere stops everything.
        parsed = parse_directives(block)

        # One chain per (transport, port) of the block: keys on other ports get their own chain
        # (as CoreDNS instantiates a block per key), keys on the same port share it.
        by_port: dict[tuple[str, int], list[tuple[ZoneAddr, Token]]] = defaultdict(list)
        for za, tok in keyed:
            by_port[(za.transport, za.port)].append((za, tok))
        for (transport, port), zas in by_port.items():
            zones = tuple(dict.fromkeys(za.zone for za, _ in zas))
            settings = BlockSettings(plugins=tuple(plugin.name for _, plugin, _, _ in parsed))
            handlers: list[Handler] = []
            configured: list[Callable[[], None]] = []
            for _, plugin, cfg, d in parsed:
                hooks = Hooks(plugin.name)
                ctx = SetupContext(zones=zones, port=port, transport=transport, corefile=corefile,
                                   block=settings, services=services, directive=d, configuration=built,
                                   hooks=hooks)
                try:
                    handler = plugin.setup(cfg, ctx)
                except InterkubeError as exc:
                    if isinstance(exc, ConfigError) and exc.file:
                        raise
                    raise d.error(str(exc)) from exc
                if handler is not None:
                    handlers.append(handler)
                configured.extend(hooks.configured)
                if hooks.startup or hooks.shutdown or hooks.serving or hooks.final_shutdown \
                        or hooks.readiness:
                    built.hooks.append(hooks)
            for check in configured:  # (what a directive needs of its siblings' setups)
                check()
            built.handlers.extend(handlers)
            built.settings.append(settings)
            head = link(handlers)
            if transport == TRANSPORT_TLS and settings.tls is None:
                raise zas[0][1].error("a tls:// server block needs a `tls CERT KEY [CA]` directive")
            hosts = settings.bind or ("",)
            for host in hosts:
                lkey: ListenKey = (transport, host, port)
                chains = built.chains.setdefault(lkey, {})
                built.origin.setdefault(lkey, zas[0][1])
                if settings.timeouts is not None:
                    built.timeouts[lkey] = settings.timeouts.over(built.timeouts.get(lkey))
                if transport == TRANSPORT_TLS or (transport == TRANSPORT_HTTPS and settings.tls is not None):
                    built.tls[lkey] = settings.tls
                server_label = _format_server(transport, host, port)
                for za, tok in zas:
                    line = f"{za.zone}:{port}" if not host else f"{za.zone}:{port} on {host}"
                    if line not in built.zone_lines:
                        built.zone_lines.append(line)
                    if settings.view is not None:  # one of several blocks of the zone (server/views.py)
                        _add_view(built, lkey, za.zone, tok, settings.view, (
                            Route(zone=za.zone, server=server_label, view=settings.view.name), head), owner, hidden)
                        continue
                    if (lkey, za.zone) in owner:
                        first = owner[(lkey, za.zone)]
                        raise tok.error(f"zone {za} is defined more than once (first at {first.where})")
                    owner[(lkey, za.zone)] = tok
                    chains[za.zone] = (Route(zone=za.zone, server=server_label), head)
    return built


def _add_view(built: Built, lkey: ListenKey, zone: str, tok: Token, view: View, chain: Chain,
              owner: dict[tuple[ListenKey, str], Token], hidden: set[tuple[str, str]]) -> None:
    """A block with a view joins its zone's blocks, after those before it in the Corefile."""
    hidden_by = owner.get((lkey, zone))
    if hidden_by is not None:
        if (tok.where, zone) in hidden:
            return
        hidden.add((tok.where, zone))
        # As CoreDNS: allowed, and never asked (the block without a view takes every query).
        log.warning("%s: the view %r of zone %s is never used: the block at %s, which has no view, comes "
                    "first and answers every query (write blocks with a view first)",
                    tok.where, view.name, zone, hidden_by.where)
        return
    built.views.setdefault(lkey, {}).setdefault(zone, []).append((view.accepts, chain))


class Instance:
    """A built configuration brought to life: handlers started, listeners bound.

    Starting is phased so that a reload can fail without harm and succeed without a gap:
    :meth:`start_handlers`, then :meth:`bind` (opens only sockets the running configuration does
    not already have), then :meth:`activate`, which points every listener at this configuration
    in one step with no await in between.
    """

    def __init__(self, built: Built, options: ListenerOptions | None = None) -> None:
        self.built = built
        self.options = options or ListenerOptions()
        self.listeners: dict[ListenKey, Listener] = {}
        self.own: set[ListenKey] = set()       # listeners this instance opened (vs adopted)
        self.started: list[Hooks] = []
        self._dispatchers = {k: Dispatcher(chains, built.views.get(k)) for k, chains in built.chains.items()}

    async def start_handlers(self) -> None:
        """Run every directive's startup hooks at once: a hook may wait (a cluster's first sync,
        up to its startup_timeout), and waits in different server blocks should overlap, not add
        up. If any fails, the directives that started are stopped and the first error is raised."""

        async def start_one(hooks: Hooks) -> None:
            await hooks.start()
            self.started.append(hooks)

        results = await asyncio.gather(*(start_one(h) for h in self.built.hooks), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.stop_handlers()
            raise errors[0]

    async def stop_handlers(self) -> None:
        for hooks in reversed(self.started):
            try:
                await hooks.stop()
            except Exception:
                log.exception("stopping %s failed", hooks.plugin)
        self.started.clear()

    async def announce(self) -> None:
        """Run the serving hooks: this configuration answers queries now."""
        for hooks in self.built.hooks:
            for hook in hooks.serving:
                await hook()

    async def final_shutdown(self) -> None:
        """Run the final-shutdown hooks at once (health's lameduck), still serving."""
        await asyncio.gather(*(hook() for hooks in self.built.hooks for hook in hooks.final_shutdown))

    def readiness(self) -> list[ReadinessCheck]:
        return [check for hooks in self.built.hooks for check in hooks.readiness]

    def options_for(self, lkey: ListenKey) -> ListenerOptions:
        """The listener options of an address: the server's, with its blocks' `timeouts`."""
        t = self.built.timeouts.get(lkey)
        if t is None:
            return self.options
        return self.options.with_timeouts(read=t.read, write=t.write, idle=t.idle, max_queries=t.max_queries)

    async def bind(self, existing: dict[ListenKey, Listener] | None = None) -> None:
        """Open the listeners this configuration needs, reusing ``existing`` ones by address.

        Every new socket is bound before any is served: an address in use or not local fails the
        whole configuration (naming its server block's file:line) before any of its sockets
        answered a query, and the sockets bound so far are closed.
        """
        existing = existing or {}
        wildcard = None
        try:
            fresh: list[Listener] = []
            for lkey, disp in self._dispatchers.items():
                if lkey in existing:
                    self.listeners[lkey] = existing[lkey]
                    continue
                transport, host, port = lkey
                if not host:
                    wildcard = wildcard or wildcard_host()
                tls = self.built.tls.get(lkey)  # tls:// keys, and https:// ones with a tls directive
                ssl_ctx = tls.context if tls is not None else None
                listener = Listener(transport, host or wildcard or "", port, disp, self.options_for(lkey), ssl_ctx)
                try:
                    listener.bind()
                except ListenerError as exc:
                    origin = self.built.origin.get(lkey)
                    if origin is None:
                        raise
                    raise ListenerError(f"{origin.where}: {exc}") from exc
                self.listeners[lkey] = listener
                self.own.add(lkey)
                fresh.append(listener)
            for listener in fresh:
                await listener.serve()
        except BaseException:
            await self.close_own()
            raise

    def activate(self) -> None:
        """Serve this configuration from now on: swap every listener's dispatcher (no await)."""
        for lkey, listener in self.listeners.items():
            listener.dispatcher = self._dispatchers[lkey]
            listener.options = self.options_for(lkey)  # a reload's `timeouts` apply to open connections too
            if lkey in self.built.tls:
                listener.ssl_context = self.built.tls[lkey].context
        self.own = set(self.listeners)  # from now on this instance owns them all

    async def close_own(self) -> None:
        for lkey in list(self.own):
            listener = self.listeners.pop(lkey, None)
            if listener is not None:
                await listener.stop()
        self.own.clear()

    async def start(self) -> None:
        """Start from nothing (no configuration running yet)."""
        await self.start_handlers()
        try:
            await self.bind()
        except BaseException:
            await self.stop_handlers()
            raise
        self.activate()

    async def stop(self) -> None:
        for listener in self.listeners.values():
            await listener.stop()
        self.listeners.clear()
        self.own.clear()
        await self.stop_handlers()
