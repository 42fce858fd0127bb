"""The Corefile checks that ask the network: every forwarded zone has an upstream that answers
SOA for it (over TLS where configured, the upstream's certificate checked), and no peer sends
the zone back to this server.

Upstreams are asked the way forward asks them: UDP (TCP when the answer is truncated or with
``force_tcp``), DNS over TLS with the stanza's ``tls`` files and server name. DNS over HTTPS
upstreams are reported as not probed.
"""

from __future__ import annotations

import asyncio
import datetime
import secrets
import socket
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
from cryptography import x509

from interkube.doctor.corefile import Corefile, Forwarded, local_addresses, own_listener
from interkube.doctor.findings import Finding, Level, fail, note, ok, warn
from interkube.tlsutil import reasons
from interkube.tlsutil.certs import sans, signed_by
from interkube.upstream.address import TRANSPORT_DNS, TRANSPORT_HTTPS, TRANSPORT_TLS, UpstreamAddr

if TYPE_CHECKING:
    from interkube.plugins.forward.parse import ForwardConfig

#: A certificate expiring sooner than this is a warning.
EXPIRY_WARNING = datetime.timedelta(days=30)


def server_name(addr: UpstreamAddr, cfg: ForwardConfig) -> str:
    """The name forward verifies an upstream's certificate against (as forward's setup: the
    address's %NAME, else tls_servername, else the address itself)."""
    return addr.server_name or cfg.tls_servername or addr.host


def tls_files(cfg: ForwardConfig) -> tuple[str | None, str | None, str | None]:
    files = cfg.tls
    return (files.cert, files.key, files.ca) if files is not None else (None, None, None)


def verifying_context(cfg: ForwardConfig) -> ssl.SSLContext:
    from interkube.upstream.tls import client_context

    cert, key, ca = tls_files(cfg)
    return client_context(cert, key, ca)


# --- SOA -----------------------------------------------------------------------------------------


def judge_soa(response: dns.message.Message, zone: str) -> tuple[bool, str]:
    """Whether an answer to ``zone SOA`` shows an upstream serving the zone: NOERROR with the
    zone's SOA, or NOERROR/NODATA with the SOA of a zone above it (a namespace of a cluster zone)."""
    rcode = dns.rcode.to_text(response.rcode())
    if response.rcode() != dns.rcode.NOERROR:
        return False, f"answers {rcode}"
    name = dns.name.from_text(zone)
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.SOA and rrset.name == name:
            soa = rrset[0]
            return True, f"answers SOA {soa.mname} serial {soa.serial}"
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and name.is_subdomain(rrset.name):
            return True, f"answers NOERROR (no data) with the SOA of {rrset.name}"
    return False, "answers NOERROR without an SOA record (not a server of this zone?)"


async def ask_soa(addr: UpstreamAddr, zone: str, cfg: ForwardConfig, timeout: float) -> tuple[bool, str]:
    """Ask ``addr`` for the SOA of ``zone`` as forward would; (answered well, evidence)."""
    query = dns.message.make_query(zone, dns.rdatatype.SOA)
    try:
        if addr.transport == TRANSPORT_DNS:
            if cfg.force_tcp:
                response = await dns.asyncquery.tcp(query, addr.host, port=addr.port, timeout=timeout)
            else:
                response = await dns.asyncquery.udp(query, addr.host, port=addr.port, timeout=timeout,
                                                    ignore_unexpected=True)
                if response.flags & dns.flags.TC:
                    response = await dns.asyncquery.tcp(query, addr.host, port=addr.port, timeout=timeout)
        elif addr.transport == TRANSPORT_TLS:
            name = server_name(addr, cfg)
            response = await dns.asyncquery.tls(query, addr.host, port=addr.port, timeout=timeout,
                                                ssl_context=verifying_context(cfg), server_hostname=name)
        else:
            return False, "not probed (DNS over HTTPS)"
    except ssl.SSLError as exc:
        return False, f"TLS refused: {reasons.client_side(exc, server_name(addr, cfg))}"
    except dns.exception.Timeout:
        return False, f"no answer within {timeout:g}s"
    except ConnectionRefusedError:
        return False, "connection refused"
    except (OSError, EOFError, dns.exception.DNSException) as exc:
        return False, f"failed: {exc}"
    return judge_soa(response, zone)


# --- TLS certificates ----------------------------------------------------------------------------


async def peer_certificate(addr: UpstreamAddr, cfg: ForwardConfig, timeout: float) -> x509.Certificate:
    """The certificate the upstream shows, fetched without verifying it (so that a bad one can be
    looked at), presenting the stanza's client certificate (a server asking for mTLS needs it)."""
    cert, key, _ = tls_files(cfg)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert and key:
        ctx.load_cert_chain(cert, key)
    name = server_name(addr, cfg)
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(addr.host, addr.port, ssl=ctx, server_hostname=name), timeout)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    return x509.load_der_x509_certificate(der)


