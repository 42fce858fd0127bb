"""What a Corefile needs from the pod that runs it, read by the real parser and plugin parsers.

:func:`read_corefile` parses the Corefile as ``interkube serve`` would (lexer, imports,
snippets, server keys, every directive by its own plugin's parser) without opening a socket or
any file the directives name, and returns :class:`CorefileFacts`: the ports to expose, the
health and readiness endpoints the probes use, the lameduck the grace period must cover, the
Kubernetes clusters read (for RBAC and kubeconfig Secrets) and every file read at run time (which
must be mounted). Any mistake is a ConfigError naming file:line, before anything is written.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from interkube.corefile.keys import TRANSPORT_TLS, check_no_duplicates, parse_keys
from interkube.corefile.parser import Directive, ServerBlock, parse_text
from interkube.errors import ConfigError
from interkube.server.runtime import parse_directives

if TYPE_CHECKING:
    # Only for types: a plugin's package is imported (by the registry) when a Corefile uses it,
    # and some are heavy, which a command's start pays for.
    from interkube.kube.stanza import KubernetesConfig
    from interkube.plugins.clusterset.parse import ClustersetConfig
    from interkube.plugins.file.parse import FileConfig
    from interkube.plugins.forward.parse import ForwardConfig
    from interkube.plugins.health.parse import HealthConfig
    from interkube.plugins.hosts.parse import HostsConfig
    from interkube.plugins.merge.parse import MergeConfig
    from interkube.plugins.prometheus.parse import PrometheusConfig
    from interkube.plugins.ready.parse import ReadyConfig
    from interkube.plugins.tls.parse import TlsConfig

#: Files every pod has (the kubelet writes them): a Corefile may read them without a mount.
POD_FILES = frozenset({"/etc/resolv.conf", "/etc/hosts"})


@dataclass(frozen=True)
class Port:
    """One port the server listens on, and the server key that asked for it."""

    transport: str  # "dns" (UDP and TCP), "tls" or "https" (TCP)
    port: int
    where: str


@dataclass(frozen=True)
class HttpEndpoint:
    """An HTTP endpoint a plugin serves (health, ready, prometheus) on all addresses."""

    port: int
    where: str


@dataclass(frozen=True)
class FileRead:
    """A file a directive reads at run time."""

    path: str
    where: str
    what: str  # e.g. "tls certificate", "kubeconfig"


@dataclass
class CorefileFacts:
    ports: list[Port] = field(default_factory=list)
    health: HttpEndpoint | None = None
    lameduck: float = 0.0
    ready: HttpEndpoint | None = None
    metrics: HttpEndpoint | None = None
    #: Every kubernetes (and kubernetai) stanza, with its directive's file:line in ``where``.
    kubernetes: list[KubernetesConfig] = field(default_factory=list)
    #: The cluster name of each stanza (as the plugin names it: `cluster`, context or zone).
    cluster_names: list[str] = field(default_factory=list)
    #: Whether any clusterset stanza reads MCS ServiceExports/ServiceImports.
    mcs: bool = False
    #: Where the first ``clusterset ... { mcs }`` is, for messages.
    mcs_where: str = ""
    files: list[FileRead] = field(default_factory=list)

    @property
    def privileged_ports(self) -> bool:
        """Whether any listener needs NET_BIND_SERVICE to bind as a non-root user."""
        return any(p.port < 1024 for p in self.ports) or any(
            e.port < 1024 for e in (self.health, self.ready, self.metrics) if e is not None)


def read_corefile(text: str, file: str = "Corefile", env: Mapping[str, str] | None = None) -> CorefileFacts:
    """Parse ``text`` (named ``file`` in errors) as the pod will, with ``env`` as the pod's
    environment for ``{$VAR}`` (default: none). Raises ConfigError (file:line)."""
    blocks = parse_text(text, file, env=dict(env or {}))
    facts = CorefileFacts()
    keyed = []
    for block in blocks:
        _only_this_file(block, file)
        keys = parse_keys(block.keys)
        parsed = parse_directives(block)
        names = {plugin.name for _, plugin, _, _ in parsed}
        if "view" not in names:  # blocks with a view may share their zone (the view plugin)
            keyed.append(keys)
        for za, tok in keys:
            if za.transport == TRANSPORT_TLS and "tls" not in names:
                raise tok.error("a tls:// server block needs a `tls CERT KEY [CA]` directive")
            if not any(p.transport == za.transport and p.port == za.port for p in facts.ports):
                facts.ports.append(Port(za.transport, za.port, tok.where))
        zones = tuple(dict.fromkeys(za.zone for za, _ in keys))
        for _, plugin, cfg, d in parsed:
            _collect(facts, plugin.name, cfg, d, zones)
    check_no_duplicates(keyed)
    return facts


def _only_this_file(block: ServerBlock, file: str) -> None:
    """The ConfigMap holds the Corefile alone: a directive imported from another file would be
    missing in the pod."""
    for tok in (*block.keys, *(d.token for d in block.directives)):
        if tok.file != file:
            raise tok.error(f"imported into {file}, but the rendered ConfigMap holds only {file}: "
                            "put this file's text into the Corefile (snippets are fine)")


def _http_port(address: str, d: Directive, what: str) -> HttpEndpoint:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if host and host not in ("0.0.0.0", "::"):
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if loopback:
            raise d.error(f"listens on {address}, which the kubelet's {what} cannot reach from outside "
                          "the pod: give a port only (:PORT)")
    if not port.isdigit():
        raise d.error(f"cannot read a port from {address!r}")
    return HttpEndpoint(int(port), d.where)


def _collect(facts: CorefileFacts, plugin: str, cfg: Any, d: Directive, zones: tuple[str, ...]) -> None:
    """Note what one directive (parsed by ``plugin``'s own parser into ``cfg``) needs."""
    if plugin == "health":
        health = cast("HealthConfig", cfg)
        facts.health = facts.health or _http_port(health.address, d, "liveness probe")
        facts.lameduck = max(facts.lameduck, health.lameduck)
    elif plugin == "ready":
        facts.ready = facts.ready or _http_port(cast("ReadyConfig", cfg).address, d, "readiness probe")
    elif plugin == "prometheus":
        facts.metrics = facts.metrics or HttpEndpoint(_port_of(cast("PrometheusConfig", cfg).address, d), d.where)
    elif plugin in ("kubernetes", "kubernetai"):  # one stanza syntax, one cluster each
        from interkube.kube.stanza import cluster_name

        kube = cast("KubernetesConfig", cfg)
        facts.kubernetes.append(kube)
        facts.cluster_names.append(cluster_name(kube, kube.zones or zones))
        if kube.kubeconfig:
            _read(facts, kube.kubeconfig, d, "kubeconfig")
        for path in kube.snapshot:
            _read(facts, path, d, "snapshot file")
        if kube.tls and not kube.kubeconfig:
            for path in kube.tls:
                _read(facts, path, d, "API client certificate file")
    elif plugin == "clusterset":
        if cast("ClustersetConfig", cfg).mcs and not facts.mcs:
            facts.mcs, facts.mcs_where = True, d.where
    elif plugin == "tls":
        tls = cast("TlsConfig", cfg)
        for tls_path in (tls.cert, tls.key, tls.ca):
            if tls_path:
                _read(facts, tls_path, d, "tls file")
    elif plugin in ("forward", "merge"):
        client = cast("ForwardConfig | MergeConfig", cfg)
        if client.tls is not None:
            for client_path in (client.tls.cert, client.tls.key, client.tls.ca):
                if client_path:
                    _read(facts, client_path, d, "tls client file")
        if plugin == "forward":
            for spec in cast("ForwardConfig", cfg).to:
                if spec.path:
                    _read(facts, spec.path, d, "resolv.conf")
    elif plugin == "file":
        _read(facts, cast("FileConfig", cfg).path, d, "zone file")
    elif plugin == "hosts":
        hosts = cast("HostsConfig", cfg)
        if not hosts.inline:
            _read(facts, hosts.path, d, "hosts file")


def _port_of(address: str, d: Directive) -> int:
    port = address.rpartition(":")[2]
    if not port.isdigit():
        raise d.error(f"cannot read a port from {address!r}")
    return int(port)


def _read(facts: CorefileFacts, path: str, d: Directive, what: str) -> None:
    facts.files.append(FileRead(path, d.where, what))


def check_mounted(facts: CorefileFacts, mounted: Mapping[str, str]) -> None:
    """Every file the Corefile reads lies under a mounted directory (``mounted``: directory ->
    what is mounted there) or is one the kubelet writes; else a ConfigError at its directive."""
    for f in facts.files:
        if f.path in POD_FILES:
            continue
        path = os.path.normpath(f.path)
        if not os.path.isabs(path):
            raise _at(f, f"the {f.what} {f.path!r} is a relative path; in the pod, name it by an absolute "
                         "path under a mounted directory")
        if not any(path == d or path.startswith(d.rstrip("/") + "/") for d in mounted):
            raise _at(f, f"reads the {f.what} {f.path}, which the pod does not have: mount the "
                         "directory holding it with --secret NAME=DIR or --configmap NAME=DIR")


def _at(f: FileRead, message: str) -> ConfigError:
    file, _, line = f.where.rpartition(":")
    return ConfigError(message, file, int(line) if line.isdigit() else None)


__all__ = ["CorefileFacts", "FileRead", "HttpEndpoint", "Port", "check_mounted", "read_corefile"]
