"""A kubernetes stanza: one cluster under its zones, answered from pre-encoded templates.

The *kubernetes* plugin and CoreDNS's external *kubernetai* plugin (several stanzas per server
block, one cluster each) have the same stanza; both plugins set theirs up here, each under its
own name (in logs, metrics and readiness). *k8s_external* reads the stanzas of its server block
through :data:`BLOCK_STANZAS`.

Answers are built once per question shape with dnspython (see :mod:`interkube.kube.lookup`) and
served as templates after that. Each template remembers the index lookups it was built from;
when a watch event changes an object, the cluster reports the dependency keys it touched and
exactly those templates are dropped (the next query builds them again from the new data). A
relist replaces the index, and with it the whole generation of templates.

The stanza's ``multicluster`` zones (MCS, ``clusterset.local``) are answered by the clusterset
merge rules in MCS mode (:mod:`interkube.kube.merge`) over the stanza's one cluster, as a
``clusterset ZONE { mcs; clusters NAME; local NAME }`` beside it would answer them.

Until its cluster first syncs, the stanza answers SERVFAIL for its zones (names a
``fallthrough`` covers go on to the next plugin, as CoreDNS does for names it cannot find).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable

import dns.rcode
import dns.rdataclass
import dns.rdatatype

from interkube.dns.memo import SERVED_NAMES
from interkube.dns.message import make_response, render
from interkube.dns.names import ZoneSet, to_wire
from interkube.dns.wire import ZONE_TRANSFERS, Query, Template, label_offsets
from interkube.errors import KubeError
from interkube.kube.access import ApiAccess
from interkube.kube.cluster import Cluster, Source
from interkube.kube.dnsrecords import respond, soa_rrset
from interkube.kube.filters import Filters
from interkube.kube.index import ClusterIndex, DepKey
from interkube.kube.live import live_source
from interkube.kube.lookup import Lookup, Options
from interkube.kube.merge import Merge
from interkube.kube.merge import Options as MergeOptions
from interkube.kube.merge import Source as MergeSource
from interkube.kube.registry import ClusterRegistry, cluster_registry
from interkube.kube.shared import shared_source
from interkube.kube.snapshot import SnapshotSource
from interkube.kube.stanza import KubernetesConfig, check_multicluster, cluster_name, is_reverse, local_addresses
from interkube.kube.xfr import SERIAL_DEP, ChangeSerial, changes_transfer, zone_records, zone_soa
from interkube.pkg.datagrams import StampType
from interkube.pkg.shared import Kind
from interkube.plugin.answers import (
    PASS,
    REFUSED,
    SERVFAIL,
    DependentGeneration,
    Entry,
    Made,
    SoaRecord,
    Synthesized,
    TemplateHandler,
    negative_answer,
)
from interkube.plugin.handler import passes_later
from interkube.plugin.request import Request
from interkube.plugin.searchpath import PodSearchPaths, SearchPath, client_ip, host_search, search_path_sources
from interkube.plugin.setup import SetupContext
from interkube.plugin.transfer import ZoneCopy, ZoneListener

log = logging.getLogger("interkube.plugin.kubernetes")


#: Stands in for a template while the cluster has no data.
UNSYNCED = SERVFAIL

#: Templates a stanza keeps: TEMPLATES_PER_NAME per name its index serves (A and AAAA of each,
#: in the shapes clients ask), never fewer than TEMPLATE_CAPACITY nor more than
#: TEMPLATE_CEILING. A table smaller than the names asked in turn (100,000 Services asked one
#: after the other) forgot each answer before its name came back and built every answer again.
TEMPLATE_CAPACITY = 100_000
TEMPLATES_PER_NAME = 2
TEMPLATE_CEILING = 1 << 19


def templates_for(names: int) -> int:
    """The template capacity of a stanza whose index serves ``names`` names."""
    return min(TEMPLATE_CEILING, max(TEMPLATE_CAPACITY, TEMPLATES_PER_NAME * names))


#: The labels next to the zone of every cluster name (Lookup's parse_request), and the two
#: other names below the zone that exist (relative, wire form): see _wire_negative.
_KINDS = frozenset({b"\x03svc", b"\x03pod"})
_SPECIAL_NAMES = frozenset({b"\x0bdns-version", b"\x02ns\x03dns"})


def _kind(qname: dns.name.Name, zone: dns.name.Name) -> bytes:
    """The label next to the zone, lower case (``svc``, ``pod``, or anything)."""
    labels = qname.labels
    at = len(labels) - len(zone.labels) - 1
    return labels[at].lower() if at >= 0 else b""


class StanzaGroup:
    """The kubernetes (and kubernetai) handlers of one server block, in chain order: their
    clusters start together."""

    def __init__(self, handlers: list[KubernetesHandler] | None = None) -> None:
        self.handlers: list[KubernetesHandler] = handlers if handlers is not None else []


#: The kubernetes and kubernetai stanzas of one server block.
BLOCK_STANZAS = Kind("the kubernetes stanzas of a server block", StanzaGroup)


class KubernetesHandler(TemplateHandler):
    plugin = "kubernetes"
    # Answers come from the current generation's templates, whose stamps its table revokes when
    # an object they were built from changes, and the table's when the index is replaced (see
    # _changed and _generation).
    memo_safe = True

    def __init__(self, cfg: KubernetesConfig, zones: tuple[str, ...], options: Options, cluster: Cluster,
                 registry: ClusterRegistry, configuration: object,
                 group: StanzaGroup | None = None) -> None:
        self.zones = ZoneSet(zones)
        #: The zones answered by the MCS rules (``multicluster``), as ZoneSet.match gives them.
        self.mcs_zones = frozenset(self.zones.match_text(z) for z in cfg.multicluster)
        self.cfg = cfg
        self.options = options
        self.cluster = cluster
        self.registry = registry
        #: Identifies the configuration this handler belongs to (see ClusterRegistry.attach).
        self.configuration = configuration
        #: The kubernetes handlers of the same server block, whose clusters start together.
        self.group = group if group is not None else StanzaGroup([self])
        self.generation: DependentGeneration[ClusterIndex | None] = self._generation(cluster.index)
        self.attached = False
        #: Answers built since start (the rest of the queries were served from templates).
        self.built = 0
        #: The pods' search lists, for autopath (the host's search domains read now, as CoreDNS).
        self.search_paths = PodSearchPaths(host_search())
        #: Zone transfers (interkube.plugin.transfer): who is told of changes, and the serial,
        #: which follows the changes once someone is (None until then: the index's).
        self.zone_listeners: list[ZoneListener] = []
        self.zone_serial: ChangeSerial | None = None
        #: For negative answers written on the wire: the zones' wire names (those it writes),
        #: the SOA records by zone and serial.
        self._zone_wires: dict[str, bytes] = {}
        self._soa_records: dict[tuple[str, int], SoaRecord] = {}

    # --- answering -------------------------------------------------------------------------

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        """A question the current index has a template for is answered from it at once: the
        table holds only keys that template() found in this stanza's zones and did not refuse,
        so the zone match and its checks would find what they found then (at 10,000 Services
        they were a third of this handler's time per query, and at 100,000 the zone memo's
        lookup missed the processor's caches). Anything else goes the whole way."""
        gen = self.generation
        if gen.data is self.cluster.index:  # (a table of no index, None, is always empty)
            q = req.query
            tpl = gen.templates.get(q.key)
            if tpl is not None:
                if tpl is PASS:
                    resp = self.next.fast(req)
                    req.memo = None  # (see TemplateHandler.fast)
                    return resp
                req.answered_by = self.plugin
                req.memo = tpl.stamp if type(tpl) is Template else None
                return tpl.render(q)
        return super().fast(req)

    def template(self, req: Request) -> Entry:
        q = req.query
        zone = self.zones.match(q.lname)
        if zone is None:
            return PASS
        if q.qtype in ZONE_TRANSFERS:
            return REFUSED
        index = self.cluster.index
        if index is None:
            return PASS if self.cfg.fallthrough.applies(q.lname) else UNSYNCED
        gen = self.generation
        if gen.data is not index:
            gen = self.generation = self._generation(index)
        tpl = gen.templates.get(q.key)
        if tpl is None:
            negative = self._wire_negative(q, index, zone)
            if negative is not None:
                return gen.keep(q, *negative)
            tpl = gen.build(q, lambda deps: self._build(req, index, deps, zone))
            self.built += 1
        return tpl

    def _wire_negative(self, q: Query, index: ClusterIndex, zone: str) -> tuple[Made, tuple[DepKey, ...]] | None:
        """The answer (and its dependencies) to a name that cannot be a cluster name, told from
        its bytes and written on the wire, without dnspython: a flood of random names in the
        zone (issue 19 §7) costs a few µs a name, not a build. None where the lookup must say.

        As Lookup.answer has it: a name whose label next to the zone is neither ``svc`` nor
        ``pod`` is NXDOMAIN for every type but SOA (NODATA below the apex), except
        ``dns-version`` and ``ns.dns``. Reverse and ``multicluster`` zones are left to it."""
        if q.qclass != dns.rdataclass.IN:
            return PASS, ()
        zone_wire = self._zone_wires.get(zone)
        if zone_wire is None:
            if zone in self.mcs_zones or is_reverse(zone):
                return None
            zone_wire = self._zone_wires[zone] = to_wire(zone)
        lname = q.lname
        apex_at = len(lname) - len(zone_wire)
        if apex_at == 0 or lname[:apex_at] in _SPECIAL_NAMES:
            return None
        offsets = label_offsets(lname)
        last = offsets[offsets.index(apex_at) - 1]
        if lname[last:apex_at] in _KINDS:
            return None
        name_error = q.qtype != dns.rdatatype.SOA
        if name_error and self.cfg.fallthrough.applies(lname):
            return PASS, ()
        serial = index.serial if self.zone_serial is None else self.zone_serial.read(index)
        answer = negative_answer(q, self._soa_record(zone, serial), name_error)
        if answer is None:
            return None
        return answer, (() if self.zone_serial is None else (SERIAL_DEP,))

    def _soa_record(self, zone: str, serial: int) -> SoaRecord:
        """The zone's SOA at ``serial`` for negative answers written on the wire (kept until the
        serial moves on)."""
        key = (zone, serial)
        record = self._soa_records.get(key)
        if record is None:
            if len(self._soa_records) >= 16:
                self._soa_records.clear()
            record = self._soa_records[key] = SoaRecord.from_rrset(
                soa_rrset(dns.name.from_text(zone), zone, serial, self.options.ttl))
        return record

    def _generation(self, index: ClusterIndex | None) -> DependentGeneration[ClusterIndex | None]:
        """A table of templates for ``index``, sized by its names (see served_names), which the
        process's name memos (interkube.dns.memo) also follow from now on. It is to replace the
        current generation: whose table is retired here (its answers leave the answer memo)."""
        names = 0 if index is None else index.served_names()
        SERVED_NAMES.announce(self, names)
        current: DependentGeneration[ClusterIndex | None] | None = getattr(self, "generation", None)
        if current is not None:
            current.templates.retire()
        # Under the cluster's index stamp: an index swapped in without an event, which the next
        # query's fast() would notice, is noticed by the answer memo too. (A table of an index
        # no longer current, which fast() does not read, none of whose answers it may send.)
        parent = self.cluster.index_stamp
        if index is not self.cluster.index:
            parent = StampType()
            parent.revoke()
        return DependentGeneration(index, templates_for(names), parent)

    def _build(self, req: Request, index: ClusterIndex, deps: set[Hashable], zone: str) -> bytes | None:
        """The response bytes, or None to pass the question to the next plugin."""
        q = req.query
        if q.qclass != dns.rdataclass.IN:
            return None
        if zone in self.mcs_zones:
            return self._build_mcs(req, index, deps, zone)
        serial = None if self.zone_serial is None else self.zone_serial.read(index)
        lookup = Lookup(index.view(deps), zone, self.options, serial)
        outcome = lookup.answer(req.qname, q.qtype)
        if outcome.name_error and self.cfg.fallthrough.applies(q.lname):
            return None
        if serial is not None and (not outcome.answer or q.qtype == dns.rdatatype.SOA):
            deps.add(SERIAL_DEP)  # the answer shows the serial, which the next change moves
        if not outcome.answer:
            negative = negative_answer(q, self._soa_record(zone, index.serial if serial is None else serial),
                                       outcome.name_error)
            if negative is not None:
                return negative
        response = respond(req.message, outcome, lookup.soa(lookup.zone_name))
        if self.options.pods == "insecure" and outcome.answer and _kind(req.qname, lookup.zone_name) == b"pod":
            return Synthesized(response)  # an address read from the name: any client can ask one per query
        return response

    def _build_mcs(self, req: Request, index: ClusterIndex, deps: set[Hashable], zone: str) -> bytes | None:
        """A ``multicluster`` zone: the clusterset's MCS rules over this stanza's cluster alone,
        the local one."""
        name = self.cluster.name
        merge = Merge([MergeSource(name, index.view(deps))], (name,), zone,
                      MergeOptions(ttl=self.cfg.ttl, local=name, mcs=True))
        outcome = merge.answer(req.qname, req.query.qtype)
        if outcome is None:  # only a cluster left out could say: never the case with one
            response = make_response(req.message, authoritative=False)
            response.set_rcode(dns.rcode.SERVFAIL)
            return render(response)
        if outcome.name_error and self.cfg.fallthrough.applies(req.query.lname):
            return None
        return respond(req.message, outcome, merge.soa(merge.zone_name), req.query)

    def _changed(self, index: ClusterIndex, keys: set[DepKey] | None) -> None:
        """The cluster's data changed: drop the answers that looked at what changed (and, when
        the zones are transferred, those showing the serial; and tell the transfer)."""
        gen = self.generation
        moved = self.zone_serial is not None and changes_transfer(keys)
        serial_shown = moved and self.zone_serial is not None and self.zone_serial.changed()
        if keys is not None:  # Services and Pods come and go one at a time
            SERVED_NAMES.announce(self, index.served_names())
        if gen.data is not index or keys is None:
            # A new index (a relist, a snapshot reloaded), or templates of an older one: a new
            # table now, not at the next query, so that the answer memo lets go of the old
            # table's answers at once (_generation retires it).
            self.generation = self._generation(index)
        else:
            gen.templates.invalidate({*keys, SERIAL_DEP} if serial_shown else keys)
        if moved:
            for zone in self.transfer_zones():
                for listener in self.zone_listeners:
                    listener(zone)

    # --- zone transfers (interkube.plugin.transfer.ZoneSource) -----------------------------

    def transfer_zones(self) -> tuple[str, ...]:
        """The zones a transfer can copy: not reverse zones, nor ``multicluster`` ones (CoreDNS
        copies those too; see docs/divergences.md)."""
        return tuple(z for z in self.zones if not is_reverse(z) and z not in self.mcs_zones)

    def zone_copy(self, zone: str) -> ZoneCopy | None:
        index = self.cluster.index
        if index is None or zone not in self.transfer_zones():
            return None
        serial = index.serial if self.zone_serial is None else self.zone_serial.read(index)
        return ZoneCopy(zone_soa(zone, serial, self.options), zone_records(index, zone, self.options))

    def watch_zones(self, listener: ZoneListener) -> None:
        """From now on the serial follows the changes (answers built before showed the index's)."""
        self.zone_listeners.append(listener)
        if self.zone_serial is None:
            self.zone_serial = ChangeSerial()
            self.generation = self._generation(self.cluster.index)

    # --- lifecycle -------------------------------------------------------------------------

    async def attach(self) -> None:
        """Start this stanza's cluster (or join the same one already running)."""
        if self.attached:
            return
        cluster = await self.registry.attach(self.cluster, self, self.configuration)
        self.attached = True
        if cluster is not self.cluster:
            self.cluster = cluster
            self.generation = self._generation(cluster.index)
        cluster.subscribe(self._changed)

    async def detach(self) -> None:
        SERVED_NAMES.announce(self, 0)
        if self.attached:
            self.attached = False
            self.cluster.unsubscribe(self._changed)
            await self.registry.detach(self.cluster, self)

    async def start(self) -> None:
        # The clusters of one server block start together, so that their first syncs overlap
        # instead of each waiting out the last one's startup_timeout.
        started = []
        try:
            for handler in self.group.handlers:
                if not handler.attached:
                    await handler.attach()
                    started.append(handler)
        except BaseException:
            for handler in started:
                await handler.detach()
            raise
        cluster = self.cluster
        if not await cluster.wait_synced(self.cfg.startup_timeout):
            log.warning("cluster %s: no first sync within %gs (startup_timeout); serving anyway, its "
                        "zones answer SERVFAIL until it syncs", cluster.name, self.cfg.startup_timeout)
        self.registry.publish(cluster)

    async def stop(self) -> None:
        await self.detach()

    def readiness(self) -> dict[str, bool]:
        return {f"{self.plugin}:{self.cluster.name}": self.cluster.synced}

    # --- autopath --------------------------------------------------------------------------

    def search_path(self, req: Request) -> SearchPath | None:
        """autopath's ``@kubernetes`` (CoreDNS's AutoPath): for a name in this stanza's zones,
        the search list of the pod with the client's address (its namespace's; the first pod
        the index has at that address); None without ``pods verified``, before the first sync,
        or for a client that is no pod."""
        zone = self.zones.match(req.query.lname)
        index = self.cluster.index
        if zone is None or index is None or self.cfg.pods != "verified":
            return None
        namespaces = index.pod_namespaces_at(client_ip(req))
        return self.search_paths.get(namespaces[0], zone) if namespaces else None


# --- setup -----------------------------------------------------------------------------------


class StanzaClaims(dict[str, tuple[object, object, str, str]]):
    """Cluster name -> (configuration, source key, source description, file:line) of the last
    stanza set up with that name, so that two stanzas of one configuration that give one name
    to two sources are refused at the second one's line, before anything starts."""


STANZA_CLAIMS = Kind("the cluster names claimed by kubernetes stanzas", StanzaClaims)


def claim(ctx: SetupContext, name: str, source: Source, where: str) -> None:
    claims = ctx.services.shared.get_or_create(STANZA_CLAIMS, None, StanzaClaims)
    first = claims.get(name)
    if first is not None and first[0] is ctx.configuration and first[1] != source.key:
        raise ctx.error(f"two kubernetes stanzas serve the cluster name {name!r} from different sources "
                        f"({first[2]} and {source.description}); give one a `cluster NAME` of its own "
                        f"(first at {first[3]})")
    claims[name] = (ctx.configuration, source.key, source.description, where)


def free_name(ctx: SetupContext, name: str, source: Source) -> str:
    """``name``, or ``name-2``, ``name-3``, ... when another source of this configuration has
    it: kubernetai stanzas may serve one zone from two clusters without a `cluster NAME`."""
    claims = ctx.services.shared.get_or_create(STANZA_CLAIMS, None, StanzaClaims)
    candidate, n = name, 1
    while True:
        first = claims.get(candidate)
        if first is None or first[0] is not ctx.configuration or first[1] == source.key:
            return candidate
        n += 1
        candidate = f"{name}-{n}"


def stanza_source(cfg: KubernetesConfig, ctx: SetupContext, name: str) -> Source:
    """Where the stanza reads its cluster: snapshot files, or the API (in-cluster, kubeconfig,
    endpoint), through worker 0 in a server with several workers."""
    filters = Filters(namespaces=cfg.namespaces, selector=cfg.labels, pods=cfg.pods == "verified",
                      endpoints=not cfg.noendpoints)
    if cfg.snapshot:
        return SnapshotSource(cfg.snapshot, filters, max_drop=cfg.snapshot_max_drop)
    if cfg.kubeconfig and cfg.endpoint:
        log.warning("%s: `kubeconfig` is used and `endpoint` is ignored (as CoreDNS does)", cfg.where)
    access = ApiAccess(kubeconfig=os.path.abspath(cfg.kubeconfig) if cfg.kubeconfig else None,
                       context=cfg.context, endpoint=None if cfg.kubeconfig else cfg.endpoint,
                       tls=None if cfg.kubeconfig else cfg.tls)
    source = live_source(access, filters, name)
    worker = ctx.services.worker
    if worker is not None and worker.shared_watch:
        return shared_source(source, name, worker)
    return source


def setup_stanza(cfg: KubernetesConfig, ctx: SetupContext, handler_class: type[KubernetesHandler] = KubernetesHandler,
                 *, unique_names: bool = False) -> KubernetesHandler:
    """Wire a stanza: its zones and cluster name, its source, its handler (of ``handler_class``,
    whose ``plugin`` names it). With ``unique_names``, a default cluster name another source of
    this configuration already serves gets a suffix (``-2``) instead of being refused.

    Setup reads what can be wrong in files (the kubeconfig and its certificates, the snapshot
    files) so that a mistake stops the configuration with the Corefile line and the file's own
    words; contacting the API waits for the handler's start.
    """
    zones = cfg.zones or ctx.zones
    primary = next((z for z in zones if not is_reverse(z)), None)
    if primary is None:
        raise ctx.error("needs a zone that is not a reverse zone (PTR answers are named in it)")
    if not cfg.zones:  # the server block's zones: known only now
        check_multicluster(cfg.multicluster, zones, ctx.error)
    name = cluster_name(cfg, zones)
    registry = cluster_registry(ctx.services.shared, ctx.services.metrics)
    source = stanza_source(cfg, ctx, name)
    if unique_names and not cfg.cluster:
        renamed = free_name(ctx, name, source)
        if renamed != name:
            log.info("%s: cluster %s is served from another source already; this one is %s", cfg.where,
                     name, renamed)
            name = renamed
            source = stanza_source(cfg, ctx, name)
    claim(ctx, name, source, cfg.where)
    cluster = registry.running(name, source.key)
    if cluster is None:
        cluster = Cluster(name, source, registry.stats(name))
        if isinstance(source, SnapshotSource):
            try:
                cluster.preload(source.load(cluster))
            except KubeError as exc:
                raise ctx.error(str(exc)) from exc
    options = Options(ttl=cfg.ttl, pods=cfg.pods, endpoint_pod_names=cfg.endpoint_pod_names,
                      ignore_empty_service=cfg.ignore_empty_service, primary_zone=primary,
                      local_ips=local_addresses(ctx.block.bind))
    group = ctx.block.shared.get_or_create(BLOCK_STANZAS, None, StanzaGroup)
    handler = handler_class(cfg, zones, options, cluster, registry, ctx.configuration, group)
    group.handlers.append(handler)
    search_path_sources(ctx.block.shared).add(handler.plugin, handler.search_path)
    ctx.block.clusters.append(name)
    ctx.on_startup(handler.start)
    ctx.on_shutdown(handler.stop)
    ctx.readiness(handler.readiness)
    return handler


__all__ = ["BLOCK_STANZAS", "STANZA_CLAIMS", "KubernetesHandler", "StanzaGroup", "setup_stanza"]
