"""Routing a query to the server block of the longest matching zone, on the fast or slow path.

The dispatcher is what a listener calls. It never raises: malformed input becomes FORMERR (when a
header can be read) or is dropped, an unsupported opcode NOTIMP, an unknown EDNS version
BADVERS, a zone nobody serves REFUSED, and an exception inside a chain SERVFAIL.
"""

from __future__ import annotations

import logging
from typing import Any

import dns.exception
import dns.message
import dns.opcode
import dns.rcode

from interkube.dns import message as dnsmsg
from interkube.dns.names import ZoneSet
from interkube.dns.wire import (
    FLAG_QR,
    HEADER_LEN,
    RCODE_FORMERR,
    RCODE_NOTIMP,
    RCODE_REFUSED,
    RCODE_SERVFAIL,
    error_response,
    parse_query,
    truncated,
)
from interkube.errors import DnsError
from interkube.plugin.handler import Handler
from interkube.plugin.request import Request, Route

log = logging.getLogger("interkube.server")

#: A server block as one listener sees it: its route (names for logs and metrics) and the head
#: of its chain.
Chain = tuple[Route, Handler]


class Dispatcher:
    """The zones one listener serves, and how a query finds its chain."""

    def __init__(self, chains: dict[str, Chain]) -> None:
        self.chains = chains
        self.zones = ZoneSet(chains)

    # -- fast path: synchronous, inside the socket callback ---------------------------------

    def fast(self, req: Request) -> bytes | None:
        """The response (b"" to send nothing), or None when the slow path must run."""
        q = req.query
        zone = self.zones.match(q.lname)
        if zone is None:
            return error_response(req.wire, RCODE_REFUSED, q)
        route, head = self.chains[zone]
        req.route = route
        try:
            resp = head.fast(req)
        except Exception:  # a bug in a handler must not take the listener down
            log.exception("handler failed on the fast path; answering SERVFAIL")
            return error_response(req.wire, RCODE_SERVFAIL, q)
        if resp and req.proto == "udp" and len(resp) > q.udp_limit:
            resp = truncated(resp, q)
        return resp

    # -- slow path ----------------------------------------------------------------------------

    async def serve_unparsed(self, wire: bytes, client: tuple[Any, ...], proto: str) -> bytes | None:
        """The response to input the fast parser refused (at least 12 bytes); None to drop it."""
        try:
            admitted = self._admit(wire, client, proto)
        except Exception:
            log.exception("dispatcher failed; dropping the query")
            return None
        if isinstance(admitted, bytes):
            return admitted or None
        return await self.serve(admitted)

    async def serve(self, req: Request) -> bytes | None:
        """The response to an admitted query; None to send nothing."""
        try:
            q = req.query
            zone = self.zones.match(q.lname)
            if zone is None:
                return error_response(req.wire, RCODE_REFUSED, q)
            route, head = self.chains[zone]
            req.route = route
            try:
                resp = await head.serve(req)
            except DnsError as exc:
                log.debug("%s: %s", route.zone, exc)
                resp = error_response(req.wire, getattr(exc, "rcode", RCODE_SERVFAIL), q)
            except Exception:
                log.exception("handler failed; answering SERVFAIL")
                resp = error_response(req.wire, RCODE_SERVFAIL, q)
            if not resp:
                return None  # a handler chose to send nothing (acl drop)
            if resp[:2] != req.wire[:2]:
                resp = req.wire[:2] + resp[2:]
            if req.proto == "udp" and len(resp) > q.udp_limit:
                resp = truncated(resp, q)
            return resp
        except Exception:
            log.exception("dispatcher failed; dropping the query")
            return None

    def _admit(self, wire: bytes, client: tuple[Any, ...], proto: str) -> Request | bytes:
        """Turn a query the fast parser refused into a normal request, or answer it directly.

        Returns the request, or the early response (b"" to drop).
        """
        if len(wire) < HEADER_LEN or wire[2] & (FLAG_QR >> 8):
            return b""  # too short to answer, or a response: never answer a response
        try:
            msg = dns.message.from_wire(wire, ignore_trailing=True)
        except dns.message.BadEDNS:
            return error_response(wire, RCODE_FORMERR)
        except (dns.exception.DNSException, ValueError, IndexError, UnicodeError):
            return error_response(wire, RCODE_FORMERR)
        if msg.opcode() != dns.opcode.QUERY:
            return error_response(wire, RCODE_NOTIMP)
        if len(msg.question) != 1:
            return error_response(wire, RCODE_FORMERR)
        if msg.edns > 0:
            resp = dnsmsg.make_response(msg, authoritative=False)
            resp.use_edns(0, 0, 1232)
            resp.set_rcode(dns.rcode.BADVERS)
            return resp.to_wire()
        try:
            normal = dnsmsg.normalized_query_wire(msg)
        except dns.exception.DNSException:
            return error_response(wire, RCODE_FORMERR)
        q = parse_query(normal)
        if q is None:
            return error_response(wire, RCODE_FORMERR)
        return Request(normal, q, client, proto)
