"""Several server blocks for one zone and port, chosen per query by their `view`.

As CoreDNS 1.15: the blocks that serve a zone on one address are asked in Corefile order; the
first whose view accepts the query answers it, and a block without a view accepts every query
(so a block without a view written before a block with one hides it: the build logs that).
When no block of the longest matching zone takes the query, the next shorter zone the address
serves is asked the same way, and with none left the answer is REFUSED.

Only zones that have a block with a view go through here; every other zone keeps the plain
one-lookup route of the dispatcher. A view decides on the fast path: its condition reads the
query and the client synchronously (see interkube.plugins.view.filter).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from interkube.dns.names import to_wire
from interkube.dns.wire import label_offsets
from interkube.plugin.request import Request

if TYPE_CHECKING:
    from interkube.server.dispatch import Chain

#: A block with a view: whether it takes the query, and its chain.
ViewChain: TypeAlias = "tuple[Callable[[Request], bool], Chain]"


class ViewRouter:
    """Picks the chain of a query among the blocks of its zone (see the module docstring)."""

    def __init__(self, chains: dict[str, Chain], views: dict[str, list[ViewChain]]) -> None:
        self.chains = chains
        self.views = {zone: tuple(vs) for zone, vs in views.items()}
        #: Every zone the address serves, by its lower-case wire form (to walk to shorter ones).
        self.by_wire = {to_wire(zone): zone for zone in (*chains, *views)}
        self.wire_len = {zone: len(wire) for wire, zone in self.by_wire.items()}

    def pick(self, req: Request, zone: str) -> Chain | None:
        """The chain for ``req``, whose longest matching zone is ``zone``; None: REFUSED."""
        while True:
            for accepts, chain in self.views.get(zone, ()):
                req.route = chain[0]  # server_ip() reads the block's address from the route
                if accepts(req):
                    return chain
            plain = self.chains.get(zone)
            if plain is not None:
                return plain
            shorter = self.shorter_zone(req.query.lname, zone)
            if shorter is None:
                return None
            zone = shorter

    def shorter_zone(self, lname: bytes, zone: str) -> str | None:
        """The longest zone served here that contains ``lname`` and is shorter than ``zone``."""
        longest = self.wire_len[zone]
        for off in label_offsets(lname):
            suffix = lname[off:]
            if len(suffix) < longest:
                found = self.by_wire.get(suffix)
                if found is not None:
                    return found
        return None


__all__ = ["ViewChain", "ViewRouter"]
