"""A plugin's registration and what its setup may see and touch.

A plugin is three functions' worth of work, as in CoreDNS: ``parse`` (a directive's tokens to a
frozen config, no I/O), ``setup`` (config to a handler, or to nothing for a config-only plugin
such as bind or health) and the handler itself. Setup wires; it also registers the lifecycle
hooks of whatever runs beside the queries (CoreDNS's ``OnStartup``/``OnShutdown``):

* ``on_startup``: awaited before the configuration serves. The hooks of every directive run at
  once (a cluster's first sync should overlap another's), one directive's in order.
* ``on_shutdown``: awaited once when the configuration stops (a reload replaced it, or the
  process ends), for every directive whose startup hooks all completed.
* ``on_serving``: awaited once the configuration answers queries (its sockets are bound).
* ``on_final_shutdown``: awaited, all at once, when the process is asked to end, while the
  server still answers (health's lameduck); not on reload.
* ``readiness``: a check that names the parts that must be ready before the server is
  (what ``ready`` reports).

A directive that needs what a sibling's setup provides (autopath's ``@PLUGIN``, set up before
the plugin it names) checks it with ``on_configured``: called once every directive of the
server block is set up, before anything starts; it raises ConfigError (``ctx.error``) when what
it needs is not there. ``BlockSettings.plugins`` names the block's plugins from the start.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from interkube.corefile.parser import Directive
from interkube.errors import ConfigError
from interkube.pkg.shared import SharedObjects

if TYPE_CHECKING:
    # Annotations only: a tool that merely parses Corefiles (interkube render) imports every
    # plugin's registration, and these pull in prometheus_client, TLS and dnspython's messages.
    from interkube.plugin.handler import Handler
    from interkube.plugin.request import Request
    from interkube.plugin.services import Services
    from interkube.tlsutil.contexts import ServerTls

ConfigT = TypeVar("ConfigT")

Hook = Callable[[], Awaitable[None]]
#: Named parts and whether each is ready (e.g. {"kubernetes:east": False}).
ReadinessCheck = Callable[[], dict[str, bool]]


class ConnectionTimeouts(NamedTuple):
    """A server block's `timeouts` for its TCP and TLS connections (seconds; None: the server's
    default): ``read`` a query must be whole within, ``write`` an answer must be taken by the
    client within, ``idle`` a connection may ask nothing for, ``max_queries`` a connection may
    ask before it is closed (-1: no limit).

    This module's classes are not dataclasses: a dataclass is a few exec'd functions at import,
    and every server imports them at start (issue 18, goal 4)."""

    read: float | None = None
    write: float | None = None
    idle: float | None = None
    max_queries: int | None = None

    def over(self, earlier: ConnectionTimeouts | None) -> ConnectionTimeouts:
        """These settings where set, ``earlier``'s elsewhere (blocks sharing a listener: the
        last one to set a value wins, as in CoreDNS)."""
        if earlier is None:
            return self
        return ConnectionTimeouts(
            read=earlier.read if self.read is None else self.read,
            write=earlier.write if self.write is None else self.write,
            idle=earlier.idle if self.idle is None else self.idle,
            max_queries=earlier.max_queries if self.max_queries is None else self.max_queries)


class View:
    """A server block's `view`: its name (the `view` label of metrics) and whether a query is
    for this block. The blocks of one zone and port are asked in Corefile order; the first that
    accepts, or the first without a view, answers (interkube.server.views)."""

    __slots__ = ("name", "accepts")

    def __init__(self, name: str, accepts: Callable[[Request], bool]) -> None:
        self.name = name
        self.accepts = accepts


class BlockSettings:
    """Server-block properties that config-only plugins (bind, tls, ...) set during setup."""

    def __init__(self, bind: tuple[str, ...] = (), bind_except: tuple[str, ...] = (), tls: ServerTls | None = None,
                 timeouts: ConnectionTimeouts | None = None, plugins: tuple[str, ...] = (),
                 clusters: list[str] | None = None, view: View | None = None,
                 shared: SharedObjects | None = None) -> None:
        self.bind = bind                # addresses to listen on; empty = all interfaces
        self.bind_except = bind_except
        self.tls = tls                  # the TLS server side of tls:// keys
        #: The block's `timeouts` (for the listeners of its addresses), None: the defaults.
        self.timeouts = timeouts
        #: The plugins of the block's directives, in execution order (known before any setup).
        self.plugins = plugins
        #: The clusters this block's kubernetes stanzas serve, by name, in Corefile order.
        self.clusters: list[str] = [] if clusters is None else clusters
        #: The block's `view` (None: it takes every query of its zones).
        self.view = view
        #: Objects the directives of one block share (see SharedObjects).
        self.shared = SharedObjects() if shared is None else shared


class Hooks:
    """The lifecycle hooks one directive's setup registered (see the module docstring)."""

    def __init__(self, plugin: str) -> None:
        self.plugin = plugin
        self.startup: list[Hook] = []
        self.shutdown: list[Hook] = []
        self.serving: list[Hook] = []
        self.final_shutdown: list[Hook] = []
        self.readiness: list[ReadinessCheck] = []
        self.configured: list[Callable[[], None]] = []

    async def start(self) -> None:
        for hook in self.startup:
            await hook()

    async def stop(self) -> None:
        for hook in reversed(self.shutdown):
            await hook()


