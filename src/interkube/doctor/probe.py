"""``--probe NETNS``: the scenario's own checks, run from inside a pod's network namespace.

What the forwarded-DNS scenario checks by hand, from a client pod: each remote zone answers
through the local DNS server (SOA), a remote pod address takes a TCP connection, and where a
link proxies Service VIPs, so does a remote Service VIP. The targets come from the plan: the
probe's cluster's ``forward`` entries name the zones and the remote clusters, whose DNS endpoints
(pods listening on TCP 53) and DNS Service VIP are the addresses connected to.

The checks run in a child process started with ``ip netns exec NETNS`` (``python -m
interkube.doctor.probe SPEC``), which prints its findings as JSON: the same findings, made where
the pod's packets start.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from interkube.doctor.findings import Finding, fail, from_dicts, note, ok

if TYPE_CHECKING:
    from interkube.doctor.checks import Options
    from interkube.doctor.corefile import Corefile
    from interkube.netplan.model import Cluster, Plan

CLUSTER_DOMAIN = "cluster.local"


@dataclass
class Spec:
    """What the probe process checks: DNS questions to ``dns`` and TCP connections."""

    dns: str = ""
    dns_port: int = 53
    zones: list[str] = field(default_factory=list)
    #: (host, port, what): e.g. a remote DNS pod, or a remote Service VIP through the proxy.
    connects: list[tuple[str, int, str]] = field(default_factory=list)
    #: SRV names whose targets are resolved and connected to (the forwarded-DNS scenario's
    #: ``_couchbase._tcp.cb-example-srv.remote.svc.cluster.local``).
    srv: list[str] = field(default_factory=list)
    timeout: float = 2.0


def split_address(text: str, default_port: int = 53) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, default_port


def _probe_cluster(plan: Plan, name: str | None) -> Cluster | None:
    if name:
        return next((c for c in plan.clusters if c.name == name), None)
    return next((c for c in plan.clusters if c.forward), plan.clusters[0] if plan.clusters else None)


def build_spec(options: Options, plan: Plan | None, model: Corefile | None) -> tuple[Spec, list[Finding]]:
    """The probe's targets from the plan (and the Corefile's forwarded zones)."""
    spec = Spec(timeout=options.timeout, srv=list(options.probe_srv))
    for target in options.probe_connect:
        host, port = split_address(target, 0)
        spec.connects.append((host, port, "given with --probe-connect"))
    notes: list[Finding] = []
    cluster = _probe_cluster(plan, options.probe_cluster) if plan is not None else None
    if options.probe_dns:
        spec.dns, spec.dns_port = split_address(options.probe_dns)
    elif cluster is not None and cluster.dns is not None and (cluster.dns.service or cluster.dns.endpoints):
        spec.dns = str(cluster.dns.service or cluster.dns.endpoints[0])
    if plan is not None and cluster is not None:
        for fwd in cluster.forward:
            spec.zones.append(f"{fwd.namespace}.svc.{CLUSTER_DOMAIN}.")
            remote = next((c for c in plan.clusters if c.name == fwd.to), None)
            if remote is None or remote.dns is None:
                continue
            for endpoint in remote.dns.endpoints[:1]:
                spec.connects.append((str(endpoint), 53, f"a pod of cluster {remote.name} (its DNS)"))
            proxied = any(link.service_proxy and {cluster.name, remote.name} <= set(link.between)
                          for link in plan.links)
            if proxied and remote.dns.service is not None:
                spec.connects.append((str(remote.dns.service), 53,
                                      f"the Service VIP of cluster {remote.name}'s DNS, through interkube proxy"))
    if model is not None:
        spec.zones += [f.zone for f in model.forwarded if f.zone != "." and f.zone not in spec.zones]
    spec.zones = list(dict.fromkeys(spec.zones))
    if not spec.dns:
        notes.append(note("probe.dns", options.probe or "", "no DNS server to ask: not checked",
                          "give --probe-dns ADDRESS, or the probe cluster's dns.service in the plan"))
    if not spec.zones:
        notes.append(note("probe.dns", options.probe or "", "no forwarded zone in the plan or the Corefile"))
    if not spec.connects and not spec.srv:
        notes.append(note("probe.connect", options.probe or "", "no remote pod address in the plan: not checked",
                          "give the remote cluster's dns.endpoints in the plan"))
    return spec, notes


async def run_probe(options: Options, plan: Plan | None, model: Corefile | None) -> list[Finding]:
    """Run the probe in ``options.probe``'s network namespace; its findings."""
    spec, notes = build_spec(options, plan, model)
    if not spec.dns and not spec.connects:
        return notes
    if not options.probe:
        return notes
    argv = ["ip", "netns", "exec", options.probe or "", sys.executable, "-m", "interkube.doctor.probe",
            json.dumps(asdict(spec))]
    return notes + await run_argv(argv, f"netns {options.probe}", spec.timeout * (len(spec.zones) + 4) + 10)


