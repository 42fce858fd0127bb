"""What the target cluster should hold, and the changes that get it there (pure, no I/O).

For each Service of the source cluster's index the target gets an ExternalName Service of the
same namespace and name, pointing at the name interkube serves for it in the target's DNS:

* ``<svc>.<ns>.svc.<domain>`` with a per-cluster zone (``cluster.<source>``, a *kubernetes*
  stanza reading the source cluster);
* for a headless Service, one more per ready endpoint with a hostname, named by the hostname
  (a StatefulSet's pod name, unique in its namespace) and pointing at the endpoint's own name:
  ``<host>.<svc>.<ns>.svc.<domain>``, or in a merged zone (*clusterset*: ``cluster.all``,
  ``clusterset.local``) ``<host>.<source>.<svc>.<ns>.svc.<domain>``.

Never the source's ``cluster.local`` (the target's DNS would answer it from the target's own
data) and never an address (ExternalName holds host names only). Ports are copied.

What the controller made carries :data:`MANAGED_BY` and :data:`SOURCE_LABEL` (so that a
controller only ever changes its own objects, and two controllers for two source clusters share
a target) and the :data:`ORIGIN` annotation (the source object it stands for).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from interkube.kube.dnsrecords import is_ready
from interkube.kube.index import ClusterIndex, Key
from interkube.kube.objects import Port, Service

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "interkube-externalnames"
SOURCE_LABEL = "externalnames.interkube.io/source-cluster"
ORIGIN = "externalnames.interkube.io/origin"

#: Zones that merge several clusters (the *clusterset* plugin), where an endpoint's own name
#: holds its cluster: ``<host>.<cluster>.<svc>.<ns>.svc.<zone>``.
MERGED_DOMAINS = frozenset({"cluster.all", "clusterset.local"})

#: A Service name (DNS-1035 label) and an ExternalName (DNS-1123 subdomain), as the API validates.
_SERVICE_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_SUBDOMAIN_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
#: What a label value may hold (the source cluster's name goes into one).
LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


def valid_external_name(name: str) -> bool:
    return len(name) <= 253 and all(_SUBDOMAIN_LABEL.fullmatch(label) for label in name.split("."))


@dataclass(frozen=True)
class Naming:
    """How the target's DNS names the source cluster's objects."""

    source: str         # the source cluster's name (a label value)
    domain: str         # the zone the target's interkube serves the source under, no final dot

    @classmethod
    def of(cls, source: str, domain: str | None = None) -> Naming:
        return cls(source, (domain or f"cluster.{source}").lower().strip("."))

    @property
    def merged(self) -> bool:
        return self.domain in MERGED_DOMAINS

    def service(self, namespace: str, name: str) -> str:
        return f"{name}.{namespace}.svc.{self.domain}"

    def host(self, namespace: str, service: str, hostname: str) -> str:
        cluster = f"{self.source.lower()}." if self.merged else ""
        return f"{hostname}.{cluster}{service}.{namespace}.svc.{self.domain}"


@dataclass(frozen=True)
class Desired:
    """One ExternalName Service the target should hold."""

    namespace: str
    name: str
    external_name: str
    ports: tuple[Port, ...]
    origin: str         # "<cluster>/<ns>/<svc>" or "<cluster>/<ns>/<svc>/<hostname>"

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    def body(self, naming: Naming) -> dict[str, Any]:
        """The Service to create."""
        spec: dict[str, Any] = {"type": "ExternalName", "externalName": self.external_name}
        if self.ports:
            spec["ports"] = port_list(self.ports)
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             "labels": ownership_labels(naming), "annotations": {ORIGIN: self.origin}},
                "spec": spec}

    def patch(self, resource_version: str, naming: Naming) -> dict[str, Any]:
        """A JSON merge patch turning an owned Service into this one (refused by the API if the
        object changed since ``resource_version`` was read)."""
        return {"metadata": {"resourceVersion": resource_version, "labels": ownership_labels(naming),
                             "annotations": {ORIGIN: self.origin}},
                "spec": {"type": "ExternalName", "externalName": self.external_name,
                         "ports": port_list(self.ports) or None}}

    def describe(self) -> str:
        return _external_text(self.external_name, self.ports)


def ownership_labels(naming: Naming) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGER, SOURCE_LABEL: naming.source}


def owned_selector(naming: Naming) -> str:
    """The label selector of what a controller for ``naming.source`` made."""
    return f"{MANAGED_BY_LABEL}={MANAGER},{SOURCE_LABEL}={naming.source}"


def port_list(ports: Iterable[Port]) -> list[dict[str, Any]]:
    return [{**({"name": p.name} if p.name else {}), "protocol": p.protocol, "port": p.port} for p in ports]


@dataclass(frozen=True)
class Skipped:
    """A source object the target cannot get (reason says why), to count and log once."""

    namespace: str
    name: str
    reason: str


def desired_in(index: ClusterIndex, naming: Naming, namespace: str | None = None
               ) -> tuple[dict[Key, Desired], list[Skipped]]:
    """Everything the target should hold for the source's Services (of ``namespace`` only, when
    given): one namespace at a time, so that an incremental pass and a full one decide a clash
    of names (a hostname equal to a Service's name) the same way."""
    by_namespace: dict[str, list[Service]] = {}
    for svc in index.services():
        if namespace is None or svc.namespace == namespace:
            by_namespace.setdefault(svc.namespace, []).append(svc)
    desired: dict[Key, Desired] = {}
    skipped: list[Skipped] = []
    for ns in sorted(by_namespace):
        _namespace_desired(index, naming, sorted(by_namespace[ns], key=lambda s: s.name), desired, skipped)
    return desired, skipped


def _namespace_desired(index: ClusterIndex, naming: Naming, services: list[Service],
                       desired: dict[Key, Desired], skipped: list[Skipped]) -> None:
    def add(want: Desired) -> None:
        if not valid_external_name(want.external_name):
            skipped.append(Skipped(want.namespace, want.name, f"{want.external_name!r} is not a valid host name "
                                   "(at most 253 characters, lower-case labels of at most 63)"))
        else:
            desired[want.key] = want

    for svc in services:  # Services first: a Service's name wins over a hostname
        add(Desired(svc.namespace, svc.name, naming.service(svc.namespace, svc.name), svc.ports,
                    f"{naming.source}/{svc.namespace}/{svc.name}"))
    for svc in services:
        if not svc.headless:
            continue
        hosts: set[str] = set()
        for slice_ in index.slices(svc.namespace, svc.name):
            hosts.update(ep.hostname for ep in slice_.endpoints if ep.hostname and is_ready(svc, ep.ready))
        for host in sorted(hosts):
            origin = f"{naming.source}/{svc.namespace}/{svc.name}/{host}"
            taken = desired.get((svc.namespace, host))
            if taken is not None:
                skipped.append(Skipped(svc.namespace, host, f"the name of endpoint {origin} is already "
                                       f"taken by {taken.origin}"))
            elif not _SERVICE_NAME.fullmatch(host):
                skipped.append(Skipped(svc.namespace, host, f"endpoint {origin}: {host!r} cannot be a Service "
                                       "name (a DNS-1035 label: starts with a letter)"))
            else:
                add(Desired(svc.namespace, host, naming.host(svc.namespace, svc.name, host), svc.ports, origin))


# --- the target's side -------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """A Service of the target as listed: who made it and what it holds."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    owned: bool                 # made by the controller of this source
    type: str
    external_name: str
    ports: tuple[Port, ...]
    origin: str
    labels: Mapping[str, str]

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    def matches(self, want: Desired) -> bool:
        return (self.type == "ExternalName" and self.external_name == want.external_name
                and self.ports == want.ports and self.origin == want.origin)

    def maker(self) -> str:
        """Who made it, in words for the conflict log line."""
        manager = self.labels.get(MANAGED_BY_LABEL)
        source = self.labels.get(SOURCE_LABEL)
        if manager == MANAGER and source:
            return f"interkube externalnames for source cluster {source}"
        return f"managed by {manager}" if manager else "not made by interkube externalnames"


def found_from(obj: Mapping[str, Any], naming: Naming) -> Found:
    """A Service object of the target (as the API returns it)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    labels = meta.get("labels") or {}
    ports = tuple(Port(str(p.get("name") or ""), str(p.get("protocol") or "TCP"), int(p.get("port") or 0))
                  for p in spec.get("ports") or ())
    return Found(namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""),
                 uid=str(meta.get("uid") or ""), resource_version=str(meta.get("resourceVersion") or ""),
                 owned=labels.get(MANAGED_BY_LABEL) == MANAGER and labels.get(SOURCE_LABEL) == naming.source,
                 type=str(spec.get("type") or "ClusterIP"),
                 external_name=str(spec.get("externalName") or "").rstrip("."),
                 ports=ports, origin=str((meta.get("annotations") or {}).get(ORIGIN) or ""), labels=dict(labels))


CREATE, UPDATE, DELETE, CONFLICT = "create", "update", "delete", "conflict"


@dataclass(frozen=True)
class Change:
    action: str                     # create, update, delete, conflict
    key: Key
    want: Desired | None            # None for delete
    found: Found | None             # None for create

    def describe(self, done: bool = False) -> str:
        """One line for --dry-run and the logs: ``create Service shop/db: ExternalName ...``
        (``created ...`` when ``done``)."""
        ns, name = self.key
        what = f"{self.action}{'d' if done and self.action != CONFLICT else ''} Service {ns}/{name}"
        if self.action == CREATE and self.want is not None:
            return f"{what}: {self.want.describe()}"
        if self.action == UPDATE and self.want is not None and self.found is not None:
            return f"{what}: {self.want.describe()} (was {_was(self.found)})"
        if self.action == CONFLICT and self.found is not None and self.want is not None:
            return (f"{what}: it exists, {self.found.maker()}; left alone (wanted {self.want.describe()} "
                    f"for {self.want.origin})")
        if self.action == DELETE and self.found is not None:
            return f"{what}: {self.found.origin or 'made for the source'} is gone"
        return what


def _was(found: Found) -> str:
    return _external_text(found.external_name, found.ports) if found.type == "ExternalName" else found.type


def _external_text(external_name: str, ports: tuple[Port, ...]) -> str:
    listed = " ".join(f"{p.name + ' ' if p.name else ''}{p.port}/{p.protocol}" for p in ports)
    return f"ExternalName {external_name}" + (f" (ports {listed})" if listed else "")


def changes(desired: Mapping[Key, Desired], owned: Mapping[Key, Found], others: Mapping[Key, Found],
            keys: Iterable[Key] | None = None) -> list[Change]:
    """The changes from what the target holds (``owned``: made by this controller; ``others``:
    every other Service known there) to ``desired``, for ``keys`` (default: all of them)."""
    if keys is None:
        keys = set(desired) | set(owned)
    out: list[Change] = []
    for key in sorted(keys):
        want, have, other = desired.get(key), owned.get(key), others.get(key)
        if want is None:
            if have is not None:
                out.append(Change(DELETE, key, None, have))
        elif have is not None:
            if not have.matches(want):
                out.append(Change(UPDATE, key, want, have))
        elif other is not None:
            out.append(Change(CONFLICT, key, want, other))
        else:
            out.append(Change(CREATE, key, want, None))
    return out
