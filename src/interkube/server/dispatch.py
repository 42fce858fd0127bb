"""Routing a query to the server block of the longest matching zone, on the fast or slow path.

The dispatcher is what a listener calls. It never raises: malformed input becomes FORMERR (when a
header can be read) or is dropped, an unsupported opcode NOTIMP, an unknown EDNS version
BADVERS, a zone nobody serves REFUSED, and an exception inside a chain SERVFAIL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

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
from interkube.server.plugin import Handler
from interkube.server.request import Request

log = logging.getLogger("interkube.server")


@dataclass(frozen=True, eq=False)
class Route:
    """A server block as one listener sees it: zone, chain head, and names for logs/metrics.

    Compared and hashed by identity (eq=False): metrics key their counts on the route, and a
    dataclass's generated __hash__ would hash every field in Python on each query.
    """

    zone: str
    server: str      # e.g. "dns://127.0.0.1:5353", the "server" label of metrics
    head: Handler


class Dispatcher:
    """The zones one listener serves, and how a query finds its chain."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.zones = ZoneSet(routes)

    # -- fast path: synchronous, inside the socket callback ---------------------------------

    def fast(self, req: Request) -> bytes | None:
        """The response (b"" to send nothing), or None when the slow path must run.

        ``req.query`` must be set.
        """
        q = req.query
        zone = self.zones.match(q.lname)  # type: ignore[union-attr]
        if zone is None:
            return error_response(req.wire, RCODE_REFUSED, q)
        route = self.routes[zone]
        req.route = route
        try:
            resp = route.head.fast(req)
        except Exception:  # a bug in a handler must not take the listener down
            log.exception("handler failed on the fast path; answering SERVFAIL")
            return error_response(req.wire, RCODE_SERVFAIL, q)
        if resp and req.proto == "udp" and len(resp) > q.udp_limit:  # type: ignore[union-attr]
            resp = truncated(resp, q)  # type: ignore[arg-type]
        return resp

    # -- slow path ----------------------------------------------------------------------------

    async def serve(self, req: Request) -> bytes | None:
        """The response to any input of at least 12 bytes; None to drop it."""
        try:
            if req.query is None:
                early = self._admit(req)
                if early is not None:
                    return early or None
            q = req.query
            assert q is not None
            zone = self.zones.match(q.lname)
            if zone is None:
                return error_response(req.wire, RCODE_REFUSED, q)
            route = self.routes[zone]
            req.route = route
            try:
                resp = await route.head.serve(req)
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

    def _admit(self, req: Request) -> bytes | None:
        """Turn a query the fast parser refused into a normal one, or answer it directly.

        Returns the early response, b"" to drop, or None after setting ``req.query``.
        """
        wire = req.wire
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
        req.wire = normal
        req.query = q
        return None
