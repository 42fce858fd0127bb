"""The running proxy: clusters feeding Service ports, one sync loop writing nftables.

Each configured cluster is an :class:`interkube.kube.cluster.Cluster` fed by the same sources
as the kubernetes plugin (live list+watch, or snapshot files). A change to a Service or an
EndpointSlice marks that Service dirty; the sync loop recomputes dirty Services, works out which
element keys (VIP, protocol, port) changed, and writes one transaction with just those changes.
Changes that arrive while nft runs go into the next transaction together.

The first sync waits until every cluster has its data, then replaces whatever table is there
(one left by a crash, or none) in one batch. A cluster whose source fails keeps its Services as
they were last seen: nothing is removed until its data says so. A failed transaction changes
nothing (nft applies all or nothing); the next attempt, after a back-off, rebuilds the tables.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from interkube.errors import ConfigError, InterkubeError, KubeError
from interkube.kube.access import ApiAccess
from interkube.kube.cluster import Cluster, Source
from interkube.kube.filters import Filters
from interkube.kube.index import ClusterIndex, DepKey
from interkube.kube.live import LiveOptions, live_source
from interkube.kube.snapshot import SnapshotSource
from interkube.pkg.backoff import retry_delay
from interkube.proxy import conntrack, nft, rules
from interkube.proxy.config import ClusterConfig, ProxyConfig
from interkube.proxy.config import load as load_config
from interkube.proxy.rules import Contribution, Key, ServicePort, Transaction
from interkube.server import collector

log = logging.getLogger("interkube.proxy")

FKey = tuple[int, Key]                  # (family, element key)
SvcKey = tuple[str, str]                # (namespace, name)


def make_source(cluster: ClusterConfig, live_options: LiveOptions | None = None,
                snapshot_interval: float | None = None) -> Source:
    filters = Filters()
    if cluster.snapshot:
        interval = None if snapshot_interval is None else (lambda: snapshot_interval)
        return SnapshotSource(cluster.snapshot, filters, interval)
    return live_source(ApiAccess(kubeconfig=cluster.kubeconfig, context=cluster.context), filters,
                       cluster.name, live_options)


@dataclass
class ClusterState:
    config: ClusterConfig
    cluster: Cluster
    priority: int
    ports: dict[SvcKey, list[ServicePort]] = field(default_factory=dict)
    dirty: set[SvcKey] | None = None     # None: every Service (after a full list)
    skipped: dict[str, int] = field(default_factory=dict)
    #: Programmed (winning) Service ports and their endpoints, per family.
    services: dict[int, int] = field(default_factory=lambda: {4: 0, 6: 0})
    endpoints: dict[int, int] = field(default_factory=lambda: {4: 0, 6: 0})


class Proxy:
    """Keeps ``ip interkube`` and ``ip6 interkube`` equal to the clusters' Services."""

    def __init__(self, config: ProxyConfig, *, binary: str | None = None,
                 live_options: LiveOptions | None = None, snapshot_interval: float | None = None) -> None:
        self.config = config
        self.binary = binary or nft.nft_binary()
        # Winners first, then the order of the file: the first claimant of an address has it.
        order = sorted(range(len(config.clusters)), key=lambda i: (not config.clusters[i].wins, i))
        self.clusters: dict[str, ClusterState] = {}
        for priority, i in enumerate(order):
            c = config.clusters[i]
            self.clusters[c.name] = ClusterState(c, Cluster(c.name, make_source(c, live_options, snapshot_interval)),
                                                 priority)
        self.claims: dict[FKey, list[ServicePort]] = {}
        self.programmed: dict[FKey, Contribution] = {}
        self.winners: dict[FKey, ServicePort] = {}
        self.dirty_keys: set[FKey] = set()
        self.rebuild = True
        self.synced_once = False
        self.failures_in_a_row = 0
        self.last_error: str | None = None
        #: The last transaction applied: kind, lines, seconds spent building it and in nft.
        self.last_sync: dict[str, Any] = {}
        self._wake = asyncio.Event()
        self.registry = CollectorRegistry()
        self.sync_seconds = Histogram("interkube_proxy_sync_duration_seconds",
                                      "Time to compute and apply one nftables transaction, per cluster it changed.",
                                      ["cluster", "kind"], registry=self.registry,
                                      buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.txn_failures = Counter("interkube_proxy_transaction_failures",
                                    "nftables transactions refused, per cluster whose changes were in them.",
                                    ["cluster"], registry=self.registry)
        self.registry.register(_StateCollector(self))

    # --- feeding ---------------------------------------------------------------------------

    def _listener(self, state: ClusterState) -> Callable[[ClusterIndex, set[DepKey] | None], None]:
        def changed(index: ClusterIndex, keys: set[DepKey] | None) -> None:
            if keys is None:
                state.dirty = None
            elif state.dirty is not None:
                state.dirty.update((k[1], k[2]) for k in keys if k[0] == "s" and len(k) == 3)
            else:
                return
            self._wake.set()
        return changed

    def _skip(self, state: ClusterState) -> rules.Skip:
        def skip(reason: str, ident: str) -> None:
            state.skipped[reason] = state.skipped.get(reason, 0) + 1
            log.warning("cluster %s: skipping Service %s: %s", state.config.name, ident, _REASONS[reason])
        return skip

    def _recompute(self) -> set[str]:
        """Recompute dirty Services; returns the clusters whose ports changed."""
        touched: set[str] = set()
        for name, state in self.clusters.items():
            index = state.cluster.index
            if index is None:
                continue
            dirty = state.dirty
            if dirty is not None and not dirty:
                continue
            state.dirty = set()
            if dirty is None:
                keys = set(state.ports) | {(s.namespace, s.name) for s in index.services()}
                state.skipped = {}
            else:
                keys = dirty
            skip = self._skip(state)
            for key in keys:
                svc = index.service(*key)
                new = (rules.service_ports(name, index, svc, state.config.service_cidrs, skip)
                       if svc is not None else [])
                old = state.ports.get(key, [])
                if old == new:
                    continue
                touched.add(name)
                for sp in old:
                    fkey = (sp.family, sp.key)
                    claim = self.claims.get(fkey, [])
                    if sp in claim:
                        claim.remove(sp)
                    if not claim:
                        self.claims.pop(fkey, None)
                    self.dirty_keys.add(fkey)
                for sp in new:
                    fkey = (sp.family, sp.key)
                    claim = self.claims.setdefault(fkey, [])
                    claim.append(sp)
                    if len(claim) > 1:
                        claim.sort(key=self._claim_order)
                        if claim[0] is sp or claim[1] is sp:
                            log.warning("%s and %s claim %s/%s %s: %s has it", claim[0].label, claim[1].label,
                                        sp.vip, sp.protocol, sp.port, claim[0].cluster)
                    self.dirty_keys.add(fkey)
                if new:
                    state.ports[key] = new
                else:
                    state.ports.pop(key, None)
        return touched

    def _claim_order(self, sp: ServicePort) -> tuple[int, str, str, str]:
        return (self.clusters[sp.cluster].priority, sp.namespace, sp.service, sp.port_name)

    # --- syncing ---------------------------------------------------------------------------

    def _transaction(self) -> tuple[str, dict[FKey, Contribution | None], dict[FKey, ServicePort | None]]:
        txns = {f: Transaction(f) for f in rules.FAMILIES}
        contributions: dict[FKey, Contribution | None] = {}
        winners: dict[FKey, ServicePort | None] = {}
        if self.rebuild:
            keys: set[FKey] = set(self.claims)
            for family, txn in txns.items():
                txn.header = rules.base_table(family, self.config.hooks, self.config.masquerade, self.config.mark)
        else:
            keys = self.dirty_keys
        for fkey in keys:
            claim = self.claims.get(fkey)
            winner = claim[0] if claim else None
            new = rules.contribution(winner) if winner is not None else None
            old = None if self.rebuild else self.programmed.get(fkey)
            txns[fkey[0]].change(fkey[1], old, new)
            contributions[fkey] = new
            winners[fkey] = winner
        return rules.render(txns.values()), contributions, winners

    async def sync(self) -> bool:
        """Apply what changed since the last sync; False when nft refused it."""
        start = time.perf_counter()
        touched = self._recompute()
        if not self.rebuild and not self.dirty_keys:
            return True
        kind = "full" if self.rebuild else "update"
        involved = set(self.clusters) if self.rebuild else (touched | {w.cluster for w in self._dirty_winners()})
        text, contributions, winners = self._transaction()
        computed = time.perf_counter()
        try:
            if text:
                await nft.apply(text, self.binary)
        except nft.NftFailed as exc:
            self.failures_in_a_row += 1
            self.last_error = str(exc)
            for name in involved or set(self.clusters):
                self.txn_failures.labels(name).inc()
            log.error("transaction refused (%s sync, %d lines, nothing applied): %s", kind, text.count("\n"), exc)
            self.rebuild = True
            return False
        gone = self._udp_endpoints_gone(winners)
        if self.rebuild:
            self.programmed = {}
            self.winners = {}
            for state in self.clusters.values():
                state.services = {4: 0, 6: 0}
                state.endpoints = {4: 0, 6: 0}
        for fkey, contribution in contributions.items():
            self._count(self.winners.get(fkey), -1)
            winner = winners[fkey]
            self._count(winner, 1)
            if contribution is None or winner is None:
                self.programmed.pop(fkey, None)
                self.winners.pop(fkey, None)
            else:
                self.programmed[fkey] = contribution
                self.winners[fkey] = winner
        self.dirty_keys = set()
        elapsed = time.perf_counter() - start
        self.last_sync = {"kind": kind, "lines": text.count("\n"), "compute_seconds": computed - start,
                          "nft_seconds": elapsed - (computed - start)}
        for name in involved:
            self.sync_seconds.labels(name, kind).observe(elapsed)
        if self.rebuild:
            log.info("programmed %d Service ports (%s) in %.3fs", len(self.programmed),
                     ", ".join(f"{n}: {s.services[4] + s.services[6]}" for n, s in self.clusters.items()), elapsed)
        self.rebuild = False
        self.synced_once = True
        self.failures_in_a_row = 0
        self.last_error = None
        if gone:
            await self._forget_udp(gone)
        return True

    def _udp_endpoints_gone(self, winners: dict[FKey, ServicePort | None]) -> set[tuple[str, int]]:
        """Endpoints of UDP Service ports that the transaction takes away."""
        gone: set[tuple[str, int]] = set()
        for fkey, new in winners.items():
            old = self.winners.get(fkey)
            if old is not None and old.protocol == "udp":
                kept = set(new.endpoints) if new is not None else set()
                gone.update((b.ip, b.port) for b in old.endpoints if b not in kept)
        return gone

    async def _forget_udp(self, gone: set[tuple[str, int]]) -> None:
        try:
            deleted = await asyncio.to_thread(conntrack.forget_udp, gone)
        except OSError as exc:
            log.warning("cannot remove UDP conntrack entries of %d endpoints that went away: %s", len(gone), exc)
            return
        if deleted:
            log.debug("removed %d UDP conntrack entries of endpoints that went away", deleted)

    def _dirty_winners(self) -> list[ServicePort]:
        return [w for k in self.dirty_keys if (w := self.winners.get(k)) is not None]

    def _count(self, sp: ServicePort | None, sign: int) -> None:
        if sp is None:
            return
        state = self.clusters[sp.cluster]
        state.services[sp.family] += sign
        state.endpoints[sp.family] += sign * len(sp.endpoints)

    async def run_syncs(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Cleared before the sync: a change made while nft runs sets it again.
            self._wake.clear()
            if not self.synced_once and not all(s.cluster.synced for s in self.clusters.values()):
                # The first transaction replaces the table whole: with every cluster's data.
                await _wait_either(stop, self._wake, None)
                continue
            rebuilding = self.rebuild
            if not await self.sync():
                delay = retry_delay(self.failures_in_a_row, first=0.5, cap=30.0)
                await _wait_either(stop, None, delay)
                continue
            if rebuilding:
                settle_memory()
            if self._pending():
                continue
            await _wait_either(stop, self._wake, None)

    def _pending(self) -> bool:
        return bool(self.dirty_keys) or any(s.dirty is None or s.dirty for s in self.clusters.values()
                                            if s.cluster.synced)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        for state in self.clusters.values():
            state.cluster.subscribe(self._listener(state))
            state.dirty = None
        for state in self.clusters.values():
            try:
                await state.cluster.start()
            except KubeError as exc:
                raise ConfigError(f"cluster {state.config.name}: {exc}", *_where(state.config)) from None

    async def stop(self) -> None:
        for state in self.clusters.values():
            await state.cluster.stop()

    def remove_tables(self) -> None:
        nft.apply_sync(rules.delete_tables(), self.binary)

    # --- reporting -------------------------------------------------------------------------

    def ready(self, cluster: str | None = None) -> tuple[bool, list[str]]:
        lines: list[str] = []
        ok = self.synced_once
        if not self.synced_once:
            lines.append("tables: not programmed yet" + (f" ({self.last_error})" if self.last_error else ""))
        elif self.last_error:
            lines.append(f"tables: last transaction refused: {self.last_error}")
            ok = False
        for name, state in self.clusters.items():
            if cluster is not None and name != cluster:
                continue
            c = state.cluster
            if not c.synced:
                lines.append(f"cluster {name}: no data yet" + (f": {c.down}" if c.down else ""))
                ok = False
            elif c.down:
                lines.append(f"cluster {name}: down ({c.down}); keeping its rules of {c.sync_age() or 0:.0f}s ago")
                ok = False
            else:
                lines.append(f"cluster {name}: ok")
        return ok, lines

    def status(self) -> dict[str, Any]:
        clusters = {}
        for name, state in self.clusters.items():
            c = state.cluster
            clusters[name] = {"synced": c.synced, "down": c.down, "data_age": c.sync_age(),
                              "services": state.services[4] + state.services[6],
                              "endpoints": state.endpoints[4] + state.endpoints[6],
                              "skipped": dict(state.skipped), "source": c.source.description}
        services = [{"service": sp.label, "cluster": sp.cluster, "family": rules.FAMILIES[sp.family],
                     "vip": sp.vip, "protocol": sp.protocol, "port": sp.port,
                     "endpoints": [str(b) for b in sp.endpoints], "affinity": sp.affinity,
                     "rejects": not sp.endpoints}
                    for sp in sorted(self.winners.values(), key=lambda s: (s.label, s.vip))]
        return {"programmed": self.synced_once, "last_error": self.last_error, "last_sync": self.last_sync,
                "clusters": clusters,
                "services": services}


_REASONS = {"protocol": "a port's protocol is not TCP, UDP or SCTP",
            "port": "a port is not in 1-65535",
            "outside service_cidr": "a ClusterIP lies outside the cluster's service_cidr"}


def _where(c: ClusterConfig) -> tuple[str, int | None]:
    file, _, line = c.where.rpartition(":")
    return (file, int(line)) if line.isdigit() else (c.where, None)


async def _wait_either(stop: asyncio.Event, other: asyncio.Event | None, timeout: float | None) -> None:
    waits = [asyncio.ensure_future(stop.wait())]
    if other is not None:
        waits.append(asyncio.ensure_future(other.wait()))
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


class _StateCollector:
    """Gauges read at scrape time from the proxy's state."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        services = GaugeMetricFamily("interkube_proxy_services", "Service ports programmed, per cluster and family.",
                                     labels=["cluster", "family"])
        endpoints = GaugeMetricFamily("interkube_proxy_endpoints",
                                      "Endpoints behind the programmed Service ports, per cluster and family.",
                                      labels=["cluster", "family"])
        up = GaugeMetricFamily("interkube_proxy_cluster_up",
                               "1 while the cluster's source keeps its data current, 0 while it fails "
                               "(its rules stay as last seen).", labels=["cluster"])
        age = GaugeMetricFamily("interkube_proxy_cluster_data_age_seconds",
                                "Seconds since the cluster's data was last known current.", labels=["cluster"])
        skipped = CounterMetricFamily("interkube_proxy_skipped_services",
                                      "Services left out because the proxy cannot program them, per reason "
                                      "(malformed objects the decoder refused count as reason malformed).",
                                      labels=["cluster", "reason"])
        for name, state in self.proxy.clusters.items():
            for family, fam in rules.FAMILIES.items():
                services.add_metric([name, fam], state.services[family])
                endpoints.add_metric([name, fam], state.endpoints[family])
            c = state.cluster
            up.add_metric([name], 1.0 if c.synced and not c.down else 0.0)
            age.add_metric([name], c.sync_age() or 0.0)
            for reason, n in state.skipped.items():
                skipped.add_metric([name, reason], n)
            skipped.add_metric([name, "malformed"], c.stats.skipped.get("services", 0))
        return [services, endpoints, up, age, skipped]


def settle_memory() -> None:
    """After a full sync: what it built (the clusters' data, the programmed contributions) lives
    until the next one, so it is moved out of the garbage collector's way: a full collection
    walking it took 20-80 ms at 10,000 Services, added to any update it came in the middle of."""
    collector.settle()


# --- the process ---------------------------------------------------------------------------------


class Announcer:
    """Adds the clusters' Service ranges to a dummy interface (made if missing) and takes them
    away again on a clean shutdown."""

    def __init__(self, device: str, networks: list[str]) -> None:
        self.device = device
        self.networks = networks
        self.created = False

    def _ip(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["ip", *argv], capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise InterkubeError(f"announce {self.device}: ip {' '.join(argv)}: {proc.stderr.strip()}")
        return proc

    def start(self) -> None:
        if self._ip("link", "show", "dev", self.device, check=False).returncode != 0:
            made = self._ip("link", "add", self.device, "type", "dummy", check=False)
            if made.returncode != 0:
                raise InterkubeError(f"announce {self.device}: cannot make a dummy interface "
                                     f"({made.stderr.strip()}); make {self.device} beforehand (any type)")
            self.created = True
        self._ip("link", "set", self.device, "up")
        for network in self.networks:
            self._ip("addr", "replace", network, "dev", self.device)
        log.info("announcing %s on %s", ", ".join(self.networks), self.device)

    def stop(self) -> None:
        if self.created:
            self._ip("link", "del", self.device, check=False)
            return
        for network in self.networks:
            self._ip("addr", "del", network, "dev", self.device, check=False)


async def serve_http(proxy: Proxy, host: str, port: int) -> Any:
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(proxy.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def ready(request: web.Request) -> web.Response:
        cluster = request.match_info.get("cluster")
        if cluster is not None and cluster not in proxy.clusters:
            return web.Response(status=404, text=f"no cluster {cluster}\n")
        ok, lines = proxy.ready(cluster)
        return web.Response(status=200 if ok else 503, text="\n".join(lines) + "\n")

    async def status(_: web.Request) -> web.Response:
        return web.Response(text=json.dumps(proxy.status(), indent=1) + "\n", content_type="application/json")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/ready", ready)
    app.router.add_get("/ready/{cluster}", ready)
    app.router.add_get("/status", status)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host or None, port)
    await site.start()
    log.info("http on %s:%d (/metrics, /ready, /status)", host or "*", port)
    return runner


async def run(config: ProxyConfig, **kw: Any) -> int:
    """Run until SIGTERM or SIGINT; then remove the tables (a crash leaves them working)."""
    proxy = Proxy(config, **kw)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    restart: list[ProxyConfig] = []

    def reload() -> None:
        try:
            restart.append(load_config(config.file))
        except InterkubeError as exc:
            log.error("SIGHUP: keeping the running configuration: %s", exc)
            return
        stop.set()

    loop.add_signal_handler(signal.SIGHUP, reload)
    announcer = None
    runner = None
    syncs: asyncio.Task[None] | None = None
    try:
        await proxy.start()
        if config.http:
            runner = await serve_http(proxy, *config.http)
        if config.announce:
            announcer = Announcer(config.announce, [str(n) for c in config.clusters for n in c.service_cidrs])
            announcer.start()
        syncs = asyncio.create_task(proxy.run_syncs(stop))
        await stop.wait()
        if not restart:
            log.info("stopping: removing tables %s", ", ".join(f"{f} {rules.TABLE}" for f in rules.FAMILIES.values()))
    finally:
        if syncs is not None:
            syncs.cancel()
            await asyncio.gather(syncs, return_exceptions=True)
        await proxy.stop()
        if runner is not None:
            await runner.cleanup()
    if restart:
        # The tables stay while the process runs again with the new file: its first
        # transaction replaces them whole, so traffic never meets a missing rule.
        log.info("SIGHUP: running again with %s (the tables stay until replaced)", config.file)
        logging.shutdown()
        os.execv(sys.executable, sys.orig_argv)
    proxy.remove_tables()
    if announcer is not None:
        announcer.stop()
    return 0
