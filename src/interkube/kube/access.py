"""How to reach one cluster's API: a kubeconfig context, an endpoint with TLS files, or in-cluster.

This module picks the configuration the way CoreDNS's options describe it and turns every
problem into a :class:`~interkube.errors.KubeconfigError` that names the file and the context.

The configurations a DNS server meets nearly always -- the pod's service account, a kubeconfig
context with a token, token file or client certificate and a CA, an endpoint with TLS files --
are read here. Everything else goes to lightkube (:mod:`interkube.kube.lightkube_config`): exec
credential plugins, basic auth, auth providers, kubeconfig fields this reader does not know, and
every file it cannot make sense of, so that lightkube words the error as it always has. Importing
any part of lightkube loads its whole client and models (3.5 MiB of a sidecar's 40 MiB budget),
for what these few dozen lines do.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import ssl
import tempfile
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx2

from interkube.errors import KubeconfigError, KubeCredentialsError

if TYPE_CHECKING:
    from lightkube.config.kubeconfig import SingleConfig

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"

#: The kubeconfig fields read here; a cluster, user or context with any other goes to lightkube.
_CLUSTER_FIELDS = frozenset({"server", "certificate-authority", "certificate-authority-data",
                             "insecure-skip-tls-verify"})
_USER_FIELDS = frozenset({"token", "tokenFile", "client-certificate", "client-certificate-data",
                          "client-key", "client-key-data"})
_CONTEXT_FIELDS = frozenset({"cluster", "user", "namespace"})


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


@dataclass(frozen=True)
class ClusterSettings:
    """The API server and how to trust it. Files are absolute; data is PEM."""

    server: str
    ca_file: str | None = None
    ca_data: str | None = None
    insecure: bool = False


@dataclass(frozen=True)
class Credentials:
    """Who we are to the API server. Files are absolute; data is PEM."""

    token: str | None = None
    token_file: str | None = None
    cert_file: str | None = None
    cert_data: bytes | None = None
    key_file: str | None = None
    key_data: bytes | None = None


@dataclass(frozen=True)
class ApiConfig:
    """What :func:`resolve` found: the context's name, the server and the credentials, or
    lightkube's configuration when lightkube read it (``lightkube`` set; ``user`` unused)."""

    context_name: str
    cluster: ClusterSettings
    user: Credentials
    lightkube: SingleConfig | None = None


