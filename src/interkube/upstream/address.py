"""Upstream addresses as CoreDNS writes them: ``IP[:PORT]``, ``dns://IP[:PORT]``,
``tls://IP[:PORT][%SERVERNAME]``, ``https://IP[:PORT][%SERVERNAME]`` (DNS over HTTPS, at the
path /dns-query), ``[IPv6]:PORT``."""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

TRANSPORT_DNS = "dns"
TRANSPORT_TLS = "tls"
TRANSPORT_HTTPS = "https"
_DEFAULT_PORT = {TRANSPORT_DNS: 53, TRANSPORT_TLS: 853, TRANSPORT_HTTPS: 443}
#: What CoreDNS's forward also accepts and interkube does not: named in the refusal.
_NOT_SUPPORTED = {"quic": "DNS over QUIC", "grpc": "DNS over gRPC"}
#: Encrypted transports: the ones a %SERVERNAME applies to.
_ENCRYPTED = (TRANSPORT_TLS, TRANSPORT_HTTPS)


class UpstreamAddr(NamedTuple):
    """An upstream's transport, address and port.
    (A NamedTuple, not a dataclass: a dataclass is a few exec'd functions at import, a
    millisecond of every start, issue 18.)"""

    transport: str
    host: str
    port: int
    server_name: str | None = None  # TLS name to verify (the `%name` suffix)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        prefix = "" if self.transport == TRANSPORT_DNS else f"{self.transport}://"
        return f"{prefix}{host}:{self.port}"


def looks_like_address(text: str) -> bool:
    """Whether ``text`` is meant as an address (as opposed to a resolv.conf path).

    Anything address-shaped counts, so that a malformed address (a port out of range, say) is
    reported as such instead of being looked for on disk.
    """
    if "://" in text or text.startswith("["):
        return True
    if "/" in text:
        return False
    return text[:1].isdigit() or ":" in text or "%" in text


def parse_upstream(text: str, transports: tuple[str, ...] = (TRANSPORT_DNS, TRANSPORT_TLS)) -> UpstreamAddr:
    """Parse one upstream whose transport is one of ``transports``; raises ValueError with a
    message fit for a config error."""
    transport = TRANSPORT_DNS
    rest = text
    if "://" in text:
        transport, _, rest = text.partition("://")
        transport = transport.lower()
        allowed = " or ".join(f"{t}://" for t in transports)
        if transport in _NOT_SUPPORTED or (transport in _DEFAULT_PORT and transport not in transports):
            what = _NOT_SUPPORTED.get(transport, f"{transport}://")
            raise ValueError(f"{transport}:// upstreams ({what}) are not supported here (use {allowed})")
        if transport not in _DEFAULT_PORT:
            raise ValueError(f"unknown upstream transport {transport}:// (use {allowed})")
    if transport == TRANSPORT_HTTPS and "/" in rest:
        # As CoreDNS: the path is always /dns-query.
        raise ValueError(f"{text!r}: paths are not allowed in HTTPS upstream addresses (the /dns-query "
                         "path is used)")
    server_name = None
    if "%" in rest:
        rest, _, server_name = rest.partition("%")
        # CoreDNS's form puts the port after the name: tls://9.9.9.9%dns.quad9.net:10853.
        if server_name.count(":") == 1 and not rest.startswith("["):
            server_name, _, port_text = server_name.partition(":")
            rest = f"{rest}:{port_text}"
        elif rest.startswith("[") and "]" in server_name:
            server_name, _, tail = server_name.partition("]")
            rest = f"{rest}]{tail}"
        if transport not in _ENCRYPTED:
            raise ValueError(f"{text!r}: a %SERVERNAME suffix is only meaningful for tls:// and https://")
        if not server_name:
            raise ValueError(f"{text!r}: empty TLS server name after %")
    port = _DEFAULT_PORT[transport]
    host = rest
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: unclosed '['")
        host = rest[1:end]
        tail = rest[end + 1:]
        if tail:
            if not tail.startswith(":") or not tail[1:].isdigit():
                raise ValueError(f"{text!r}: expected :PORT after ']'")
            port = int(tail[1:])
    elif rest.count(":") == 1:
        host, _, p = rest.partition(":")
        if not p.isdigit():
            raise ValueError(f"{text!r}: invalid port {p!r}")
        port = int(p)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address (host names are not accepted as upstreams)") from None
    if not 0 < port < 65536:
        raise ValueError(f"{text!r}: port {port} is out of range")
    return UpstreamAddr(transport, str(ip), port, server_name)


def resolv_conf_nameservers(path: str) -> list[UpstreamAddr]:
    """The `nameserver` lines of a resolv.conf-style file, as port-53 upstreams."""
    out: list[UpstreamAddr] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split("#", 1)[0].split(";", 1)[0].split()
            if len(fields) >= 2 and fields[0] == "nameserver":
                try:
                    out.append(parse_upstream(fields[1].split("%", 1)[0]))
                except ValueError:
                    continue
    return out