async def run_argv(argv: Sequence[str], where: str, timeout: float) -> list[Finding]:
    """Run a probe process (``ip netns exec`` or a lab's exec) and read its findings."""
    from interkube.doctor.components import run_process

    try:
        status, out, err = await run_process(argv, timeout)
    except OSError as exc:
        return [fail("probe", where, f"cannot start the probe: {exc}", "run the doctor as root, with iproute2")]
    if status is None:
        return [fail("probe", where, f"the probe did not finish within {timeout:g}s", "")]
    try:
        return from_dicts(json.loads(out)["findings"])
    except (ValueError, KeyError, TypeError):
        return [fail("probe", where, f"the probe failed (exit {status}): {(err or out).strip()[-400:]}",
                     "check that the network namespace exists (ip netns list) and the doctor runs as root")]


# --- inside the namespace -----------------------------------------------------------------------


#: How many times the probe asks before it reports no answer or SERVFAIL, as a pod's resolver
#: does (resolv.conf's attempts): one lost datagram, or one slow upstream, is not a broken setup.
ATTEMPTS = 2


async def ask(spec: Spec, qname: str, rdtype: str) -> Any:
    """A dnspython answer to ``qname``/``rdtype`` from the probe's DNS server: UDP (TCP when
    truncated), asked again after a timeout or SERVFAIL; the last outcome after ATTEMPTS."""
    import dns.asyncquery
    import dns.exception
    import dns.flags
    import dns.message
    import dns.rcode

    query = dns.message.make_query(qname, rdtype)
    for attempt in range(ATTEMPTS):
        last = attempt == ATTEMPTS - 1
        try:
            response = await dns.asyncquery.udp(query, spec.dns, port=spec.dns_port, timeout=spec.timeout,
                                                ignore_unexpected=True)
            if response.flags & dns.flags.TC:
                response = await dns.asyncquery.tcp(query, spec.dns, port=spec.dns_port, timeout=spec.timeout)
        except dns.exception.Timeout:
            if last:
                raise
            continue
        if response.rcode() != dns.rcode.SERVFAIL or last:
            return response
    raise AssertionError("unreachable")  # the last attempt returns or raises


async def probe_dns(spec: Spec, zone: str) -> Finding:
    import dns.exception
    import dns.rdatatype

    from interkube.doctor.upstreams import judge_soa

    subject = f"{zone} through {spec.dns}:{spec.dns_port}"
    try:
        response = await ask(spec, zone, "SOA")
    except dns.exception.Timeout:
        return fail("probe.dns", subject, f"no answer within {spec.timeout:g}s, asked {ATTEMPTS} times",
                    "check that the pod reaches its DNS server and that interkube runs")
    except (OSError, dns.exception.DNSException) as exc:
        return fail("probe.dns", subject, f"failed: {exc}", "check the pod's route to its DNS server")
    fine, why = judge_soa(response, zone)
    if fine:
        return ok("probe.dns", subject, why)
    return fail("probe.dns", subject, why, "check interkube's forward for this zone (interkube doctor -conf)")


