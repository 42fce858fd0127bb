"""``interkube webhook`` as a process for tests and benchmarks, and its registration with a real
kube-apiserver (testkit.kubeapi).

The webhook listens on 127.0.0.1 with a certificate for that address from a CA made here; a
MutatingWebhookConfiguration rendered by ``interkube render webhook`` is registered with its
clientConfig turned into ``url: https://127.0.0.1:PORT/...`` plus that CA as the caBundle, and
every entry's namespaceSelector narrowed to the namespaces given. Configurations are
cluster-scoped: without that narrowing, one test's webhook would see every other test's Pods
(and block them, with failurePolicy Fail, once it is stopped).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import secrets
import ssl
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx2
import yaml
from lightkube import ApiError, Client
from lightkube.codecs import from_dict
from lightkube.resources.admissionregistration_v1 import MutatingWebhookConfiguration

from interkube.tlsutil import certs
from testkit.kubeapi import CRD_DIR, KubeAPI
from testkit.peers import PeerProcess, free_port
from testkit.waiting import wait_until

LOOPBACK = "127.0.0.1"
#: What a test's Pods get unless it says otherwise: an address from the test API server's
#: Service range (a value written into Pods; nothing ever sends to it).
NAMESERVER = "10.96.0.10"


class WebhookProcess:
    """``python -m interkube webhook`` on loopback, stopped by its PID."""

    def __init__(self, workdir: Path, args: Sequence[str] = ("--nameserver", NAMESERVER), *,
                 identity: tuple[bytes, bytes, bytes] | None = None, lameduck: str = "0s",
                 cpus: Sequence[int] | None = None) -> None:
        """``args`` follow ``interkube webhook``; the addresses, certificate files and lameduck are
        set after them (they win). ``identity``: (certificate, key, CA) PEM to serve instead of
        a certificate for 127.0.0.1 from a CA made here (``ca`` is then None)."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.cert, self.key = workdir / "tls.crt", workdir / "tls.key"
        self.ca: certs.Issued | None = None
        if identity is None:
            self.ca = certs.create_ca("interkube webhook test CA", days=2)
            self.ca_pem = self.ca.cert_pem()
            certs.issue(self.ca, "webhook", ip_addresses=[LOOPBACK], days=2).save(self.cert, self.key)
        else:
            cert_pem, key_pem, self.ca_pem = identity
            self.cert.write_bytes(cert_pem)
            certs.write_atomic(self.key, key_pem, 0o600)
        self.port = free_port()
        self.http_port = free_port()
        argv: list[str | Path] = [sys.executable, "-m", "interkube", "webhook", *args,
                                  "--listen", f"{LOOPBACK}:{self.port}", "--http-listen",
                                  f"{LOOPBACK}:{self.http_port}", "--tls-cert", self.cert, "--tls-key", self.key,
                                  "--lameduck", lameduck]
        if cpus is not None:
            argv = ["taskset", "-c", ",".join(str(c) for c in cpus), *argv]
        self.process = PeerProcess("interkube webhook", argv, workdir / "webhook.log")
        self._http: httpx2.Client | None = None

    @property
    def base_url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def start(self, timeout: float = 30.0) -> WebhookProcess:
        self.process.start()
        self.process.wait_until(lambda: self.ready() == 200, timeout, "ready (/ready)")
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        self.process.stop()

    def __enter__(self) -> WebhookProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        return self.process.log_tail(200)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem.decode())

    def http(self) -> httpx2.Client:
        """A client of the HTTPS port that trusts the test CA (never a proxy from the environment)."""
        if self._http is None:
            self._http = httpx2.Client(base_url=self.base_url, verify=self.ssl_context(), trust_env=False,
                                       timeout=10)
        return self._http

    def ready(self) -> int:
        with httpx2.Client(trust_env=False, timeout=2) as plain:
            return plain.get(f"http://{LOOPBACK}:{self.http_port}/ready").status_code

    def post(self, body: bytes, path: str = "/mutate",
             content_type: str = "application/json") -> httpx2.Response:
        return self.http().post(path, content=body, headers={"Content-Type": content_type})

    def metrics(self) -> dict[str, float]:
        """The /metrics samples: ``name{labels}`` -> value."""
        with httpx2.Client(trust_env=False, timeout=5) as plain:
            text = plain.get(f"http://{LOOPBACK}:{self.http_port}/metrics").text
        return parse_metrics(text)


