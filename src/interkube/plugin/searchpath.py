"""Search lists that one plugin gives another: autopath's ``@PLUGIN`` (CoreDNS's AutoPather).

A plugin that can tell the search list of the client asking (kubernetes, with ``pods verified``:
the list kubelet wrote into the resolv.conf of the pod with the client's address) registers a
*source* for its server block at setup::

    search_path_sources(ctx.block.shared).add("kubernetes", handler.search_path)

and autopath asks the sources registered under the name it was given (``autopath @kubernetes``),
in setup order, using the first list one gives. A source answers on the fast path: it only looks
into memory. Lists are :class:`SearchPath` objects, interned by whoever makes them
(:class:`PodSearchPaths`), so that autopath can keep what it worked out per list and question.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Final

import dns.exception
import dns.name

from interkube.dns.memo import Memo
from interkube.dns.names import to_wire
from interkube.pkg.shared import Kind, SharedObjects
from interkube.plugin.request import Request

log = logging.getLogger("interkube.plugin.searchpath")

#: The host's resolver configuration, whose search list a pod's ends with (kubelet copies the
#: node's; CoreDNS reads the one of the host it runs on). Tests point it elsewhere.
RESOLV_CONF: Path = Path("/etc/resolv.conf")
#: Search lists kept per (namespace, zone), the oldest forgotten first.
PATHS_LIMIT: Final = 65_536


class SearchPath:
    """One search list: its domains (lower case, fully qualified) and, as the walk uses them,
    their wire forms followed by the root (the name as written, tried last).

    Compared and hashed by identity: one object per list (see :class:`PodSearchPaths`).
    """

    __slots__ = ("domains", "wires")

    def __init__(self, domains: Iterable[str]) -> None:
        self.domains: tuple[str, ...] = tuple(domains)
        if not self.domains:
            raise ValueError("a search path needs a domain")
        self.wires: tuple[bytes, ...] = (*(to_wire(d) for d in self.domains), b"\x00")

    def __repr__(self) -> str:
        return f"<SearchPath {' '.join(self.domains)}>"


#: Gives the search list of the client asking, or None (not a client it knows, not its zone).
SearchPathSource = Callable[[Request], SearchPath | None]


class SearchPathSources:
    """The search-list sources of one server block, by the plugin that registered them."""

    __slots__ = ("_by_plugin",)

    def __init__(self) -> None:
        self._by_plugin: dict[str, list[SearchPathSource]] = {}

    def add(self, plugin: str, source: SearchPathSource) -> None:
        self._by_plugin.setdefault(plugin, []).append(source)

    def of(self, plugin: str) -> tuple[SearchPathSource, ...]:
        """The sources ``plugin`` registered, in setup order (none: it gives no search lists)."""
        return tuple(self._by_plugin.get(plugin, ()))


SEARCH_PATH_SOURCES = Kind("search path sources of a server block", SearchPathSources)


def search_path_sources(shared: SharedObjects) -> SearchPathSources:
    """The sources of the block whose shared objects ``shared`` are."""
    return shared.get_or_create(SEARCH_PATH_SOURCES, None, SearchPathSources)


def client_ip(req: Request) -> str:
    """The client's address as a pod's status gives it: an IPv4 client of a dual-stack socket
    (``::ffff:10.0.0.5``, a block listening on every interface) without the IPv6 mapping."""
    ip = req.client_ip
    if ip.startswith("::ffff:") and "." in ip:
        return ip[7:]
    return ip


def domain(text: str) -> str | None:
    """``text`` as a search domain (fully qualified, lower case); None when it is no domain name
    or is the root (which would ask the bare name, tried last anyway)."""
    try:
        name = dns.name.from_text(text)
    except (dns.exception.DNSException, ValueError):
        return None
    if name == dns.name.root:
        return None
    return name.to_text().lower()


def read_search(path: str | Path, *, strict: bool = True) -> tuple[str, ...]:
    """The search list of a resolv.conf file, as CoreDNS's resolver library reads one: the
    last ``search`` or ``domain`` line wins (``domain`` stands for a list of one), names are
    made fully qualified and lower case. Raises OSError when the file cannot be read and, when
    ``strict``, ValueError (naming the line) for a search domain that is no domain name (not
    strict: it is left out)."""
    found: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0] not in ("search", "domain"):
                continue
            words = fields[1:] if fields[0] == "search" else fields[1:2]
            found = []
            for word in words:
                normal = domain(word)
                if normal is None and strict and word.strip(".") != "":
                    raise ValueError(f"line {number}: {word!r} is not a domain name")
                if normal is not None:
                    found.append(normal)
    return tuple(found)


def host_search() -> tuple[str, ...]:
    """This host's search list (:data:`RESOLV_CONF`), () when it has none or cannot be read."""
    try:
        return read_search(RESOLV_CONF, strict=False)
    except OSError as exc:
        log.debug("no search list from %s: %s", RESOLV_CONF, exc)
        return ()


class PodSearchPaths:
    """The search lists kubelet gives pods under the ClusterFirst DNS policy: the pod's
    namespace's ``<ns>.svc.<zone>``, then ``svc.<zone>`` and ``<zone>``, then the host's own
    search domains. One SearchPath per (namespace, zone)."""

    __slots__ = ("host", "_paths")

    def __init__(self, host: Sequence[str]) -> None:
        self.host = tuple(host)
        self._paths: Memo[tuple[str, str], SearchPath] = Memo(PATHS_LIMIT)

    def get(self, namespace: str, zone: str) -> SearchPath:
        """The list of a pod in ``namespace`` asking in ``zone`` (fully qualified, lower case)."""
        key = (namespace, zone)
        found = self._paths.table.get(key)
        if found is None:
            apex = "" if zone == "." else zone
            own = (f"{namespace}.svc.{apex}", f"svc.{apex}", apex)
            found = SearchPath(d for d in (*own, *self.host) if d and d != ".")
            self._paths.remember(key, found)
        return found


__all__ = ["PATHS_LIMIT", "RESOLV_CONF", "SEARCH_PATH_SOURCES", "PodSearchPaths", "SearchPath", "SearchPathSource",
           "SearchPathSources", "client_ip", "domain", "host_search", "read_search", "search_path_sources"]