def name_matches(name: str, dns_names: Sequence[str], ips: Sequence[str]) -> bool:
    """RFC 6125 matching as OpenSSL does it: an exact name, a wildcard for one leftmost label,
    or an IP address among the IP SANs."""
    try:
        import ipaddress

        return str(ipaddress.ip_address(name)) in ips
    except ValueError:
        pass
    name = name.lower().rstrip(".")
    for pattern in (n.lower().rstrip(".") for n in dns_names):
        if pattern == name:
            return True
        if pattern.startswith("*.") and "." in name and name.split(".", 1)[1] == pattern[2:]:
            return True
    return False


def load_cas(path: str) -> list[x509.Certificate]:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificates(f.read())


def certificate_findings(cert: x509.Certificate, subject: str, name: str, cas: Sequence[x509.Certificate] | None,
                         ca_label: str, *, prefix: str = "upstream",
                         now: datetime.datetime | None = None) -> list[Finding]:
    """Names, chain and expiry of a server's certificate, each a finding (``PREFIX.tls-name``,
    ``-chain``, ``-expiry``): valid for ``name``, signed by one of ``cas`` (None: the system's
    trust store, verified by the handshake), not expired and not within 30 days of it."""
    now = now or datetime.datetime.now(datetime.UTC)
    out: list[Finding] = []
    dns_names, ips = sans(cert)
    shown = ", ".join([*dns_names, *ips]) or "no subjectAltName"
    if name_matches(name, dns_names, ips):
        out.append(ok(f"{prefix}.tls-name", subject, f"valid for {name} ({shown})"))
    else:
        out.append(fail(f"{prefix}.tls-name", subject, f"not valid for {name}: it names {shown}",
                        "issue the certificate for the name its clients verify"
                        + (", or set `tls_servername` (or tls://ADDRESS%NAME) to a name the certificate has"
                           if prefix == "upstream" else "")))
    if cas is None:
        out.append(note(f"{prefix}.tls-chain", subject, "verified against the system's trust store (no CA given)"))
    elif any(signed_by(cert, c) for c in cas):
        out.append(ok(f"{prefix}.tls-chain", subject, f"signed by {ca_label}"))
    else:
        out.append(fail(f"{prefix}.tls-chain", subject,
                        f"issued by {cert.issuer.rfc4514_string()}, which is not {ca_label}",
                        f"give {ca_label} the CA that signed the certificate, or issue it from that CA"))
    left = cert.not_valid_after_utc - now
    until = cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC")
    if left <= datetime.timedelta(0):
        out.append(fail(f"{prefix}.tls-expiry", subject, f"expired on {until}", "renew the certificate"))
    elif cert.not_valid_before_utc > now:
        out.append(fail(f"{prefix}.tls-expiry", subject,
                        f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
                        "check the clocks, or issue it again"))
    elif left < EXPIRY_WARNING:
        out.append(warn(f"{prefix}.tls-expiry", subject, f"expires in {left.days} days ({until})",
                        "renew the certificate before it expires (cert-manager renews at 2/3 of its life)"))
    else:
        out.append(ok(f"{prefix}.tls-expiry", subject, f"valid until {until} ({left.days} days)"))
    return out


# --- loops through a peer --------------------------------------------------------------------------


