"""One cluster's DNS data: stripped records and the lookups DNS makes on them.

A :class:`ClusterIndex` is built whole from a list (or a snapshot) and then changed one object
at a time by watch events. Records are immutable; a change replaces a record and updates the
few reverse maps it appears in, in one synchronous call, so that a reader on the event loop
never sees half of it. A relist builds a new index and the cluster swaps it in with one
assignment.

Every change reports its *dependency keys*: what a DNS answer may have looked at that this
change affects. Answers are built through an :class:`IndexView`, which records the keys of
every lookup made, so a cache of answers can drop exactly the answers a change affects:

* ``("s", ns, name)``  -- the Service ns/name: the Service itself or any of its EndpointSlices;
* ``("n", ns)``        -- whether namespace ns exists (a Namespace object, or Services, or Pods
  when they are kept);
* ``("i", ip)``        -- which Services (ClusterIP) and endpoints hold the address ip;
* ``("p", ip)``        -- which Pods have the address ip (``pods verified``);
* ``("e", ip)``        -- which Services have ip among their external addresses (k8s_external);
* ``("m", ns, name)``  -- the ServiceExport and ServiceImport ns/name.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Protocol, TypeVar

from interkube.kube.objects import (
    Endpoint,
    EndpointSlice,
    Namespace,
    Pod,
    Record,
    Service,
    ServiceExport,
    ServiceImport,
)

DepKey = tuple[str, ...]
Key = tuple[str, str]
T = TypeVar("T")
R = TypeVar("R", Service, EndpointSlice, Pod, Namespace, ServiceExport, ServiceImport)


class DepSink(Protocol):
    """Where a view records the key of each thing it read (a set of keys, or of any hashables)."""

    def add(self, key: DepKey, /) -> None: ...


def _of(kind: type[R], record: Record | None) -> R | None:
    """``record`` as the type its resource holds (None deletes)."""
    if record is None or isinstance(record, kind):
        return record
    raise TypeError(f"a {type(record).__name__} is not a {kind.__name__}")


def _add(multi: dict[str, T | list[T]], key: str, value: T) -> None:
    """Add ``value`` under ``key`` of a map holding one value, or a list when there are several.

    Nearly every address belongs to one object, so a single value is stored bare: a container
    per address would cost some 60 bytes times the number of addresses.
    """
    old = multi.get(key)
    if old is None:
        multi[key] = value
    elif isinstance(old, list):
        if value not in old:
            old.append(value)
    elif old != value:
        multi[key] = [old, value]


def _remove(multi: dict[str, T | list[T]], key: str, value: T) -> None:
    old = multi.get(key)
    if isinstance(old, list):
        if value in old:
            old.remove(value)
        if len(old) == 1:
            multi[key] = old[0]
        elif not old:
            del multi[key]
    elif old is not None and old == value:
        del multi[key]


def _values(multi: dict[str, T | list[T]], key: str) -> tuple[T, ...]:
    found = multi.get(key)
    if found is None:
        return ()
    if isinstance(found, list):
        return tuple(found)
    return (found,)


def _endpoint_map(slice_: EndpointSlice | None) -> dict[str, tuple[Endpoint, ...]]:
    out: dict[str, tuple[Endpoint, ...]] = {}
    if slice_ is not None:
        for ep in slice_.endpoints:
            out[ep.ip] = (*out.get(ep.ip, ()), ep)
    return out


class ClusterIndex:
    """The records of one cluster and the reverse maps DNS needs."""

    def __init__(self, serial: int | None = None) -> None:
        #: The SOA serial of answers from this index: when it was built (a full sync).
        self.serial = int(time.time()) if serial is None else serial
        self._services: dict[Key, Service] = {}
        self._slices: dict[Key, EndpointSlice] = {}
        self._slices_of: dict[Key, dict[str, EndpointSlice]] = {}
        self._canonical: dict[Key, Key] = {}
        self._namespaces: dict[str, int] = {}       # ns -> how many Services (and kept Pods)
        self._namespace_objects: set[str] = set()   # Namespace objects (when readable)
        self._cluster_ips: dict[str, Key | list[Key]] = {}
        self._external_ips: dict[str, Key | list[Key]] = {}
        self._endpoint_ips: dict[str, Key | list[Key]] = {}
        self._pod_ips: dict[str, str | tuple[str, ...]] = {}   # "ns/name" -> IP(s)
        self._pods_at: dict[str, str | list[str]] = {}   # IP -> "ns/name"
        self._exports: dict[Key, ServiceExport] = {}
        self._imports: dict[Key, ServiceImport] = {}

    # --- reading ---------------------------------------------------------------------------

    def service(self, namespace: str, name: str) -> Service | None:
        return self._services.get((namespace, name))

    def slices(self, namespace: str, service: str) -> tuple[EndpointSlice, ...]:
        """The EndpointSlices of a Service, by slice name (a stable order for answers)."""
        found = self._slices_of.get((namespace, service))
        if not found:
            return ()
        return tuple(found[name] for name in sorted(found))

    def namespace_exists(self, namespace: str) -> bool:
        """A Namespace object exists (CoreDNS's rule), or, where Namespaces cannot be read,
        or have not been seen yet, something that lives in one does."""
        return namespace in self._namespace_objects or namespace in self._namespaces

    def services_at(self, ip: str) -> tuple[Service, ...]:
        """Services with ``ip`` among their ClusterIPs."""
        return tuple(self._services[k] for k in _values(self._cluster_ips, ip) if k in self._services)

    def services_external_at(self, ip: str) -> tuple[Service, ...]:
        """Services with ``ip`` among their external addresses (externalIPs, load balancer)."""
        return tuple(self._services[k] for k in sorted(_values(self._external_ips, ip)) if k in self._services)

    def endpoints_at(self, ip: str) -> tuple[tuple[EndpointSlice, Endpoint], ...]:
        """Every endpoint address equal to ``ip``, with its slice (ready or not)."""
        out: list[tuple[EndpointSlice, Endpoint]] = []
        for key in sorted(_values(self._endpoint_ips, ip)):
            slice_ = self._slices.get(key)
            if slice_ is not None:
                out.extend((slice_, ep) for ep in slice_.endpoints if ep.ip == ip)
        return tuple(out)

    def pod_namespaces_at(self, ip: str) -> tuple[str, ...]:
        """Namespaces of the (non-terminating) pods whose IP is ``ip``."""
        return tuple(key.split("/", 1)[0] for key in _values(self._pods_at, ip))

    def service_export(self, namespace: str, name: str) -> ServiceExport | None:
        return self._exports.get((namespace, name))

    def service_import(self, namespace: str, name: str) -> ServiceImport | None:
        return self._imports.get((namespace, name))

    def services(self) -> Iterator[Service]:
        """Every Service (for whole-cluster consumers, not for answering one name)."""
        return iter(self._services.values())

    def records(self) -> Iterator[tuple[str, Key, Record]]:
        """Every record as (resource, key, record): what :meth:`put` needs to build an equal
        index (a worker that does not watch gets its data this way; see kube.shared)."""
        for key, svc in self._services.items():
            yield "services", key, svc
        for key, slice_ in self._slices.items():
            yield "endpointslices", key, slice_
        for pod_key, ips in self._pod_ips.items():
            namespace, name = pod_key.split("/", 1)
            more = () if isinstance(ips, str) else ips[1:]
            yield "pods", (namespace, name), Pod(namespace, name, ips if isinstance(ips, str) else ips[0], more)
        for name in self._namespace_objects:
            yield "namespaces", ("", name), Namespace(name)
        for key, export in self._exports.items():
            yield "serviceexports", key, export
        for key, imported in self._imports.items():
            yield "serviceimports", key, imported

    def counts(self) -> dict[str, int]:
        return {"services": len(self._services), "endpointslices": len(self._slices),
                "pods": len(self._pod_ips), "serviceexports": len(self._exports),
                "serviceimports": len(self._imports)}

    def served_names(self) -> int:
        """How many names the index answers with data, about: one per Service and per Pod (what
        the memos and template tables of the hot path are sized by; see interkube.dns.memo)."""
        return len(self._services) + len(self._pod_ips)

    def view(self, deps: DepSink) -> IndexView:
        """A reader that adds the key of every lookup it makes to ``deps``."""
        return IndexView(self, deps)

    # --- changing --------------------------------------------------------------------------

    def put(self, resource: str, key: Key, record: Record | None) -> set[DepKey]:
        """Set (or with None, delete) one object; returns the dependency keys it changed."""
        if resource == "services":
            return self.put_service(key, _of(Service, record))
        if resource == "endpointslices":
            return self.put_slice(key, _of(EndpointSlice, record))
        if resource == "pods":
            return self.put_pod(key, _of(Pod, record))
        if resource == "namespaces":
            return self.put_namespace(key, _of(Namespace, record))
        if resource == "serviceexports":
            return self._put_mcs(self._exports, key, _of(ServiceExport, record))
        if resource == "serviceimports":
            return self._put_mcs(self._imports, key, _of(ServiceImport, record))
        raise ValueError(f"unknown resource {resource!r}")

    def _count_namespace(self, namespace: str, delta: int, changed: set[DepKey]) -> None:
        count = self._namespaces.get(namespace, 0) + delta
        if count > 0:
            self._namespaces[namespace] = count
        else:
            self._namespaces.pop(namespace, None)
        if (count > 0) != (count - delta > 0):
            changed.add(("n", namespace))

    def put_service(self, key: Key, new: Service | None) -> set[DepKey]:
        old = self._services.get(key)
        if old == new:
            return set()
        changed: set[DepKey] = {("s", *key)}
        if new is None:
            del self._services[key]
        else:
            self._services[key] = new
        if (old is None) != (new is None):
            self._count_namespace(key[0], 1 if old is None else -1, changed)
        old_ips = set(old.cluster_ips) if old is not None else set()
        new_ips = set(new.cluster_ips) if new is not None else set()
        for ip in old_ips - new_ips:
            _remove(self._cluster_ips, ip, key)
        for ip in new_ips - old_ips:
            _add(self._cluster_ips, ip, key)
        # PTR answers for addresses the Service gained or lost; the Service key covers the rest.
        changed.update(("i", ip) for ip in old_ips ^ new_ips)
        old_ext = set(old.external_ips) if old is not None else set()
        new_ext = set(new.external_ips) if new is not None else set()
        for ip in old_ext - new_ext:
            _remove(self._external_ips, ip, key)
        for ip in new_ext - old_ext:
            _add(self._external_ips, ip, key)
        changed.update(("e", ip) for ip in old_ext ^ new_ext)
        return changed

    def put_slice(self, key: Key, new: EndpointSlice | None) -> set[DepKey]:
        old = self._slices.get(key)
        if old == new:
            return set()
        changed: set[DepKey] = set()
        if old is not None:
            changed.add(("s", key[0], old.service))
            members = self._slices_of.get((key[0], old.service))
            if members is not None:
                members.pop(key[1], None)
                if not members:
                    del self._slices_of[(key[0], old.service)]
        if new is None:
            self._slices.pop(key, None)
            key = self._canonical.pop(key, key)
        else:
            # One key object per slice, shared by every address of the slice in the reverse map.
            key = self._canonical.setdefault(key, key)
            self._slices[key] = new
            changed.add(("s", key[0], new.service))
            self._slices_of.setdefault((key[0], new.service), {})[key[1]] = new
        before, after = _endpoint_map(old), _endpoint_map(new)
        for ip in before.keys() - after.keys():
            _remove(self._endpoint_ips, ip, key)
        for ip in after.keys() - before.keys():
            _add(self._endpoint_ips, ip, key)
        # Only addresses whose endpoints changed: a readiness flip of one pod in a slice of a
        # hundred invalidates one PTR answer, not a hundred.
        changed.update(("i", ip) for ip in before.keys() | after.keys() if before.get(ip) != after.get(ip))
        if old is not None and new is not None and old.service != new.service:
            changed.update(("i", ip) for ip in after)
        return changed

    def put_pod(self, key: Key, new: Pod | None) -> set[DepKey]:
        pod_key = f"{key[0]}/{key[1]}"
        old = self._pod_ips.get(pod_key)
        old_ips = () if old is None else (old,) if isinstance(old, str) else old
        new_ips = new.ips if new is not None else ()
        if old_ips == new_ips:
            return set()
        changed: set[DepKey] = set()
        for ip in old_ips:
            _remove(self._pods_at, ip, pod_key)
        for ip in new_ips:
            _add(self._pods_at, ip, pod_key)
        changed.update(("p", ip) for ip in set(old_ips) ^ set(new_ips))
        if new_ips:
            # Nearly every pod has one address: kept bare, as the reverse maps keep theirs.
            self._pod_ips[pod_key] = new_ips[0] if len(new_ips) == 1 else new_ips
        else:
            self._pod_ips.pop(pod_key, None)
        if bool(old_ips) != bool(new_ips):
            self._count_namespace(key[0], 1 if not old_ips else -1, changed)
        return changed

    def put_namespace(self, key: Key, new: Namespace | None) -> set[DepKey]:
        name = key[1]
        before = self.namespace_exists(name)
        if new is None:
            self._namespace_objects.discard(name)
        else:
            self._namespace_objects.add(new.name)
        return {("n", name)} if self.namespace_exists(name) != before else set()

    @staticmethod
    def _put_mcs(table: dict[Key, T], key: Key, new: T | None) -> set[DepKey]:
        if table.get(key) == new:
            return set()
        if new is None:
            del table[key]
        else:
            table[key] = new
        return {("m", *key)}


class IndexView:
    """The reading half of a :class:`ClusterIndex`, recording what was looked at."""

    __slots__ = ("index", "deps")

    def __init__(self, index: ClusterIndex, deps: DepSink) -> None:
        self.index = index
        self.deps = deps

    @property
    def serial(self) -> int:
        return self.index.serial

    def service(self, namespace: str, name: str) -> Service | None:
        self.deps.add(("s", namespace, name))
        return self.index.service(namespace, name)

    def slices(self, namespace: str, service: str) -> tuple[EndpointSlice, ...]:
        self.deps.add(("s", namespace, service))
        return self.index.slices(namespace, service)

    def namespace_exists(self, namespace: str) -> bool:
        self.deps.add(("n", namespace))
        return self.index.namespace_exists(namespace)

    def services_at(self, ip: str) -> tuple[Service, ...]:
        self.deps.add(("i", ip))
        return self.index.services_at(ip)

    def endpoints_at(self, ip: str) -> tuple[tuple[EndpointSlice, Endpoint], ...]:
        self.deps.add(("i", ip))
        return self.index.endpoints_at(ip)

    def services_external_at(self, ip: str) -> tuple[Service, ...]:
        self.deps.add(("e", ip))
        return self.index.services_external_at(ip)

    def pod_namespaces_at(self, ip: str) -> tuple[str, ...]:
        self.deps.add(("p", ip))
        return self.index.pod_namespaces_at(ip)

    def service_export(self, namespace: str, name: str) -> ServiceExport | None:
        self.deps.add(("m", namespace, name))
        return self.index.service_export(namespace, name)

    def service_import(self, namespace: str, name: str) -> ServiceImport | None:
        self.deps.add(("m", namespace, name))
        return self.index.service_import(namespace, name)
