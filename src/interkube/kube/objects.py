"""Kubernetes objects reduced to what DNS needs: immutable records, decoded straight from the API.

The API's JSON (and the YAML of ``kubectl get -o yaml``) is decoded with msgspec into small
*wire* structs that name only the fields DNS reads; msgspec skips every other field without
building it, so a 5 KB Pod costs a few hundred bytes to read. The wire structs are then turned
into the frozen records below, which are what a cluster index keeps:

* :class:`Service` -- name, type, ClusterIPs, ports, ExternalName, publishNotReadyAddresses,
  and its external addresses (``externalIPs`` and load balancer ingress, for *k8s_external*);
* :class:`EndpointSlice` -- its Service, ports and :class:`Endpoint` s (one per address);
* :class:`Pod` -- namespace, name and primary IP (only kept for ``pods verified``);
* :class:`ServiceExport` and :class:`ServiceImport` -- the MCS objects (multicluster.x-k8s.io);
* :class:`Namespace` -- its name (a namespace exists even when it holds nothing).

Anything that does not fit (a missing name, a port that is not a number, an address that is not
an IP) raises :class:`MalformedObject`; the caller skips that object, counts it and logs it once.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import msgspec

# --- the records an index keeps ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Port:
    """A Service or EndpointSlice port. ``name`` is "" for an unnamed port; ``port`` is -1 for
    an EndpointSlice port without a number (which DNS treats like no port)."""

    name: str
    protocol: str
    port: int


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    type: str                       # ClusterIP, NodePort, LoadBalancer or ExternalName
    cluster_ips: tuple[str, ...]    # empty for headless and ExternalName Services
    headless: bool                  # clusterIP: None
    ports: tuple[Port, ...]
    external_name: str = ""
    publish_not_ready: bool = False
    #: spec.externalIPs, then status.loadBalancer.ingress (each its ip, else its hostname), as
    #: CoreDNS keeps them for k8s_external; names lower case without the final dot.
    external_ips: tuple[str, ...] = ()
    #: sessionAffinity ClientIP: its timeoutSeconds (10800 unless set); 0 for None (for
    #: interkube proxy, which keeps a client on one endpoint as kube-proxy does).
    affinity_timeout: int = 0

    @property
    def is_external(self) -> bool:
        return self.type == "ExternalName"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One address of an EndpointSlice endpoint (an endpoint with two addresses is two)."""

    ip: str
    hostname: str       # the endpoint's hostname, "" when it has none
    target: str         # the targetRef's name (the pod), "" when absent or too long for a label
    ready: bool         # conditions.ready is true or unset


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    namespace: str
    name: str
    service: str                    # the kubernetes.io/service-name label
    ports: tuple[Port, ...]
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    ip: str             # status.podIP; "" before one is assigned
    #: The rest of status.podIPs (the other family's address of a dual-stack pod); CoreDNS's
    #: `pods verified` answers for every one of them.
    more_ips: tuple[str, ...] = ()

    @property
    def ips(self) -> tuple[str, ...]:
        return ((self.ip,) if self.ip else ()) + self.more_ips


@dataclass(frozen=True, slots=True)
class ServiceExport:
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class ServiceImport:
    namespace: str
    name: str
    type: str                       # ClusterSetIP or Headless
    ips: tuple[str, ...]
    ports: tuple[Port, ...]
    clusters: tuple[str, ...]       # status.clusters[].cluster


@dataclass(frozen=True, slots=True)
class Namespace:
    """A Namespace: only that it exists (an empty one answers NODATA, as in CoreDNS)."""

    name: str


Record = Service | EndpointSlice | Pod | ServiceExport | ServiceImport | Namespace


class MalformedObject(ValueError):
    """An API object that cannot be turned into a record; the message says why."""


# --- what is read from the wire -----------------------------------------------------------------


class _Meta(msgspec.Struct):
    name: str = ""
    namespace: str = ""
    resourceVersion: str = ""
    labels: dict[str, str] | None = None
    # Only whether it is set matters (YAML written by hand may hold a timestamp, not a string).
    deletionTimestamp: Any = None