class TokenFileAuth(httpx2.Auth):
    """A bearer token read from a file, read again after a 401 (the kubelet rotates a service
    account's token in place), as client-go's tokenFileAuth and lightkube do."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._bearer: str | None = None

    def _read(self) -> str:
        try:
            return f"Bearer {Path(self.path).read_text().strip()}"
        except FileNotFoundError as exc:
            raise KubeCredentialsError(f"Token file {self.path} not found") from exc

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        if self._bearer is None:
            self._bearer = self._read()
        request.headers["Authorization"] = self._bearer
        response = yield request
        if response.status_code != 401:
            return
        self._bearer = self._read()
        request.headers["Authorization"] = self._bearer
        yield request


class BearerAuth(httpx2.Auth):
    def __init__(self, token: str) -> None:
        self._bearer = f"Bearer {token}"

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        request.headers["Authorization"] = self._bearer
        yield request


def _named(entries: object, kind: str, name: object) -> dict[str, Any] | None:
    """The ``kind`` mapping of the one entry of ``entries`` called ``name``; None if there is
    not exactly one, or it is not a plain mapping of strings."""
    if not isinstance(entries, list) or not isinstance(name, str):
        return None
    found = [e for e in entries if isinstance(e, dict) and e.get("name") == name]
    if len(found) != 1 or not isinstance(found[0].get(kind), dict):
        return None
    body: dict[str, Any] = found[0][kind]
    return body


def _pem(data: object) -> bytes | None:
    try:
        return base64.b64decode(str(data), validate=True)
    except ValueError:
        return None


def _plain_kubeconfig(path: str, context: str | None) -> ApiConfig | None:
    """The context of a kubeconfig that uses only the fields read here, else None."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    if text.lstrip().startswith("{"):
        # JSON, which kubectl reads too (YAML's subset): no YAML parser loaded for it.
        try:
            doc = json.loads(text)
        except ValueError:
            return None
    else:
        import yaml  # only YAML kubeconfigs need it: a pod's service account is plain files

        try:
            doc = yaml.safe_load(text)
        except (ValueError, yaml.YAMLError):
            return None
    if not isinstance(doc, dict):
        return None
    name = context or doc.get("current-context")
    ctx = _named(doc.get("contexts"), "context", name)
    if ctx is None or set(ctx) - _CONTEXT_FIELDS or not isinstance(name, str):
        return None
    cluster = _named(doc.get("clusters"), "cluster", ctx.get("cluster"))
    user = _named(doc.get("users"), "user", ctx.get("user"))
    if cluster is None or user is None or set(cluster) - _CLUSTER_FIELDS or set(user) - _USER_FIELDS:
        return None
    if not all(isinstance(v, str) for k, v in [*cluster.items(), *user.items()] if k != "insecure-skip-tls-verify"):
        return None
    insecure = cluster.get("insecure-skip-tls-verify", False)
    if not isinstance(insecure, bool) or "server" not in cluster:
        return None

    def absolute(value: str | None) -> str | None:  # relative to the kubeconfig, as kubectl has it
        return None if value is None else str(file.parent / value)

    ca_data = cert_data = key_data = None
    if "certificate-authority-data" in cluster and (ca_data := _pem(cluster["certificate-authority-data"])) is None:
        return None
    if "client-certificate-data" in user and (cert_data := _pem(user["client-certificate-data"])) is None:
        return None
    if "client-key-data" in user and (key_data := _pem(user["client-key-data"])) is None:
        return None
    cert_file, key_file = absolute(user.get("client-certificate")), absolute(user.get("client-key"))
    if (cert_file or cert_data) and not (key_file or key_data):
        return None
    return ApiConfig(
        context_name=name,
        cluster=ClusterSettings(server=cluster["server"], ca_file=absolute(cluster.get("certificate-authority")),
                                ca_data=ca_data.decode("ascii", "replace") if ca_data else None, insecure=insecure),
        user=Credentials(token=user.get("token"), token_file=absolute(user.get("tokenFile")), cert_file=cert_file,
                         cert_data=cert_data, key_file=key_file, key_data=key_data))


def _from_kubeconfig(path: str, context: str | None, cluster: str | None) -> ApiConfig:
    plain = _plain_kubeconfig(path, context)
    if plain is not None:
        return plain
    from interkube.kube import lightkube_config

    config = lightkube_config.from_kubeconfig(path, context, cluster)
    return _wrapped(config)


def _from_endpoint(url: str, tls: tuple[str, str, str] | None) -> ApiConfig:
    if tls is None or all(os.path.isabs(p) for p in tls):
        cert, key, ca = tls if tls is not None else (None, None, None)
        return ApiConfig(context_name="endpoint", cluster=ClusterSettings(url.rstrip("/"), ca_file=ca),
                         user=Credentials(cert_file=cert, key_file=key))
    from interkube.kube import lightkube_config  # its error for a relative path, as always

    return _wrapped(lightkube_config.from_endpoint(url, tls))


def _in_cluster(service_account: str) -> ApiConfig:
    if not os.environ.get("KUBERNETES_SERVICE_HOST") or not os.environ.get("KUBERNETES_SERVICE_PORT"):
        raise KubeconfigError("neither `kubeconfig` nor `endpoint` is given and this is not a pod "
                              "(KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set)")
    account = Path(service_account)
    if not (account / "token").is_file() or not (account / "namespace").is_file():
        from interkube.kube import lightkube_config  # its words for what is missing

        return _wrapped(lightkube_config.in_cluster(service_account))
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
    if ":" in host:
        host = f"[{host}]"
    return ApiConfig(context_name="default",
                     cluster=ClusterSettings(f"https://{host}:{port}", ca_file=str(account / "ca.crt")),
                     user=Credentials(token_file=str(account / "token")))


def _wrapped(config: SingleConfig) -> ApiConfig:
    return ApiConfig(context_name=config.context_name, cluster=ClusterSettings(config.cluster.server),
                     user=Credentials(), lightkube=config)


def _ssl_context(config: ApiConfig, trust_env: bool) -> ssl.SSLContext:
    """The API server's trust and our client certificate (lightkube's verify_cluster)."""
    cluster, user = config.cluster, config.user
    if cluster.ca_file is not None:
        ctx = ssl.create_default_context(cafile=cluster.ca_file)
    elif cluster.ca_data is not None:
        ctx = ssl.create_default_context(cadata=cluster.ca_data)
    else:
        ctx = httpx2.create_ssl_context(verify=not cluster.insecure, trust_env=trust_env)
    if user.cert_file is not None or user.cert_data is not None:
        with tempfile.TemporaryDirectory(prefix="interkube-kube-") as folder:  # ssl loads only files
            cert = user.cert_file or _written(Path(folder) / "client.crt", user.cert_data)
            key = user.key_file or _written(Path(folder) / "client.key", user.key_data)
            ctx.load_cert_chain(cert, key)
    return ctx


def _written(path: Path, data: bytes | None) -> str:
    path.touch(mode=0o600)
    path.write_bytes(data or b"")
    return str(path)


def _auth(user: Credentials) -> httpx2.Auth | None:
    if user.token_file is not None:
        return TokenFileAuth(user.token_file)
    if user.token is not None:
        return BearerAuth(user.token)
    return None


def resolve(access: ApiAccess, cluster: str | None = None,
            service_account: str = SERVICE_ACCOUNT) -> ApiConfig:
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
        if config.lightkube is not None:
            from interkube.kube import lightkube_config

            lightkube_config.check(config.lightkube)
        elif urlsplit(server).scheme == "https":
            _ssl_context(config, trust_env=True)  # as lightkube checked it: SSL_CERT_FILE too
    except (OSError, ssl.SSLError, ValueError) as exc:
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


def http_client(config: ApiConfig, timeout: float) -> httpx2.AsyncClient:
    """An HTTP client for the API server: base URL, TLS verification and authentication set.

    Proxy variables (HTTPS_PROXY, ...) apply as they do for kubectl, except for an API server
    on loopback, which a proxy could only misroute.
    """
    trust_env = not is_loopback(config.cluster.server)
    if config.lightkube is not None:
        from interkube.kube import lightkube_config

        return lightkube_config.http_client(config.lightkube, timeout, trust_env, TokenFileAuth)
    try:
        verify = _ssl_context(config, trust_env)
    except (OSError, ssl.SSLError, ValueError) as exc:  # a file changed since resolve() read it
        raise KubeCredentialsError(f"cannot load the credentials or certificates: {exc}") from exc
    return httpx2.AsyncClient(base_url=config.cluster.server, verify=verify, auth=_auth(config.user),
                              timeout=httpx2.Timeout(timeout), trust_env=trust_env)


def describe(config: ApiConfig, access: ApiAccess) -> str:
    """Words for logs: the server and, for a kubeconfig, the file and context."""
    if access.kubeconfig is not None:
        return f"{config.cluster.server} (kubeconfig {Path(access.kubeconfig)}, context {config.context_name})"
    if access.endpoint is not None:
        return config.cluster.server
    return f"{config.cluster.server} (in-cluster)"


def __getattr__(name: str) -> Any:
    """``ExecAuth`` (lightkube's exec plugin support) without importing lightkube before it is used."""
    if name == "ExecAuth":
        from interkube.kube.lightkube_config import ExecAuth

        return ExecAuth
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
