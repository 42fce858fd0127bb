"""Building responses with dnspython, off the hot path. No I/O."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dns.flags
import dns.opcode
import dns.rcode

from interkube.dns.wire import ADVERTISED_PAYLOAD

if TYPE_CHECKING:
    import dns.message


def make_response(query: dns.message.Message, *, authoritative: bool = True) -> dns.message.Message:
    """An empty response to ``query``: QR, the question, RD and CD echoed, EDNS when asked.

    We advertise a 1232-byte payload and echo DO (RFC 3225: a server copies DO into its
    response).
    """
    import dns.message as dns_message  # (imported at first use, not at every start: issue 18)

    response = dns_message.make_response(query, our_payload=ADVERTISED_PAYLOAD)
    if authoritative:
        response.flags |= dns.flags.AA
    if query.edns >= 0 and query.ednsflags & dns.flags.DO:
        response.ednsflags |= dns.flags.DO
    return response


def render(message: dns.message.Message) -> bytes:
    """Wire form of a message (names compressed; the question name is the first target).

    Never capped below 64 KiB: make_response() sets the response's size limit from the
    client's EDNS payload, and dnspython would refuse (TooBig) a larger answer even for TCP.
    Whether the answer fits the client's UDP limit is the listener's decision (TC=1).
    """
    return message.to_wire(max_size=65535)


def rcode_name(rcode: int) -> str:
    try:
        return dns.rcode.Rcode.to_text(rcode)
    except ValueError:
        return str(rcode)


def normalized_query_wire(message: dns.message.Message) -> bytes:
    """Re-render a valid query in the plain shape the fast parser reads.

    Used for queries dnspython accepts but the fast parser does not (a compressed question
    name, extra additional records): they go through the same chain as everything else.
    """
    import dns.message as dns_message  # (imported at first use, not at every start: issue 18)

    clean = dns_message.Message(id=message.id)
    clean.flags = message.flags
    clean.question = list(message.question)
    if message.edns >= 0:
        clean.use_edns(0, message.ednsflags, message.payload, options=list(message.options))
    return clean.to_wire()
