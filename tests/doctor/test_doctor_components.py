"""The parts around the server: interkube's /ready (a real server in this event loop, synced or
not with the real kube-apiserver) and the webhook's configuration as `interkube render webhook`
writes it, applied to the real kube-apiserver."""

from __future__ import annotations

import base64
import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import ApiError, Client
from lightkube.codecs import from_dict
from lightkube.resources.admissionregistration_v1 import MutatingWebhookConfiguration
from lightkube.resources.core_v1 import Secret, Service

from interkube.cli import main
from interkube.doctor.components import check_proxy
from interkube.doctor.findings import Level
from interkube.tlsutil import certs
from testkit.kubeapi import KubeAPI
from testkit.servers import LOOPBACK, free_port, in_process
from tests.doctor.helpers import ZONE, doctor, one, zone_file

# --- /ready -----------------------------------------------------------------------------------------


async def test_ready_of_a_running_server(tmp_path: Path) -> None:
    port = free_port()
    conf = tmp_path / "Corefile"
    conf.write_text(f"{ZONE}:{free_port()} {{\n bind {LOOPBACK}\n file {zone_file(tmp_path / 'z')}\n"
                    f" ready {LOOPBACK}:{port}\n}}\n")
    # Not running: the address the Corefile names is a note, a URL given is a failure.
    assert one(await doctor(corefile=str(conf)), "ready").level is Level.NOTE
    assert one(await doctor(ready=(f"http://{LOOPBACK}:{port}/ready",)), "ready").level is Level.FAIL
    async with in_process(conf.read_text()):
        ready = one(await doctor(corefile=str(conf)), "ready")
    assert ready.level is Level.OK and f"{LOOPBACK}:{port}" in ready.subject


async def test_ready_names_a_cluster_not_synced(tmp_path: Path, kube_api: KubeAPI) -> None:
    # May list Services only: the kubernetes stanza never finishes its first sync.
    restricted = kube_api.restricted_kubeconfig(f"doctor-{secrets.token_hex(3)}")
    port = free_port()
    conf = (f"cluster.local:{free_port()} {{\n bind {LOOPBACK}\n"
            f" kubernetes cluster.local {{\n  kubeconfig {restricted} {kube_api.name}\n  startup_timeout 1s\n }}\n"
            f" ready {LOOPBACK}:{port}\n}}\n")
    async with in_process(conf):
        ready = one(await doctor(ready=(f"http://{LOOPBACK}:{port}/ready",)), "ready")
    assert ready.level is Level.FAIL and "HTTP 503" in ready.evidence and "kubernetes" in ready.evidence


# --- the proxy -----------------------------------------------------------------------------------------


async def test_proxy_not_running_here() -> None:
    # The table is looked for in this namespace (never changed here): absent, a note.
    assert [f.level for f in await check_proxy(None, None, 2.0)] == [Level.NOTE]
    found = await check_proxy(f"http://{LOOPBACK}:{free_port()}", None, 2.0)
    assert one(found, "proxy.ready").level is Level.FAIL


# --- the webhook -----------------------------------------------------------------------------------------


def rendered(capsys: pytest.CaptureFixture[str], name: str, namespace: str) -> dict[str, dict[str, Any]]:
    capsys.readouterr()
    assert main(["render", "webhook", "-o", "-", "--name", name, "--namespace", namespace,
                 "--nameserver", "10.96.0.53"]) == 0
    return {obj["kind"]: obj for obj in yaml.safe_load_all(capsys.readouterr().out) if obj}


@contextlib.contextmanager
def applied(client: Client, objects: dict[str, dict[str, Any]], namespace: str) -> Iterator[str]:
    """The configuration (narrowed to ``namespace``, where no Pod is made: it calls nothing), its
    Secret and Service; the configuration (cluster-scoped) is deleted afterwards."""
    config = objects["MutatingWebhookConfiguration"]
    for hook in config["webhooks"]:
        hook["namespaceSelector"]["matchExpressions"].append(
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [namespace]})
    for kind in ("Secret", "Service"):
        client.create(from_dict(objects[kind]))
    client.create(from_dict(config))
    try:
        yield config["metadata"]["name"]
    finally:
        with contextlib.suppress(ApiError):
            client.delete(MutatingWebhookConfiguration, config["metadata"]["name"])


async def test_webhook_configuration(capsys: pytest.CaptureFixture[str], kube_api: KubeAPI, kube_client: Client,
                                     kube_ns: str) -> None:
    name = f"doctor-{secrets.token_hex(3)}"
    objects = rendered(capsys, name, kube_ns)
    with applied(kube_client, objects, kube_ns):
        found = await doctor(kubeconfig=str(kube_api.kubeconfig), contexts=(kube_api.name,), webhook=name,
                             dns_service=f"{kube_ns}/none")
        for id in ("webhook.ca-bundle", "webhook.service", "webhook.tls-name", "webhook.tls-chain",
                   "webhook.tls-expiry"):
            levels = {f.level for f in found if f.id == id}
            assert levels == {Level.OK}, [f for f in found if f.id == id]
        assert f"{name}.{kube_ns}.svc" in one(found, "webhook.tls-name").evidence

        # A serving certificate from another CA than the caBundle's, and the Service gone.
        other = certs.create_ca("another CA")
        leaf = certs.issue(other, f"{name}.{kube_ns}.svc", dns_names=[f"{name}.{kube_ns}.svc"])
        secret = objects["Secret"]
        secret["data"]["tls.crt"] = base64.b64encode(leaf.cert_pem()).decode()
        kube_client.replace(from_dict(secret))
        found = await doctor(kubeconfig=str(kube_api.kubeconfig), contexts=(kube_api.name,), webhook=name,
                             dns_service=f"{kube_ns}/none")
        chain = one(found, "webhook.tls-chain")
        assert chain.level is Level.FAIL and "another CA" in chain.evidence
        # No caBundle (cert-manager's injection not done).
        config = kube_client.get(MutatingWebhookConfiguration, name)
        for hook in config.webhooks:
            hook.clientConfig.caBundle = None
        kube_client.replace(config)
        found = await doctor(kubeconfig=str(kube_api.kubeconfig), contexts=(kube_api.name,), webhook=name,
                             dns_service=f"{kube_ns}/none")
        assert {f.level for f in found if f.id == "webhook.ca-bundle"} == {Level.FAIL}
        kube_client.delete(Service, name, namespace=kube_ns)
        found = await doctor(kubeconfig=str(kube_api.kubeconfig), contexts=(kube_api.name,), webhook=name,
                             dns_service=f"{kube_ns}/none")
        assert one(found, "webhook.service").level is Level.FAIL
        assert kube_client.get(Secret, f"{name}-tls", namespace=kube_ns)  # still there: only the Service went
    missing = await doctor(kubeconfig=str(kube_api.kubeconfig), contexts=(kube_api.name,), webhook=name,
                           dns_service=f"{kube_ns}/none")
    assert one(missing, "webhook.configuration").level is Level.FAIL
