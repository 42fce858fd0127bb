"""The plugin contract: parse (text -> frozen config), setup (config -> handler), handler.

A handler sits in a chain and knows the next handler (``self.next``), as in CoreDNS. It answers
on two paths:

* ``fast(req) -> bytes | None`` runs synchronously inside the socket callback. A handler that can
  answer from memory returns the response; one that passes the query on returns
  ``self.next.fast(req)``; one that needs to wait for anything returns ``None``, and the whole
  chain then runs again on the slow path. The fast path therefore has no side effects until a
  handler commits to an answer, and log/metrics handlers record only answers that came back.
* ``async serve(req) -> bytes`` is the general path; it may await upstreams and may raise a
  :class:`~interkube.errors.DnsError` (an ``errors`` handler earlier in the chain logs it; the
  server turns it into SERVFAIL).

Responses are wire bytes throughout: upstream answers pass through untouched, and answers built
from memory are pre-encoded templates (see :mod:`interkube.dns.wire`). Empty bytes mean "send
nothing" (acl's drop).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from interkube.errors import ConfigError

if TYPE_CHECKING:
    from interkube.server.corefile.parser import Directive
    from interkube.server.request import Request
    from interkube.server.services import Services

ConfigT = TypeVar("ConfigT")


class Handler:
    """Base class of every handler in a chain."""

    #: The plugin name; used in logs, metrics ("plugin" label) and readiness.
    plugin: ClassVar[str] = ""
    next: "Handler"

    def fast(self, req: "Request") -> bytes | None:
        """Answer synchronously from memory, or return None to take the slow path."""
        return None

    async def serve(self, req: "Request") -> bytes:
        """Answer the request (the general path)."""
        return await self.next.serve(req)

    async def start(self) -> None:
        """Begin background work (timers, watches, health checks) before serving."""

    async def stop(self) -> None:
        """End background work; called once on shutdown or when a reload replaces the chain."""

    async def serving(self) -> None:
        """Called once this handler's configuration is answering queries (sockets bound)."""

    def readiness(self) -> dict[str, bool]:
        """Named parts of this handler that must be ready before the server is (see `ready`)."""
        return {}


@dataclass
class BlockSettings:
    """Server-block properties that config-only plugins (bind, tls, ...) set during setup."""

    bind: tuple[str, ...] = ()          # addresses to listen on; empty = all interfaces
    bind_except: tuple[str, ...] = ()
    tls: Any = None                     # a TLS server config for tls:// keys
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SetupContext:
    """What setup may see and touch: the block's zones and settings, the process services."""

    zones: tuple[str, ...]              # the server block's zones, fully qualified, lower case
    port: int
    transport: str
    corefile: str
    block: BlockSettings
    services: "Services"
    directive: "Directive | None" = None
    #: The configuration being built (the same object for every block and directive of one
    #: Corefile load), for plugins that must tell their siblings from a previous configuration.
    configuration: object = None

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


@dataclass(frozen=True)
class Plugin(Generic[ConfigT]):
    """A plugin's registration: its name, its pure parser and its setup."""

    name: str
    parse: Callable[["Directive"], ConfigT]
    setup: Callable[[ConfigT, SetupContext], Handler | None]
    #: May appear more than once in a server block (e.g. one `kubernetes` stanza per cluster).
    multiple: bool = False
    doc: str = ""


class Terminal(Handler):
    """The end of every chain: a query that no handler answered gets SERVFAIL, as in CoreDNS."""

    plugin = "chain"

    def fast(self, req: "Request") -> bytes | None:
        from interkube.dns.wire import RCODE_SERVFAIL, error_response

        return error_response(req.wire, RCODE_SERVFAIL, req.query)

    async def serve(self, req: "Request") -> bytes:
        return self.fast(req)  # type: ignore[return-value]


def link(handlers: list[Handler]) -> Handler:
    """Chain handlers in order and return the head; the last one's next is a Terminal."""
    terminal = Terminal()
    nxt: Handler = terminal
    for h in reversed(handlers):
        h.next = nxt
        nxt = h
    return nxt
