"""The real kube-apiserver calling ``interkube webhook``: the configuration ``interkube render
webhook`` writes (pointed at the process on loopback, limited to this test's namespaces) decides
which Pods are sent, the webhook what they get, and the API server stores the result."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lightkube import ApiError, Client
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import Pod

from interkube.webhook import mutate
from testkit.kubeapi import KubeAPI
from testkit.webhook import NAMESERVER, WebhookProcess, dry_run_create, probe_pod, wait_active

pytestmark = pytest.mark.peers

ENABLED = {mutate.OPT_IN_KEY: mutate.ENABLED}


def create(client: Client, namespace: str, name: str, *, labels: dict[str, str] | None = None,
           annotations: dict[str, str] | None = None, **spec: Any) -> Any:
    """Create a Pod for real and read back what the API server stored."""
    pod = probe_pod(namespace, name, **spec)
    if labels is not None:
        pod["metadata"]["labels"] = labels
    if annotations is not None:
        pod["metadata"]["annotations"] = annotations
    client.create(from_dict(pod))
    return client.get(Pod, name, namespace=namespace)


def injected(pod: Any) -> bool:
    return bool(pod.spec.dnsPolicy == "None")


def test_a_pod_in_a_labelled_namespace_is_stored_with_interkubes_dns(
        webhook: WebhookProcess, register: Callable[..., str], namespaces: Callable[..., str],
        kube_client: Client) -> None:
    ns = namespaces(ENABLED)
    register(webhook, [ns])
    wait_active(kube_client, ns)
    pod = create(kube_client, ns, "app")
    assert pod.spec.dnsPolicy == "None"
    assert pod.spec.dnsConfig.nameservers == [NAMESERVER]
    assert pod.spec.dnsConfig.searches == [f"{ns}.svc.cluster.local", "svc.cluster.local", "cluster.local",
                                           "cluster.all"]
    assert [(o.name, o.value) for o in pod.spec.dnsConfig.options] == [("ndots", "5")]
    assert pod.metadata.annotations[mutate.INJECTED_ANNOTATION] == NAMESERVER


@contextlib.contextmanager
def system_pod(client: Client, name: str) -> Iterator[Any]:
    """A Pod in the shared kube-system namespace, opted in by its label, deleted afterwards."""
    try:
        yield create(client, "kube-system", name, labels=ENABLED)
    finally:
        with contextlib.suppress(ApiError):
            client.delete(Pod, name, namespace="kube-system", grace_period=0)


def test_unlabelled_namespaces_kube_system_and_host_network_pods_are_stored_unchanged(
        webhook: WebhookProcess, register: Callable[..., str], namespaces: Callable[..., str],
        kube_client: Client) -> None:
    labelled, plain = namespaces(ENABLED), namespaces()
    # kube-system is in the test's namespaces: what keeps it out is the rendered configuration.
    register(webhook, [labelled, plain, "kube-system"])
    wait_active(kube_client, labelled)
    before = webhook.metrics()

    unlabelled = create(kube_client, plain, "plain")
    with system_pod(kube_client, f"sys-{plain}"[:63]) as system:
        host = create(kube_client, labelled, "host", hostNetwork=True)
        for pod in (unlabelled, system, host):
            assert pod.spec.dnsPolicy == "ClusterFirst", pod.metadata.name
            assert pod.spec.dnsConfig is None
            assert mutate.INJECTED_ANNOTATION not in (pod.metadata.annotations or {})
    # Only the hostNetwork Pod reached the webhook (the selectors kept the others away), and it
    # said no.
    after = webhook.metrics()
    host_key = 'interkube_webhook_admissions_total{outcome="unchanged",reason="host-network"}'
    assert after[host_key] - before[host_key] == 1
    assert sum(v for k, v in after.items() if k.startswith("interkube_webhook_admissions_total")) - \
        sum(v for k, v in before.items() if k.startswith("interkube_webhook_admissions_total")) == 1


def test_pod_label_and_annotation_opt_in_elsewhere_and_opt_out(
        webhook: WebhookProcess, register: Callable[..., str], namespaces: Callable[..., str],
        kube_client: Client) -> None:
    labelled, plain = namespaces(ENABLED), namespaces()
    register(webhook, [labelled, plain], "--opt-in", "namespace,pod-label,annotation")
    wait_active(kube_client, labelled)
    assert injected(create(kube_client, plain, "by-label", labels=ENABLED))
    assert injected(create(kube_client, plain, "by-annotation", annotations=ENABLED))
    assert not injected(create(kube_client, plain, "not-asked"))
    disabled = {mutate.OPT_IN_KEY: mutate.DISABLED}
    assert not injected(create(kube_client, labelled, "opted-out", labels=disabled))
    assert injected(create(kube_client, labelled, "in-namespace"))


def test_the_namespace_opt_in_alone_ignores_pod_labels(
        webhook: WebhookProcess, register: Callable[..., str], namespaces: Callable[..., str],
        kube_client: Client) -> None:
    labelled, plain = namespaces(ENABLED), namespaces()
    register(webhook, [labelled, plain], "--opt-in", "namespace")
    wait_active(kube_client, labelled)
    assert not injected(create(kube_client, plain, "by-label", labels=ENABLED))


def test_a_pods_own_dns_config_is_merged_within_the_api_servers_limits_and_the_client_told(
        webhook: WebhookProcess, register: Callable[..., str], namespaces: Callable[..., str],
        kube_client: Client, kube_api: KubeAPI) -> None:
    ns = namespaces(ENABLED)
    register(webhook, [ns])
    wait_active(kube_client, ns)
    own = {"nameservers": ["192.0.2.1", "192.0.2.2", "192.0.2.3"],
           "searches": [f"d{i}.example" for i in range(32)],
           "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}
    # The API server validates the merged result; the webhook's warnings come back as HTTP
    # Warning headers, which kubectl prints.
    resp = kube_api.http().post(f"/api/v1/namespaces/{ns}/pods", json=probe_pod(ns, "own-config", dnsConfig=own))
    assert resp.status_code == 201, resp.text
    warnings = resp.headers.get_list("warning")
    assert any("nameservers beyond 3 dropped: 192.0.2.3" in w for w in warnings), warnings
    assert any("search domain(s) dropped" in w for w in warnings), warnings
    pod = kube_client.get(Pod, "own-config", namespace=ns)
    assert pod.spec.dnsConfig.nameservers == [NAMESERVER, "192.0.2.1", "192.0.2.2"]
    assert len(pod.spec.dnsConfig.searches) == mutate.MAX_SEARCHES
    assert [(o.name, o.value) for o in pod.spec.dnsConfig.options] == [("ndots", "2"), ("edns0", None)]


def test_a_stored_pod_sent_again_is_left_as_it_is(
        webhook: WebhookProcess, register: Callable[..., str], namespaces: Callable[..., str],
        kube_client: Client) -> None:
    """What a reinvocation (reinvocationPolicy IfNeeded) sends: the Pod as already mutated."""
    ns = namespaces(ENABLED)
    register(webhook, [ns])
    stored = wait_active(kube_client, ns)
    obj = json.loads(json.dumps(stored.to_dict()))
    body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {"uid": "again", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                                   "namespace": ns, "operation": "CREATE", "object": obj}}).encode()
    response = webhook.post(body).json()["response"]
    assert response == {"uid": "again", "allowed": True}


@pytest.mark.parametrize("policy", ["Ignore", "Fail"])
def test_with_the_webhook_down_ignore_lets_pods_through_and_fail_blocks_them(
        policy: str, tmp_webhook: Callable[..., WebhookProcess], register: Callable[..., str],
        namespaces: Callable[..., str], kube_client: Client) -> None:
    process = tmp_webhook()
    ns = namespaces(ENABLED)
    register(process, [ns], "--failure-policy", policy)
    wait_active(kube_client, ns)
    process.stop()
    if policy == "Ignore":
        pod = create(kube_client, ns, "while-down")
        assert pod.spec.dnsPolicy == "ClusterFirst"
        return
    with pytest.raises(ApiError) as refused:
        create(kube_client, ns, "while-down")
    assert 'failed calling webhook "namespace.dns.interkube.io"' in refused.value.status.message
    with pytest.raises(ApiError) as missing:
        kube_client.get(Pod, "while-down", namespace=ns)
    assert missing.value.status.code == 404


def _dns_config_accepted(client: Client, namespace: str, config: dict[str, Any]) -> bool:
    try:
        dry_run_create(client, probe_pod(namespace, dnsPolicy="None", dnsConfig=config))
    except ApiError as err:
        assert err.status.code == 422, err.status.message
        return False
    return True


def test_the_limits_the_webhook_keeps_are_the_api_servers(namespaces: Callable[..., str],
                                                          kube_client: Client) -> None:
    ns = namespaces()

    def accepted(**config: Any) -> bool:
        return _dns_config_accepted(kube_client, ns, {"nameservers": [NAMESERVER], **config})

    servers = [f"10.96.0.{i}" for i in range(1, mutate.MAX_NAMESERVERS + 2)]
    assert accepted(nameservers=servers[:mutate.MAX_NAMESERVERS])
    assert not accepted(nameservers=servers)
    domains = [f"d{i}.example" for i in range(mutate.MAX_SEARCHES + 1)]
    assert accepted(searches=domains[:mutate.MAX_SEARCHES])
    assert not accepted(searches=domains)
    # 2048 characters joined by spaces: eight names of 249 characters (labels of 49) and one of 48.
    long = [".".join([chr(ord("a") + i) * 49] * 5) for i in range(8)]
    exact = [*long, "z" * 48]
    assert len(" ".join(exact)) == mutate.MAX_SEARCH_CHARS
    assert accepted(searches=exact)
    assert not accepted(searches=[*long, "z" * 49])
    # dnsPolicy None needs a nameserver: why the webhook's --nameserver is required.
    assert not _dns_config_accepted(kube_client, ns, {"searches": ["a.example"]})


def test_a_patch_is_what_the_api_server_applies(webhook: WebhookProcess, register: Callable[..., str],
                                                namespaces: Callable[..., str], kube_client: Client) -> None:
    """The JSONPatch paths hold for a Pod with annotations already (a member added) and without."""
    ns = namespaces(ENABLED)
    register(webhook, [ns])
    wait_active(kube_client, ns)
    with_annotations = create(kube_client, ns, "annotated", annotations={"team/owner": "a"})
    assert with_annotations.metadata.annotations == {"team/owner": "a", mutate.INJECTED_ANNOTATION: NAMESERVER}
    without = create(kube_client, ns, "bare")
    assert without.metadata.annotations == {mutate.INJECTED_ANNOTATION: NAMESERVER}