class SetupContext:
    """What setup may see and touch: the block's zones and settings, the process services."""

    def __init__(self, zones: tuple[str, ...], port: int, transport: str, corefile: str, block: BlockSettings,
                 services: Services, directive: Directive | None = None, configuration: object = None,
                 hooks: Hooks | None = None) -> None:
        self.zones = zones              # the server block's zones, fully qualified, lower case
        self.port = port
        self.transport = transport
        self.corefile = corefile
        self.block = block
        self.services = services
        self.directive = directive
        #: The configuration being built (the same object for every block and directive of one
        #: Corefile load), for plugins that must tell their siblings from a previous configuration.
        self.configuration = configuration
        self.hooks = Hooks("") if hooks is None else hooks

    @property
    def server_label(self) -> str:
        """The `server` label of this block's metrics, as CoreDNS writes it: dns://:53."""
        host = self.block.bind[0] if self.block.bind else ""
        if ":" in host:
            host = f"[{host}]"
        return f"{self.transport}://{host}:{self.port}"

    def error(self, message: str) -> ConfigError:
        """A ConfigError at the directive being set up."""
        if self.directive is None:
            return ConfigError(message)
        return self.directive.error(message)

    def logger(self, plugin: str) -> logging.Logger:
        return logging.getLogger(f"interkube.plugin.{plugin}")

    # --- lifecycle hooks -------------------------------------------------------------------

    def on_startup(self, hook: Hook) -> None:
        self.hooks.startup.append(hook)

    def on_shutdown(self, hook: Hook) -> None:
        self.hooks.shutdown.append(hook)

    def on_serving(self, hook: Hook) -> None:
        self.hooks.serving.append(hook)

    def on_final_shutdown(self, hook: Hook) -> None:
        self.hooks.final_shutdown.append(hook)

    def readiness(self, check: ReadinessCheck) -> None:
        self.hooks.readiness.append(check)

    def on_configured(self, check: Callable[[], None]) -> None:
        """Run ``check`` once every directive of the block is set up (see the module docstring)."""
        self.hooks.configured.append(check)


class Plugin(Generic[ConfigT]):
    """A plugin's registration: its name, its pure parser and its setup."""

    __slots__ = ("name", "parse", "setup", "multiple", "doc")

    def __init__(self, name: str, parse: Callable[[Directive], ConfigT],
                 setup: Callable[[ConfigT, SetupContext], Handler | None], multiple: bool = False,
                 doc: str = "") -> None:
        self.name = name
        self.parse = parse
        self.setup = setup
        #: May appear more than once in a server block (e.g. one `kubernetes` stanza per cluster).
        self.multiple = multiple
        self.doc = doc


def deferred(module: str) -> Callable[[Any, SetupContext], Handler | None]:
    """The ``setup`` function of ``module``, imported when it is first called.

    A plugin's registration (its package's ``PLUGIN``) names its setup through this, so that
    reading a Corefile imports only the parsers: setup modules pull in what serving needs
    (aiohttp, dnspython's async queries, the Kubernetes client), about a second of imports for a
    tool that only parses (interkube render)."""

    def setup(config: Any, ctx: SetupContext) -> Handler | None:
        function: Callable[[Any, SetupContext], Handler | None] = importlib.import_module(module).setup
        return function(config, ctx)

    setup.__qualname__ = setup.__name__ = f"deferred({module})"
    setup.module = module  # type: ignore[attr-defined]  # read by the test that every module exists
    return setup


__all__ = ["BlockSettings", "ConnectionTimeouts", "Hook", "Hooks", "Plugin", "ReadinessCheck", "SetupContext", "View",
           "deferred"]