class _ServicePort(msgspec.Struct):
    port: int
    name: str = ""
    protocol: str = "TCP"


class _ClientIPConfig(msgspec.Struct):
    timeoutSeconds: int = 10800


class _AffinityConfig(msgspec.Struct):
    clientIP: _ClientIPConfig = msgspec.field(default_factory=_ClientIPConfig)


class _ServiceSpec(msgspec.Struct):
    type: str = "ClusterIP"
    clusterIP: str = ""
    clusterIPs: list[str] | None = None
    ports: list[_ServicePort] | None = None
    externalName: str = ""
    publishNotReadyAddresses: bool = False
    externalIPs: list[str] | None = None
    sessionAffinity: str = "None"
    sessionAffinityConfig: _AffinityConfig | None = None


class _Ingress(msgspec.Struct):
    ip: str = ""
    hostname: str = ""


class _LoadBalancer(msgspec.Struct):
    ingress: list[_Ingress] | None = None


class _ServiceStatus(msgspec.Struct):
    loadBalancer: _LoadBalancer = msgspec.field(default_factory=_LoadBalancer)


class _ServiceWire(msgspec.Struct):
    metadata: _Meta
    spec: _ServiceSpec = msgspec.field(default_factory=_ServiceSpec)
    status: _ServiceStatus = msgspec.field(default_factory=_ServiceStatus)


class _Conditions(msgspec.Struct):
    ready: bool | None = None


class _TargetRef(msgspec.Struct):
    name: str = ""


class _Endpoint(msgspec.Struct):
    addresses: list[str]
    conditions: _Conditions = msgspec.field(default_factory=_Conditions)
    hostname: str | None = None
    targetRef: _TargetRef | None = None


class _SlicePort(msgspec.Struct):
    name: str | None = None
    protocol: str | None = None
    port: int | None = None


class _SliceWire(msgspec.Struct):
    metadata: _Meta
    addressType: str = ""
    endpoints: list[_Endpoint] | None = None
    ports: list[_SlicePort] | None = None


class _PodIP(msgspec.Struct):
    ip: str = ""


class _PodStatus(msgspec.Struct):
    podIP: str = ""
    podIPs: list[_PodIP] | None = None


class _PodWire(msgspec.Struct):
    metadata: _Meta
    status: _PodStatus = msgspec.field(default_factory=_PodStatus)


class _NamespaceWire(msgspec.Struct):
    metadata: _Meta


class _ExportWire(msgspec.Struct):
    metadata: _Meta


class _ImportSpec(msgspec.Struct):
    type: str = "ClusterSetIP"
    ips: list[str] | None = None
    ports: list[_ServicePort] | None = None


class _ImportCluster(msgspec.Struct):
    cluster: str = ""


class _ImportStatus(msgspec.Struct):
    clusters: list[_ImportCluster] | None = None


class _ImportWire(msgspec.Struct):
    metadata: _Meta
    spec: _ImportSpec = msgspec.field(default_factory=_ImportSpec)
    status: _ImportStatus = msgspec.field(default_factory=_ImportStatus)
    # multicluster.x-k8s.io/v1alpha2 moved spec and status up to the object itself (v1beta1
    # moved them back); a snapshot may hold either shape.
    type: str | None = None
    ips: list[str] | None = None
    ports: list[_ServicePort] | None = None
    clusters: list[_ImportCluster] | None = None


SERVICE_NAME_LABEL = "kubernetes.io/service-name"
#: CoreDNS ignores pod names that cannot be a DNS label when naming endpoints by pod.
MAX_LABEL = 63