def parse_metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


# --- registration ------------------------------------------------------------------------------


def for_loopback(config: dict[str, Any], base_url: str, ca_pem: bytes, namespaces: Sequence[str]) -> dict[str, Any]:
    """A rendered MutatingWebhookConfiguration pointed at ``base_url`` (each entry keeps its
    path) and limited to ``namespaces``, under a name of its own."""
    out = copy.deepcopy(config)
    out["metadata"]["name"] = f"{config['metadata']['name']}-{secrets.token_hex(4)}"
    out["metadata"].pop("annotations", None)  # cert-manager's injection: the caBundle is given here
    for hook in out["webhooks"]:
        path = hook["clientConfig"].get("service", {}).get("path", "/mutate")
        hook["clientConfig"] = {"url": f"{base_url}{path}", "caBundle": base64.b64encode(ca_pem).decode()}
        selector = hook.setdefault("namespaceSelector", {})
        selector.setdefault("matchExpressions", []).append(
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": sorted(namespaces)})
    return out


@contextlib.contextmanager
def registered(client: Client, config: dict[str, Any]) -> Iterator[str]:
    """Create the configuration; delete it when the block ends. Yields its name."""
    name = config["metadata"]["name"]
    client.create(from_dict(config))
    try:
        yield name
    finally:
        with contextlib.suppress(ApiError):
            client.delete(MutatingWebhookConfiguration, name)


def probe_pod(namespace: str, name: str | None = None, **spec: Any) -> dict[str, Any]:
    """A Pod manifest (never scheduled: no node or kubelet exists)."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name or f"probe-{secrets.token_hex(4)}", "namespace": namespace},
            "spec": {"containers": [{"name": "main", "image": "registry.invalid/none"}], **spec}}


def dry_run_create(client: Client, pod: dict[str, Any]) -> Any:
    """The Pod as the API server would store it (admission ran, nothing stored)."""
    return client.create(from_dict(pod), dry_run=True)


def wait_active(client: Client, namespace: str, timeout: float = 30.0, **pod: Any) -> Any:
    """Wait until the API server calls the webhook for Pods of ``namespace`` (it reads
    configurations through an informer: a new one takes effect a moment after its creation);
    returns the first mutated dry-run Pod."""
    def mutated() -> Any:
        stored = dry_run_create(client, probe_pod(namespace, **pod))
        return stored if stored.spec.dnsPolicy == "None" else None

    return wait_until(mutated, f"the webhook mutates a Pod in {namespace}", timeout, every=0.1)


# --- cert-manager ------------------------------------------------------------------------------


def install_cert_manager_crds(api: KubeAPI, timeout: float = 30.0) -> None:
    """The minimal cert-manager CRDs of ``testkit/crds/cert-manager/`` (Certificate, Issuer)
    installed in ``api`` and served; idempotent (a session's tests may each ask)."""
    plurals = []
    for path in sorted((CRD_DIR / "cert-manager").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        resp = api.http().post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
        assert resp.status_code in (201, 409), f"{path.name}: HTTP {resp.status_code}: {resp.text[:500]}"
        plurals.append(crd["spec"]["names"]["plural"])
    for plural in plurals:
        wait_until(functools.partial(_served, api, f"/apis/cert-manager.io/v1/{plural}"),
                   f"cert-manager.io/v1 {plural} served", timeout, every=0.1)


def _served(api: KubeAPI, path: str) -> bool:
    return bool(api.http().get(path).status_code == 200)