async def probe_srv(spec: Spec, name: str) -> list[Finding]:
    """The scenario's lookup: ``name`` SRV through the probe's DNS server, each target's addresses
    (from the additional section, else asked), and a TCP connection to each target's port."""
    import dns.exception
    import dns.rcode
    import dns.rdatatype

    subject = f"{name} SRV through {spec.dns}:{spec.dns_port}"

    try:
        response = await ask(spec, name, "SRV")
    except (OSError, dns.exception.DNSException) as exc:
        return [fail("probe.srv", subject, f"no answer: {exc}", "check the pod's DNS server and its forward")]
    targets = [(str(rr.target), int(rr.port)) for rrset in response.answer if rrset.rdtype == dns.rdatatype.SRV
               for rr in rrset]
    if not targets:
        return [fail("probe.srv", subject, f"answers {dns.rcode.to_text(response.rcode())} without SRV records",
                     "check that the remote Service exists and its zone is forwarded to the remote cluster")]
    glue = {str(rrset.name): [str(rr) for rr in rrset] for rrset in response.additional
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)}
    connects: list[tuple[str, int, str]] = []
    resolved: list[str] = []
    unresolved = 0
    for target, port in targets:
        addresses = glue.get(target, [])
        for rdtype in ("A", "AAAA"):  # IPv4, else IPv6 (IPv6-only clusters)
            if addresses:
                break
            try:
                answer = await ask(spec, target, rdtype)
                addresses = [str(rr) for rrset in answer.answer
                             if rrset.rdtype == dns.rdatatype.from_text(rdtype) for rr in rrset]
            except (OSError, dns.exception.DNSException):
                addresses = []
        unresolved += not addresses
        resolved.append(f"{target}:{port} -> {', '.join(addresses) or 'no address'}")
        connects += [(address, port, f"SRV target {target}") for address in addresses]
    if unresolved:
        found = [fail("probe.srv", subject, f"{unresolved} of {len(targets)} targets without an address: "
                      + "; ".join(resolved),
                      "check the remote headless Service's endpoints (hostnames) and the forward of its zone")]
    else:
        found = [ok("probe.srv", subject, f"{len(targets)} targets: " + "; ".join(resolved))]
    found += await asyncio.gather(*(probe_connect(h, p, what, spec.timeout) for h, p, what in connects))
    return found


async def probe_connect(host: str, port: int, what: str, timeout: float) -> Finding:
    subject = f"tcp {host}:{port} ({what})"
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return fail("probe.connect", subject, f"no answer within {timeout:g}s: the packets or the replies are lost "
                    "(no route, a VIP range that swallows replies, an overlay pod)",
                    "run interkube check on the plan (R1-R4) and check the routes between the clusters")
    except ConnectionRefusedError:
        return fail("probe.connect", subject, "refused: the address answers but nothing listens on the port",
                    "check that the remote pod (or the proxy's backends) listens there")
    except OSError as exc:
        # asyncio's message names the address only; the errno says what the network answered
        # (an ICMP "no route to host" from a router without a route to the pod range, say).
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        return fail("probe.connect", subject, f"failed: {why}: a router on the way has no route to it "
                    "(is the remote pod range routed, or behind an overlay?)",
                    "route the remote cluster's pod range to this cluster without NAT, or use routed networking")
    writer.close()
    return ok("probe.connect", subject, "connected")


async def probe(spec: Spec) -> list[Finding]:
    checks: list[Any] = []
    if spec.dns:
        checks += [probe_dns(spec, zone) for zone in spec.zones]
    checks += [probe_connect(h, p, what, spec.timeout) for h, p, what in spec.connects]
    found: list[Finding] = list(await asyncio.gather(*checks))
    if spec.dns:
        for name in spec.srv:
            found += await probe_srv(spec, name)
    return found


def main(argv: Sequence[str]) -> int:
    from interkube.doctor.findings import to_json

    raw = json.loads(argv[0])
    spec = Spec(**{**raw, "connects": [tuple(c) for c in raw.get("connects", [])]})
    print(json.dumps(to_json(asyncio.run(probe(spec)))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