def _ip(text: str, what: str, version: int | None = None) -> str:
    """``text`` if it is an IP address (of ``version``), else MalformedObject."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise MalformedObject(f"{what} {text!r} is not an IP address") from None
    if version is not None and address.version != version:
        raise MalformedObject(f"{what} {text!r} is not an IPv{version} address")
    return text


def _named(meta: _Meta, kind: str) -> tuple[str, str]:
    if not meta.name:
        raise MalformedObject(f"{kind} without metadata.name")
    if not meta.namespace:
        raise MalformedObject(f"{kind} {meta.name} without metadata.namespace")
    # A cluster has few namespaces and many objects in each: one string per namespace.
    return sys.intern(meta.namespace), meta.name


def _ports(ports: list[_ServicePort] | None) -> tuple[Port, ...]:
    return tuple(Port(sys.intern(p.name.lower()), sys.intern(p.protocol.upper()), p.port) for p in ports or ())


def _service(w: _ServiceWire) -> Service:
    namespace, name = _named(w.metadata, "Service")
    spec = w.spec
    ips = list(spec.clusterIPs or ([spec.clusterIP] if spec.clusterIP else []))
    headless = bool(ips) and ips[0] == "None"
    external = spec.type == "ExternalName"
    if headless or external:
        ips = []
    ports = _ports(spec.ports)
    return Service(
        namespace=namespace, name=name, type=spec.type,
        cluster_ips=tuple(_ip(ip, "clusterIP") for ip in ips),
        headless=headless, ports=ports,
        external_name=spec.externalName.rstrip(".") if external else "",
        publish_not_ready=spec.publishNotReadyAddresses,
        external_ips=_external_addresses(spec.externalIPs, w.status.loadBalancer.ingress),
        affinity_timeout=_affinity_timeout(spec),
    )


def _affinity_timeout(spec: _ServiceSpec) -> int:
    if spec.sessionAffinity != "ClientIP":
        return 0
    timeout = (spec.sessionAffinityConfig or _AffinityConfig()).clientIP.timeoutSeconds
    if not 0 < timeout <= 86400:  # the API server's validation bounds
        raise MalformedObject(f"sessionAffinityConfig.clientIP.timeoutSeconds {timeout} is not in 1..86400")
    return timeout


def _external_addresses(ips: list[str] | None, ingress: list[_Ingress] | None) -> tuple[str, ...]:
    out: list[str] = [str(ipaddress.ip_address(_ip(ip, "externalIP"))) for ip in ips or ()]
    for lb in ingress or ():
        if lb.ip:
            out.append(str(ipaddress.ip_address(_ip(lb.ip, "loadBalancer ingress ip"))))
        elif lb.hostname:
            out.append(sys.intern(lb.hostname.lower().rstrip(".")))
    return tuple(out)


def _slice(w: _SliceWire) -> EndpointSlice | None:
    namespace, name = _named(w.metadata, "EndpointSlice")
    service = (w.metadata.labels or {}).get(SERVICE_NAME_LABEL, "")
    if w.addressType not in ("IPv4", "IPv6") or not service:
        return None  # FQDN slices and slices of no Service give DNS nothing to serve
    version = 4 if w.addressType == "IPv4" else 6
    ports = tuple(Port(sys.intern((p.name or "").lower()), sys.intern((p.protocol or "TCP").upper()),
                       -1 if p.port is None else p.port) for p in w.ports or ())
    endpoints = []
    for ep in w.endpoints or ():
        hostname = (ep.hostname or "").lower()
        target = ep.targetRef.name.lower() if ep.targetRef is not None else ""
        if len(target) > MAX_LABEL:
            target = ""
        ready = ep.conditions.ready is not False
        for address in ep.addresses:
            endpoints.append(Endpoint(_ip(address, "endpoint address", version), hostname, target, ready))
    return EndpointSlice(namespace, name, service, ports, tuple(endpoints))


def _pod(w: _PodWire) -> Pod | None:
    namespace, name = _named(w.metadata, "Pod")
    if w.metadata.deletionTimestamp:
        return None  # terminating pods no longer answer (as CoreDNS)
    ip = w.status.podIP
    more = tuple(sys.intern(_ip(p.ip, "podIPs")) for p in w.status.podIPs or () if p.ip and p.ip != ip)
    return Pod(namespace, name, _ip(ip, "podIP") if ip else "", more)


def _namespace(w: _NamespaceWire) -> Namespace:
    if not w.metadata.name:
        raise MalformedObject("Namespace without metadata.name")
    # Terminating namespaces still exist (their objects are still being removed), as in CoreDNS.
    return Namespace(sys.intern(w.metadata.name))


def _export(w: _ExportWire) -> ServiceExport:
    namespace, name = _named(w.metadata, "ServiceExport")
    return ServiceExport(namespace, name)


def _import(w: _ImportWire) -> ServiceImport:
    namespace, name = _named(w.metadata, "ServiceImport")
    spec = w.spec
    return ServiceImport(
        namespace, name, w.type or spec.type,
        tuple(_ip(ip, "ServiceImport ip") for ip in w.ips or spec.ips or ()),
        _ports(w.ports or spec.ports),
        tuple(c.cluster for c in (w.clusters or w.status.clusters or ()) if c.cluster),
    )


class _Object(Protocol):
    """What every wire struct has: the object's metadata."""

    @property
    def metadata(self) -> _Meta: ...


