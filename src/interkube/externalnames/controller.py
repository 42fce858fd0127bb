"""The controller: the source cluster's watch, reconcile passes into the target, metrics, /ready.

The source is read by the same machinery as the *kubernetes* plugin (:mod:`interkube.kube.live`:
paged list, watch with bookmarks, relist on 410 Gone, backoff, one log line per outage) into a
:class:`~interkube.kube.cluster.Cluster`, keeping Services and EndpointSlices only. Its listener
tells which Services changed (a Service or one of its EndpointSlices: the ``("s", ns, name)``
keys) or that everything may have (a relist).

While it acts (always, or while it holds the Lease), the controller runs passes:

* a *full* pass lists the target's Services (those of ``--namespace``, else all), sorts them into
  its own (labels) and everyone else's, and makes every change the plan asks for: at start, after
  a relist of the source, after a failed pass, and every ``--resync`` seconds (what a person or
  another tool changed in the target meanwhile is put right then);
* an *incremental* pass, for the namespaces whose Services changed, plans those namespaces again
  against what the controller knows of the target (its own writes keep that current; a watch of
  its own Services in the target, :class:`OwnedFilters`, tells it of one deleted or edited by
  hand, which is then read again and put right).

Writes run ``concurrency`` at a time. A hand-made Service in the way is a *conflict*: never
changed, counted, logged once with its name, and read again every ``conflict_recheck`` seconds
so that the name is taken over soon after its owner deletes it. A failed write is counted and
makes the next pass a full one, after a backoff.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from interkube.errors import ExternalNamesError, KubeError
from interkube.externalnames import plan
from interkube.externalnames.plan import CONFLICT, CREATE, DELETE, UPDATE, Change, Desired, Found, Naming, Skipped
from interkube.externalnames.target import ApiFailure, TargetApi
from interkube.kube.cluster import Cluster
from interkube.kube.filters import Filters
from interkube.kube.index import ClusterIndex, DepKey, Key
from interkube.kube.labels import EVERYTHING, Selector
from interkube.kube.live import TRANSIENT, describe_failure
from interkube.kube.objects import ENDPOINT_SLICES, SERVICES, Kind, Read, Record
from interkube.kube.registry import ClusterRegistry
from interkube.pkg.backoff import retry_delay
from interkube.pkg.metrics import DURATION_BUCKETS, NAMESPACE

log = logging.getLogger("interkube.externalnames")

PREFIX = f"{NAMESPACE}_externalnames_"


@dataclass(frozen=True)
class SourceFilters(Filters):
    """What the controller keeps of the source: Services (those ``service_selector`` selects,
    never the controller's own ExternalNames, which stand for a third cluster's Services) and
    their EndpointSlices (whatever their labels: the selector is the Services')."""

    service_selector: Selector = EVERYTHING

    def kinds(self) -> tuple[Kind[Any], ...]:
        return (SERVICES, ENDPOINT_SLICES)

    def keep(self, kind: Kind[Any], read: Read) -> Record | None:
        if self.namespaces and read.namespace not in self.namespaces:
            return None
        if kind is SERVICES and (read.labels.get(plan.MANAGED_BY_LABEL) == plan.MANAGER
                                 or not self.service_selector.matches(read.labels)):
            return None
        return read.record


@dataclass(frozen=True)
class OwnedFilters(Filters):
    """What the controller watches of the target: its own Services (its labels, sent to the API as
    the label selector), so that one deleted or edited by hand is put right at once rather than
    at the next full pass."""

    def kinds(self) -> tuple[Kind[Any], ...]:
        return (SERVICES,)


@dataclass(frozen=True)
class Settings:
    naming: Naming
    namespace: str | None = None        # only this namespace (source and target)
    create_namespaces: bool = False
    dry_run: bool = False
    resync: float = 300.0               # seconds between full passes
    #: Seconds between reads of the Services in conflict: the target watch follows only the
    #: controller's own Services, so one a person deletes would otherwise wait for the resync.
    conflict_recheck: float = 10.0
    concurrency: int = 16               # writes in flight
    backoff_initial: float = 0.5
    backoff_max: float = 30.0


class _Families:
    """The source cluster's *kubernetes* metrics (sync age, watch restarts, relists) next to ours."""

    def __init__(self, registry: ClusterRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


class Metrics:
    """The controller's metrics, in a registry of its own (tests run several controllers)."""

    def __init__(self, clusters: ClusterRegistry) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.changes = Counter(PREFIX + "changes", "Changes made to the target's Services, by action "
                               "(create, update, delete; with --dry-run: printed).", ["action"], registry=r)
        self.errors = Counter(PREFIX + "errors", "Calls to the target's API that failed, by action.",
                              ["action"], registry=r)
        self.conflicts = Gauge(PREFIX + "conflicts", "Target Services in the way of one the controller would "
                               "make (made by someone else): left alone.", registry=r)
        self.skipped = Gauge(PREFIX + "skipped", "Source objects the target cannot get now (an invalid name, a "
                             "name taken, a missing namespace without --create-namespaces).", registry=r)
        self.managed = Gauge(PREFIX + "managed", "ExternalName Services the controller keeps in the target.",
                             registry=r)
        self.leader = Gauge(PREFIX + "leader", "1 while this replica acts (holds the Lease, or runs "
                            "without one).", registry=r)
        self.passes = Histogram(PREFIX + "pass_duration_seconds", "Time of a reconcile pass, by kind (full: "
                                "the target listed; incremental: the namespaces changed).", ["kind"],
                                buckets=DURATION_BUCKETS, registry=r)
        for action in (CREATE, UPDATE, DELETE):
            self.changes.labels(action)
            self.errors.labels(action)
        for kind in ("full", "incremental"):
            self.passes.labels(kind)
        collector: Collector = _Families(clusters)
        r.register(collector)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _rescoped(old: set[Key], new: set[Key], namespaces: set[str] | None) -> set[Key]:
    """``old`` with the keys of ``namespaces`` (None: all) replaced by ``new``."""
    if namespaces is None:
        return new
    return {key for key in old if key[0] not in namespaces} | new


class PassFailed(KubeError):
    """Some writes of a pass failed (counted and logged); the next pass is a full one."""


class Controller:
    """Keeps the target's ExternalName Services in step with the source cluster's Services."""

    def __init__(self, settings: Settings, source: Cluster, target: TargetApi, *, out: TextIO | None = None,
                 clusters: ClusterRegistry | None = None, target_view: Cluster | None = None) -> None:
        """``clusters`` publishes the source's *kubernetes* metrics: give the source the stats
        object ``clusters.stats(name)`` so that they count its restarts and relists.
        ``target_view`` watches the controller's own Services in the target (OwnedFilters)."""
        self.settings = settings
        self.naming = settings.naming
        self.source = source
        self.target = target
        self.target_view = target_view
        #: Target Services a watch event touched: checked against what the controller knows
        #: before their namespace is planned again.
        self._touched: set[Key] = set()
        self.out = out or sys.stdout
        self.clusters = clusters or ClusterRegistry()
        self.clusters.publish(source)
        self.metrics = Metrics(self.clusters)
        #: What the target holds, as far as the controller knows: its own Services, and the
        #: others' (only those met: listed in a full pass, or found in the way of a create).
        self.owned: dict[Key, Found] = {}
        self.others: dict[Key, Found] = {}
        self._reported: dict[Key, str] = {}      # conflicts and skips logged, with the line
        #: Namespaces the target lacks (without --create-namespaces): found by a create in the
        #: full pass, not tried again before the next one; and those logged (once each).
        self._missing_namespaces: set[str] = set()
        self._warned_namespaces: set[str] = set()
        self._skipped: set[Key] = set()
        self._conflicts: set[Key] = set()
        self._dirty: set[str] = set()
        self._full = True
        self._wake = asyncio.Event()
        self._acting: asyncio.Task[None] | None = None
        self._passes_done = 0
        self._semaphore = asyncio.Semaphore(max(1, settings.concurrency))

    # --- readiness -------------------------------------------------------------------------

    @property
    def acting(self) -> bool:
        return self._acting is not None

    @property
    def ready(self) -> bool:
        """Synced with the source, and (while acting) one full pass made since acting began."""
        if not self.source.synced:
            return False
        return not self.acting or self._passes_done > 0

    # --- source changes --------------------------------------------------------------------

    def _changed(self, index: ClusterIndex, keys: set[DepKey] | None) -> None:
        if keys is None:
            self._full = True
        else:
            self._dirty.update(key[1] for key in keys if key[0] == "s")
        self._wake.set()

    def _target_changed(self, index: ClusterIndex, keys: set[DepKey] | None) -> None:
        # A relist of the target view tells nothing a full pass would not: the next resync sees it.
        if keys is None:
            return
        touched = {(key[1], key[2]) for key in keys if key[0] == "s"}
        if touched:
            self._touched |= touched
            self._dirty.update(ns for ns, _ in touched)
            self._wake.set()

    async def _refresh_touched(self, namespaces: set[str]) -> None:
        """Bring what the controller knows of the touched Services of ``namespaces`` up to date:
        dropped when gone, read again when the watch shows them other than known (someone
        edited one, or made one with the controller's labels). Its own writes show as known."""
        view = self.target_view.index if self.target_view is not None else None
        keys = {key for key in self._touched if key[0] in namespaces}
        self._touched -= keys
        if view is None:
            return
        for key in sorted(keys):
            seen, known = view.service(*key), self.owned.get(key)
            if seen is None:
                if known is not None:
                    log.info("externalnames: Service %s/%s was deleted in the target; making it again", *key)
                self.owned.pop(key, None)
            elif known is None or seen.external_name != known.external_name or seen.ports != known.ports:
                obj = await self.target.get_service(*key)
                found = plan.found_from(obj, self.naming) if obj is not None else None
                if found is not None and found.owned:
                    self.owned[key] = found
                else:
                    self.owned.pop(key, None)

    # --- passes ----------------------------------------------------------------------------

    def _index(self) -> ClusterIndex:
        index = self.source.index
        if index is None:
            raise ExternalNamesError(f"source cluster {self.source.name} has not synced")
        return index

    async def full_pass(self) -> list[Change]:
        """List the target, plan everything, make the changes; returns them."""
        started = time.perf_counter()
        owned: dict[Key, Found] = {}
        others: dict[Key, Found] = {}
        async for obj in self.target.list_services(self.settings.namespace):
            found = plan.found_from(obj, self.naming)
            (owned if found.owned else others)[found.key] = found
        self.owned, self.others = owned, others
        self._missing_namespaces = set()
        self._touched = set()
        desired, skipped = plan.desired_in(self._index(), self.naming, self.settings.namespace)
        todo = plan.changes(desired, owned, others)
        self._reported = {k: v for k, v in self._reported.items() if k in others or k in desired}
        await self._apply(todo, skipped, None)
        self.metrics.passes.labels("full").observe(time.perf_counter() - started)
        return todo

    async def namespace_pass(self, namespaces: Iterable[str]) -> list[Change]:
        """Plan ``namespaces`` again against what the controller knows; make the changes."""
        started = time.perf_counter()
        index = self._index()
        todo: list[Change] = []
        skipped: list[Skipped] = []
        namespaces = sorted(namespaces)
        if self._touched:
            await self._refresh_touched(set(namespaces))
        for ns in namespaces:
            desired, ns_skipped = plan.desired_in(index, self.naming, ns)
            keys = set(desired) | {key for key in self.owned if key[0] == ns}
            todo.extend(plan.changes(desired, self.owned, self.others, keys))
            skipped.extend(ns_skipped)
        await self._apply(todo, skipped, set(namespaces))
        self.metrics.passes.labels("incremental").observe(time.perf_counter() - started)
        return todo

    async def _apply(self, todo: Sequence[Change], skipped: Sequence[Skipped], namespaces: set[str] | None) -> None:
        """Make ``todo``; ``namespaces`` were planned (None: all of them, a full pass)."""
        for item in skipped:
            self._report_once((item.namespace, item.name),
                              f"externalnames: source {item.namespace}/{item.name} not mirrored: {item.reason}")
        self._skipped = _rescoped(self._skipped, {(item.namespace, item.name) for item in skipped}, namespaces)
        # Conflicts found while writing (a create meeting a Service made meanwhile) are added
        # to these as they come.
        self._conflicts = _rescoped(self._conflicts, {c.key for c in todo if c.action == CONFLICT}, namespaces)
        results = await asyncio.gather(*(self._make(change) for change in todo), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        self.metrics.managed.set(len(self.owned))
        self.metrics.conflicts.set(len(self._conflicts))
        self.metrics.skipped.set(len(self._skipped) + len(self._missing_namespaces))
        if self.settings.dry_run and namespaces is None:
            counts = {a: sum(1 for c in todo if c.action == a) for a in (CREATE, UPDATE, DELETE, CONFLICT)}
            print(f"dry run: {counts[CREATE]} to create, {counts[UPDATE]} to update, {counts[DELETE]} to delete, "
                  f"{counts[CONFLICT]} in conflict, {len(skipped)} skipped; nothing changed", file=self.out,
                  flush=True)
        for failure in failures:
            if not isinstance(failure, Exception):
                raise failure  # cancellation
        if failures:
            first = failures[0]
            said = str(first) if isinstance(first, KubeError) else describe_failure(first, self.target.server)
            raise PassFailed(f"{len(failures)} of {len(todo)} changes failed; the first: {said}")

    def _report_once(self, key: Key, line: str) -> None:
        if self._reported.get(key) != line:
            self._reported[key] = line
            log.warning("%s", line)

    async def _make(self, change: Change) -> None:
        async with self._semaphore:
            if change.action == CONFLICT:
                self._report_once(change.key, f"externalnames: conflict: {change.describe()}")
                if self.settings.dry_run:
                    print(change.describe(), file=self.out, flush=True)
                return
            if self.settings.dry_run:
                print(change.describe(), file=self.out, flush=True)
                self._pretend(change)
                self.metrics.changes.labels(change.action).inc()
                return
            try:
                done = await self._write(change)
            except BaseException:
                self.metrics.errors.labels(change.action).inc()
                raise
            if done is not None:
                self.metrics.changes.labels(done.action).inc()
                log.info("externalnames: %s", done.describe(done=True))

    def _pretend(self, change: Change) -> None:
        """Dry run: remember the change as made, so that a later pass does not print it again."""
        if change.want is None:
            self.owned.pop(change.key, None)
            return
        want = change.want
        self.owned[change.key] = Found(want.namespace, want.name, "", "", True, "ExternalName", want.external_name,
                                       want.ports, want.origin, plan.ownership_labels(self.naming))

    async def _write(self, change: Change) -> Change | None:
        """Make one change; returns the change made (an update may have become a create, a create
        a conflict), None when nothing was to be done."""
        key = change.key
        if change.action == DELETE:
            assert change.found is not None
            await self.target.delete_service(*key, change.found.uid, change.found.resource_version)
            self.owned.pop(key, None)
            return change
        want = change.want
        assert want is not None
        if change.action == UPDATE:
            assert change.found is not None
            try:
                made = await self.target.patch_service(*key, want.patch(change.found.resource_version, self.naming))
            except ApiFailure as exc:
                if exc.status not in (404, 409):
                    raise
                # Changed or deleted since it was read: read it again and decide again.
                return await self._redo(want)
            self.owned[key] = plan.found_from(made, self.naming)
            return change
        try:
            created = await self._create(want)
        except ApiFailure as exc:
            if exc.status != 409:
                raise
            return await self._redo(want)
        if created is None:
            return None
        self.owned[key] = plan.found_from(created, self.naming)
        self.others.pop(key, None)
        self._conflicts.discard(key)
        return change

    async def _create(self, want: Desired) -> dict[str, Any] | None:
        """Create ``want``; None when its namespace is missing (and is not to be created)."""
        if want.namespace in self._missing_namespaces:
            return None
        try:
            made = await self.target.create_service(want.body(self.naming))
        except ApiFailure as exc:
            if not exc.missing_namespace:
                raise
        else:
            self._warned_namespaces.discard(want.namespace)
            return made
        if not self.settings.create_namespaces:
            self._missing_namespaces.add(want.namespace)
            if want.namespace not in self._warned_namespaces:
                self._warned_namespaces.add(want.namespace)
                log.warning("externalnames: namespace %s does not exist in the target; its Services are not "
                            "mirrored (--create-namespaces creates it; checked again at each full pass)",
                            want.namespace)
            return None
        await self.target.create_namespace(want.namespace, plan.ownership_labels(self.naming))
        log.info("externalnames: created namespace %s", want.namespace)
        return await self.target.create_service(want.body(self.naming))

    async def _redo(self, want: Desired) -> Change | None:
        """The target changed under a write: read the object and make the change it needs now."""
        obj = await self.target.get_service(want.namespace, want.name)
        if obj is None:
            self.owned.pop(want.key, None)
            self.others.pop(want.key, None)
            made = await self._create(want)
            if made is None:
                return None
            self.owned[want.key] = plan.found_from(made, self.naming)
            return Change(CREATE, want.key, want, None)
        found = plan.found_from(obj, self.naming)
        if not found.owned:
            self.others[want.key] = found
            self.owned.pop(want.key, None)
            conflict = Change(CONFLICT, want.key, want, found)
            self._conflicts.add(want.key)
            self._report_once(want.key, f"externalnames: conflict: {conflict.describe()}")
            return None
        self.owned[want.key] = found
        if found.matches(want):
            return None
        made = await self.target.patch_service(*want.key, want.patch(found.resource_version, self.naming))
        self.owned[want.key] = plan.found_from(made, self.naming)
        return Change(UPDATE, want.key, want, found)

    # --- running ---------------------------------------------------------------------------

    async def start_source(self, timeout: float) -> None:
        """Start the source's list and watch and wait for its first sync."""
        self.source.subscribe(self._changed)
        await self.source.start()
        if not await self.source.wait_synced(timeout):
            raise ExternalNamesError(f"source cluster {self.source.name} did not sync in {timeout:g}s: "
                                     f"{self.source.down or 'no answer from ' + self.source.source.description}")

    async def watch_target(self) -> None:
        """Start the watch of the controller's own Services in the target (watch mode)."""
        if self.target_view is not None:
            self.target_view.subscribe(self._target_changed)
            await self.target_view.start()

    async def stop(self) -> None:
        await self.set_acting(False)
        self.source.unsubscribe(self._changed)
        await self.source.stop()
        if self.target_view is not None:
            self.target_view.unsubscribe(self._target_changed)
            await self.target_view.stop()

    async def set_acting(self, acting: bool) -> None:
        """Start or stop the passes (leader election turns this on and off)."""
        self.metrics.leader.set(1 if acting else 0)
        if acting and self._acting is None:
            self._full = True
            self._passes_done = 0
            self._acting = asyncio.get_running_loop().create_task(self._act(), name="externalnames")
        elif not acting and self._acting is not None:
            task, self._acting = self._acting, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def recheck_conflicts(self) -> None:
        """Read each Service in conflict again; one deleted (or now the controller's) lets its
        namespace be planned again, so that the controller's own Service is made there."""
        for key in sorted(self._conflicts):
            obj = await self.target.get_service(*key)
            if obj is not None and not plan.found_from(obj, self.naming).owned:
                continue
            log.info("externalnames: Service %s/%s in conflict is gone from the target; planning again", *key)
            self._conflicts.discard(key)
            self.others.pop(key, None)
            self._dirty.add(key[0])
        self.metrics.conflicts.set(len(self._conflicts))

    async def _act(self) -> None:
        failures = 0
        next_full = 0.0
        next_recheck = time.monotonic() + self.settings.conflict_recheck
        while True:
            now = time.monotonic()
            if self._conflicts and now >= next_recheck:
                next_recheck = now + self.settings.conflict_recheck
                try:
                    await self.recheck_conflicts()
                except (KubeError, *TRANSIENT):
                    self._full = True  # the full pass that follows reports it (and lists anyway)
                continue
            if not (self._full or self._dirty or now >= next_full):
                wake_at = min(next_full, next_recheck) if self._conflicts else next_full
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.0, wake_at - now))
                except TimeoutError:
                    pass
                continue
            if not self.source.synced:
                await self.source.wait_synced(3600.0)
                continue
            try:
                if self._full or now >= next_full:
                    self._full = False
                    self._dirty.clear()
                    await self.full_pass()
                    next_full = time.monotonic() + self.settings.resync
                else:
                    dirty, self._dirty = self._dirty, set()
                    await self.namespace_pass(dirty)
                self._passes_done += 1
                if failures:
                    log.info("externalnames: target cluster %s (%s) takes changes again", self.target.cluster,
                             self.target.server)
                failures = 0
            except (KubeError, *TRANSIENT) as exc:
                self._full = True
                if failures == 0:
                    said = str(exc) if isinstance(exc, KubeError) else describe_failure(exc, self.target.server)
                    log.warning("externalnames: target cluster %s: %s; trying again", self.target.cluster, said)
                failures += 1
                await asyncio.sleep(retry_delay(failures, first=self.settings.backoff_initial,
                                                cap=self.settings.backoff_max))
            except Exception:  # a bug must not stop the controller for good
                log.exception("externalnames: unexpected failure; a full pass follows")
                self._full = True
                failures += 1
                await asyncio.sleep(retry_delay(failures, first=self.settings.backoff_initial,
                                                cap=self.settings.backoff_max))
