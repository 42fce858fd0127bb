"""How to reach one cluster's API: a kubeconfig context, an endpoint with TLS files, or in-cluster.

lightkube reads the kubeconfig and builds the authentication (bearer tokens, token files,
client certificates, exec credential plugins, basic auth) and the TLS verification; this module
picks the configuration the way CoreDNS's options describe it and turns every problem into a
:class:`~interkube.errors.KubeconfigError` that names the file and the context.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import msgspec
from lightkube.config import client_adapter
from lightkube.config.kubeconfig import SERVICE_ACCOUNT, KubeConfig, SingleConfig
from lightkube.config.models import Cluster as KubeCluster
from lightkube.config.models import User as KubeUser
from lightkube.core.exceptions import ConfigError as LightkubeConfigError

from interkube.errors import KubeconfigError


@dataclass(frozen=True)
class ApiAccess:
    """The options of a stanza that say where its API is (all None: in-cluster)."""

    kubeconfig: str | None = None
    context: str | None = None
    endpoint: str | None = None
    tls: tuple[str, str, str] | None = None      # client cert, client key, CA cert

    @property
    def in_cluster(self) -> bool:
        return self.kubeconfig is None and self.endpoint is None


def _single(config: KubeConfig, context: str | None = None) -> SingleConfig:
    """``config.get(context)``, which lightkube types Optional: it returns None only for a default."""
    single = config.get(context)
    if single is None:  # no default is passed, so lightkube has raised ConfigError instead
        raise LightkubeConfigError(f"no context {context!r}")
    return single


def _from_kubeconfig(path: str, context: str | None, cluster: str | None) -> SingleConfig:
    where = f"kubeconfig {path}"
    try:
        config = KubeConfig.from_file(path)
    except LightkubeConfigError as exc:
        raise KubeconfigError(f"cannot use {where}: {exc}", cluster=cluster, context=context) from exc
    except OSError as exc:
        raise KubeconfigError(f"cannot read {where}: {exc.strerror or exc}", cluster=cluster,
                              context=context) from exc
    except Exception as exc:  # YAML and schema errors come in many types
        raise KubeconfigError(f"{where} is not a valid kubeconfig: {exc}", cluster=cluster,
                              context=context) from exc
    name = context or config.current_context
    if name is None:
        raise KubeconfigError(f"{where} has no current-context; name one after the file",
                              cluster=cluster)
    if name not in config.contexts:
        known = ", ".join(sorted(config.contexts)) or "none"
        raise KubeconfigError(f"{where} has no context {name!r} (it has: {known})", cluster=cluster,
                              context=name)
    try:
        return _single(config, name)
    except (KeyError, LightkubeConfigError) as exc:
        raise KubeconfigError(f"{where}: context {name!r} names a cluster or user it does not define: {exc}",
                              cluster=cluster, context=name) from exc


def _from_endpoint(url: str, tls: tuple[str, str, str] | None) -> SingleConfig:
    user = KubeUser(client_cert=tls[0], client_key=tls[1]) if tls else KubeUser()
    cluster = KubeCluster(server=url.rstrip("/"), certificate_auth=tls[2] if tls else None)
    return _single(KubeConfig.from_one(cluster=cluster, user=user, context_name="endpoint"))


def _in_cluster(service_account: str) -> SingleConfig:
    if not os.environ.get("KUBERNETES_SERVICE_HOST") or not os.environ.get("KUBERNETES_SERVICE_PORT"):
        raise KubeconfigError("neither `kubeconfig` nor `endpoint` is given and this is not a pod "
                              "(KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set)")
    try:
        return _single(KubeConfig.from_service_account(service_account))
    except LightkubeConfigError as exc:
        raise KubeconfigError(f"cannot use the in-cluster service account in {service_account}: {exc}") from exc


def resolve(access: ApiAccess, cluster: str | None = None,
            service_account: str = SERVICE_ACCOUNT) -> SingleConfig:
    """The connection settings of ``access``; files (kubeconfig, certificates) are read now so
    that a mistake shows at startup, naming the file and the context."""
    if access.kubeconfig is not None:
        config = _from_kubeconfig(access.kubeconfig, access.context, cluster)
        where = f"kubeconfig {access.kubeconfig}"
    elif access.endpoint is not None:
        config = _from_endpoint(access.endpoint, access.tls)
        where = f"endpoint {access.endpoint}"
    else:
        config = _in_cluster(service_account)
        where = "in-cluster service account"
    context = config.context_name if access.kubeconfig is not None else None
    server = config.cluster.server
    if not server or urlsplit(server).scheme not in ("http", "https"):
        raise KubeconfigError(f"{where}: the API server URL {server!r} is not http(s)://HOST[:PORT]",
                              cluster=cluster, context=context)
    try:
        client_adapter.user_auth(config.user)
        if urlsplit(server).scheme == "https":
            client_adapter.verify_cluster(config.cluster, config.user or KubeUser(), config.abs_file)
    except (OSError, ssl.SSLError, LightkubeConfigError, ValueError) as exc:
        raise KubeconfigError(f"{where}: cannot load its credentials or certificates: {exc}",
                              cluster=cluster, context=context) from exc
    return config


def is_loopback(server: str) -> bool:
    host = urlsplit(server).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ExecAuth(client_adapter.ExecAuth):
    """lightkube's exec credential plugin support, taking client.authentication.k8s.io/v1 too.

    v1 differs from v1beta1 only in what the plugin may be told (KUBERNETES_EXEC_INFO, which
    lightkube does not send for either); the ExecCredential it prints is read the same way.
    """

    def _prepare(self) -> tuple[list[str], dict[str, str]]:
        spec = self._exec
        if spec.apiVersion == "client.authentication.k8s.io/v1":
            self._exec = msgspec.structs.replace(spec, apiVersion="client.authentication.k8s.io/v1beta1")
            try:
                return super()._prepare()
            finally:
                self._exec = spec
        return super()._prepare()


def http_client(config: SingleConfig, timeout: float) -> httpx2.AsyncClient:
    """An HTTP client for the API server: base URL, TLS verification and authentication set.

    Proxy variables (HTTPS_PROXY, ...) apply as they do for kubectl, except for an API server
    on loopback, which a proxy could only misroute.
    """
    params = client_adapter.ConnectionParams(timeout=httpx2.Timeout(timeout),
                                             trust_env=not is_loopback(config.cluster.server))
    user = config.user
    if user is None:
        user = KubeUser()
        config = config._replace(user=user)
    client = client_adapter.AsyncClient(config, params)
    if user.exec is not None and user.token is None and user.token_file is None:
        client.auth = ExecAuth(user.exec)
    return client


def describe(config: SingleConfig, access: ApiAccess) -> str:
    """Words for logs: the server and, for a kubeconfig, the file and context."""
    if access.kubeconfig is not None:
        return f"{config.cluster.server} (kubeconfig {Path(access.kubeconfig)}, context {config.context_name})"
    if access.endpoint is not None:
        return config.cluster.server
    return f"{config.cluster.server} (in-cluster)"
