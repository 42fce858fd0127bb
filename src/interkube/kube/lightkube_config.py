"""The configurations :mod:`interkube.kube.access` does not read itself, read by lightkube.

lightkube knows every corner of a kubeconfig (exec credential plugins, basic auth, auth
providers it refuses by name, fields interkube has no use for) and words the errors of a broken
file; importing it loads its whole client and models, so only these configurations pay for it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable

import httpx2
import msgspec
from lightkube.config import client_adapter
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.config.models import Cluster as KubeCluster
from lightkube.config.models import User as KubeUser
from lightkube.core.exceptions import ConfigError as LightkubeConfigError

from interkube.errors import KubeconfigError, KubeCredentialsError


def _single(config: KubeConfig, context: str | None = None) -> SingleConfig:
    """``config.get(context)``, which lightkube types Optional: it returns None only for a default."""
    single = config.get(context)
    if single is None:  # no default is passed, so lightkube has raised ConfigError instead
        raise LightkubeConfigError(f"no context {context!r}")
    return single


def from_kubeconfig(path: str, context: str | None, cluster: str | None) -> SingleConfig:
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


def from_endpoint(url: str, tls: tuple[str, str, str] | None) -> SingleConfig:
    user = KubeUser(client_cert=tls[0], client_key=tls[1]) if tls else KubeUser()
    cluster = KubeCluster(server=url.rstrip("/"), certificate_auth=tls[2] if tls else None)
    return _single(KubeConfig.from_one(cluster=cluster, user=user, context_name="endpoint"))


def in_cluster(service_account: str) -> SingleConfig:
    try:
        return _single(KubeConfig.from_service_account(service_account))
    except LightkubeConfigError as exc:
        raise KubeconfigError(f"cannot use the in-cluster service account in {service_account}: {exc}") from exc


def check(config: SingleConfig) -> None:
    """Load the credentials and certificates now: ValueError, OSError or ssl.SSLError if one is
    unusable."""
    try:
        client_adapter.user_auth(config.user)
        if config.cluster.server.startswith("https:"):
            client_adapter.verify_cluster(config.cluster, config.user or KubeUser(), config.abs_file)
    except LightkubeConfigError as exc:
        raise ValueError(str(exc)) from exc


class ExecAuth(client_adapter.ExecAuth):
    """lightkube's exec credential plugin support, taking client.authentication.k8s.io/v1 too.

    v1 differs from v1beta1 only in what the plugin may be told (KUBERNETES_EXEC_INFO, which
    lightkube does not send for either); the ExecCredential it prints is read the same way. A
    plugin that fails raises KubeCredentialsError (the API clients' retries know it; they need
    not import lightkube to catch its ConfigError).
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

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        flow = super().async_auth_flow(request)
        try:
            step = await flow.__anext__()
            while True:
                response = yield step
                step = await flow.asend(response)
        except StopAsyncIteration:
            return
        except LightkubeConfigError as exc:
            raise KubeCredentialsError(str(exc)) from exc


def http_client(config: SingleConfig, timeout: float, trust_env: bool,
                token_file_auth: Callable[[str], httpx2.Auth]) -> httpx2.AsyncClient:
    """lightkube's client for ``config``, with interkube's own token file and exec plugin auth
    (whose failures are KubeCredentialsError) in place of lightkube's."""
    params = client_adapter.ConnectionParams(timeout=httpx2.Timeout(timeout), trust_env=trust_env)
    user = config.user
    if user is None:
        user = KubeUser()
        config = config._replace(user=user)
    try:
        client = client_adapter.AsyncClient(config, params)
    except LightkubeConfigError as exc:
        raise KubeCredentialsError(str(exc)) from exc
    if user.token_file is not None:
        client.auth = token_file_auth(user.token_file)
    elif user.token is None and user.exec is not None:
        client.auth = ExecAuth(user.exec)
    return client
