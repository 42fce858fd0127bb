"""Forget UDP flows to endpoints that went away (kube-proxy's ``conntrack -D -p udp --reply-src``).

A UDP "connection" has no end: conntrack keeps a client's DNAT to the endpoint it first reached
for as long as datagrams keep coming, so after that endpoint leaves the Service the client
would keep sending to it. After a transaction removes endpoints of a UDP Service port, the
proxy dumps the conntrack table of its network namespace over ctnetlink and deletes the UDP
entries whose reply comes from one of them (sending each entry's own original tuple back in the
delete request). TCP needs nothing: a connection to a pod that is gone fails and the client
opens a new one, which the rules send elsewhere.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Iterator

log = logging.getLogger("interkube.proxy")

_NETLINK_NETFILTER = 12
_CTNETLINK = 1 << 8
_CT_GET, _CT_DELETE = 1, 2  # IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_DUMP = 0x1, 0x4, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_CTA_TUPLE_ORIG, _CTA_TUPLE_REPLY = 1, 2
_CTA_TUPLE_IP, _CTA_TUPLE_PROTO = 1, 2
_CTA_IP_V4_SRC, _CTA_IP_V6_SRC = 1, 3
_CTA_PROTO_NUM, _CTA_PROTO_SRC_PORT = 1, 2
_UDP = 17


def _attrs(data: bytes) -> Iterator[tuple[int, bytes, bytes]]:
    """(type, payload, the whole attribute) of each netlink attribute in ``data``."""
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            return
        yield kind & 0x3FFF, data[offset + 4:offset + length], data[offset:offset + length]
        offset += (length + 3) & ~3


def _source(tuple_: bytes) -> tuple[int, str, int] | None:
    """(protocol, source address, source port) of a CTA_TUPLE_* payload."""
    proto, address, port = -1, "", -1
    for kind, payload, _ in _attrs(tuple_):
        if kind == _CTA_TUPLE_IP:
            for ip_kind, value, _ in _attrs(payload):
                if ip_kind in (_CTA_IP_V4_SRC, _CTA_IP_V6_SRC):
                    address = str(ipaddress.ip_address(value))
        elif kind == _CTA_TUPLE_PROTO:
            for p_kind, value, _ in _attrs(payload):
                if p_kind == _CTA_PROTO_NUM:
                    proto = value[0]
                elif p_kind == _CTA_PROTO_SRC_PORT:
                    port = struct.unpack("!H", value[:2])[0]
    return (proto, address, port) if address and port >= 0 else None


def _messages(sock: socket.socket) -> Iterator[tuple[int, bytes]]:
    """(type, body after the nlmsghdr) of every message of a dump, until NLMSG_DONE."""
    while True:
        data = sock.recv(1 << 20)
        offset = 0
        while offset + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if kind == _NLMSG_DONE:
                return
            body = data[offset + 16:offset + length]
            if kind == _NLMSG_ERROR:
                code = -struct.unpack_from("=i", body)[0]
                if code:
                    raise OSError(code, os.strerror(code))
                return
            yield kind, body
            offset += (length + 3) & ~3


def _request(kind: int, flags: int, family: int, payload: bytes = b"") -> bytes:
    body = struct.pack("=BBH", family, 0, 0) + payload
    return struct.pack("=IHHII", 16 + len(body), _CTNETLINK | kind, _NLM_F_REQUEST | flags, 0, 0) + body


def forget_udp(endpoints: set[tuple[str, int]]) -> int:
    """Delete the UDP conntrack entries whose replies come from one of ``endpoints`` (address,
    port); returns how many. OSError when ctnetlink cannot be used (no CAP_NET_ADMIN)."""
    if not endpoints:
        return 0
    wanted = {(_UDP, str(ipaddress.ip_address(a)), p) for a, p in endpoints}
    families = {socket.AF_INET6 if ":" in a else socket.AF_INET for a, _ in endpoints}
    deleted = 0
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER) as sock:
        sock.settimeout(5)
        for family in families:
            stale: list[bytes] = []
            sock.send(_request(_CT_GET, _NLM_F_DUMP, family))
            for _, body in _messages(sock):
                original = b""
                reply: tuple[int, str, int] | None = None
                for kind, payload, whole in _attrs(body[4:]):
                    if kind == _CTA_TUPLE_ORIG:
                        original = whole
                    elif kind == _CTA_TUPLE_REPLY:
                        reply = _source(payload)
                if original and reply in wanted:
                    stale.append(original)
            for original in stale:
                sock.send(_request(_CT_DELETE, _NLM_F_ACK, family, original))
                try:
                    for _ in _messages(sock):
                        pass
                    deleted += 1
                except FileNotFoundError:  # gone meanwhile
                    pass
    return deleted