async def peer_forwards_back(fwd: Forwarded, upstream: UpstreamAddr, timeout: float) -> Finding | None:
    """Whether ``upstream`` sends ``fwd.zone`` back to this Corefile's listener, found as CoreDNS's
    loop plugin does: a query for a random name is sent to the peer while the listener's address
    is held by the doctor; seeing that name arrive there is a loop. Only when the address is
    free (the server is not running there) and the listener is plain DNS; None when not probed."""
    listens = [li for li in fwd.listens if li[0] == TRANSPORT_DNS]
    if upstream.transport != TRANSPORT_DNS or not listens:
        return None
    _, host, port = listens[0]
    family = socket.AF_INET6 if ":" in (host or upstream.host) else socket.AF_INET
    trap = socket.socket(family, socket.SOCK_DGRAM)
    try:
        trap.bind((host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
    except OSError:
        trap.close()
        return None  # the server (or another) holds the address
    trap.setblocking(False)
    label = f"interkube-doctor-{secrets.token_hex(6)}"
    probe = dns.name.from_text(label, dns.name.from_text(fwd.zone))
    query = dns.message.make_query(probe, dns.rdatatype.HINFO)
    loop = asyncio.get_running_loop()

    async def arrives() -> bool:
        while True:
            data, _ = await loop.sock_recvfrom(trap, 65535)
            try:
                seen = dns.message.from_wire(data)
            except dns.exception.DNSException:
                continue
            if seen.question and seen.question[0].name == probe:
                return True

    async def answered() -> bool:
        try:
            await dns.asyncquery.udp(query, upstream.host, port=upstream.port, timeout=timeout)
        except (dns.exception.DNSException, OSError):
            pass
        return False

    try:
        tasks = [asyncio.ensure_future(arrives()), asyncio.ensure_future(answered())]
        done, pending = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        looped = any(t.result() for t in done)
    finally:
        trap.close()
    subject = f"forward {fwd.zone} at {fwd.where}"
    if looped:
        return fail("corefile.loop", subject,
                    f"the upstream {upstream} sends {fwd.zone} back to this server ({host or '*'}:{port}): "
                    f"a query for {probe} came back", "make the peer forward this zone to its own cluster's "
                    "DNS, not back to this server")
    return ok("corefile.loop", subject, f"the upstream {upstream} did not send a probe for {fwd.zone} back")


# --- the check -----------------------------------------------------------------------------------


async def check_forwarded_zones(model: Corefile, timeout: float = 2.0) -> list[Finding]:
    """Per forwarded zone: the upstreams' SOA answers (ok when one answers, a warning when some do
    not, a failure when none does), their certificates, and loops through a peer. Zones are
    checked at once; their findings keep the Corefile's order."""
    local = local_addresses()
    if not model.forwarded:
        return [note("upstream.soa", model.path, "forwards no zone")]
    per_zone = await asyncio.gather(*(_check_zone(model, fwd, local, timeout) for fwd in model.forwarded))
    return [f for found in per_zone for f in found]


async def _check_zone(model: Corefile, fwd: Forwarded, local: set[str], timeout: float) -> list[Finding]:
    upstreams = [u for u in model.upstreams(fwd) if own_listener(model, u, fwd.zone, local) is None]
    if not upstreams:
        return []  # only its own listener: the loop finding says so
    out: list[Finding] = []
    results = await asyncio.gather(*(ask_soa(u, fwd.zone, fwd.config, timeout) for u in upstreams))
    for upstream in dict.fromkeys(upstreams):
        if upstream.transport == TRANSPORT_TLS:
            out += await _certificate(upstream, fwd, timeout)
        looped = await peer_forwards_back(fwd, upstream, timeout)
        if looped is not None and looped.level is not Level.OK:
            out.append(looped)
    good = [f"{u}: {why}" for u, (fine, why) in zip(upstreams, results, strict=True) if fine]
    bad = [f"{u}: {why}" for u, (fine, why) in zip(upstreams, results, strict=True) if not fine]
    subject = f"forward {fwd.zone} at {fwd.where}"
    if all(u.transport == TRANSPORT_HTTPS for u in upstreams):
        out.append(note("upstream.soa", subject, "DNS over HTTPS upstreams are not probed"))
    elif not good:
        out.append(fail("upstream.soa", subject, "no upstream answers SOA: " + "; ".join(bad),
                        f"point forward at a server of {fwd.zone} that is reachable from here (the remote "
                        "cluster's DNS endpoints), or fix the network path to it"))
    elif bad:
        out.append(warn("upstream.soa", subject, "; ".join(good + bad),
                        "remove or repair the upstreams that do not answer: forward spends retries on them"))
    else:
        out.append(ok("upstream.soa", subject, "; ".join(good)))
    return out


async def _certificate(upstream: UpstreamAddr, fwd: Forwarded, timeout: float) -> list[Finding]:
    try:
        cert = await peer_certificate(upstream, fwd.config, timeout)
    except (OSError, TimeoutError, ssl.SSLError, ValueError) as exc:
        # ValueError: the server ended the handshake (TLS 1.3: refusing our client certificate
        # after sending its own) before the certificate could be read. upstream.soa reports why
        # the connection fails; this only says that the certificate was not looked at.
        return [note("upstream.tls", f"{upstream} certificate",
                     f"not examined: no TLS session to read it from ({exc or type(exc).__name__})",
                     "see upstream.soa for why the connection fails")]
    _, _, ca = tls_files(fwd.config)
    subject = f"{upstream} certificate"
    cas = None
    if ca is not None:
        try:
            cas = load_cas(ca)
        except (OSError, ValueError) as exc:
            return [fail("upstream.tls-chain", subject, f"cannot read the CA {ca}: {exc}", "fix forward's `tls` CA")]
    return certificate_findings(cert, subject, server_name(upstream, fwd.config), cas, f"forward's CA {ca}")