W = TypeVar("W", bound=_Object)


class Read(NamedTuple):
    """One object as a source sees it: identity, version and labels, and its record (None when
    the object is valid but gives DNS nothing, like an FQDN EndpointSlice or a terminating Pod)."""

    namespace: str
    name: str
    resource_version: str
    labels: Mapping[str, str]
    record: Record | None


@dataclass(frozen=True)
class Kind(Generic[W]):
    """One resource DNS reads: where the API serves it and how its objects become records."""

    resource: str           # plural, as in URLs and metric labels
    kind: str
    api_version: str
    wire: type[W]
    convert: Callable[[W], Record | None]

    @property
    def path(self) -> str:
        """The cluster-wide collection URL path."""
        base = "/api/" if "/" not in self.api_version else "/apis/"
        return f"{base}{self.api_version}/{self.resource}"

    def _read(self, wire: W) -> Read:
        meta = wire.metadata
        return Read(meta.namespace, meta.name, meta.resourceVersion, meta.labels or {}, self.convert(wire))

    def from_json(self, raw: bytes | msgspec.Raw) -> Read:
        """One object in JSON; MalformedObject when it does not fit."""
        try:
            return self._read(msgspec.json.decode(raw, type=self.wire))
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise MalformedObject(str(exc)) from None

    def from_dict(self, obj: Mapping[str, Any]) -> Read:
        """One object already parsed (from YAML); MalformedObject when it does not fit."""
        try:
            return self._read(msgspec.convert(obj, type=self.wire, strict=False))
        except msgspec.ValidationError as exc:
            raise MalformedObject(str(exc)) from None


SERVICES = Kind("services", "Service", "v1", _ServiceWire, _service)
ENDPOINT_SLICES = Kind("endpointslices", "EndpointSlice", "discovery.k8s.io/v1", _SliceWire, _slice)
PODS = Kind("pods", "Pod", "v1", _PodWire, _pod)
SERVICE_EXPORTS = Kind("serviceexports", "ServiceExport", "multicluster.x-k8s.io/v1alpha1", _ExportWire, _export)
SERVICE_IMPORTS = Kind("serviceimports", "ServiceImport", "multicluster.x-k8s.io/v1alpha1", _ImportWire, _import)

NAMESPACES = Kind("namespaces", "Namespace", "v1", _NamespaceWire, _namespace)

KINDS: tuple[Kind[Any], ...] = (SERVICES, ENDPOINT_SLICES, PODS, NAMESPACES, SERVICE_EXPORTS, SERVICE_IMPORTS)
BY_KIND: dict[str, Kind[Any]] = {k.kind: k for k in KINDS}


class _Identity(msgspec.Struct):
    metadata: _Meta = msgspec.field(default_factory=_Meta)


def identity_from_json(raw: bytes | msgspec.Raw) -> tuple[str, str]:
    """(namespace, name) of an object in JSON, leniently (for naming a malformed object)."""
    try:
        meta = msgspec.json.decode(raw, type=_Identity).metadata
    except (msgspec.ValidationError, msgspec.DecodeError):
        return ("", "")
    return (meta.namespace, meta.name)


def identity_from_dict(obj: Any) -> tuple[str, str]:
    """(namespace, name) of a parsed object, leniently."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    if not isinstance(meta, Mapping):
        return ("", "")
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
