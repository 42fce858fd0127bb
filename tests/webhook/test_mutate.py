"""The webhook's decision and patch, without a server: which Pods change, what they get, and that a
second call changes nothing."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from interkube.errors import MalformedReview, WebhookError
from interkube.webhook import mutate

NS = "shop"


def settings(**kw: Any) -> mutate.DnsSettings:
    kw.setdefault("searches", ["cluster.all"])
    return mutate.dns_settings(kw.pop("nameservers", ["10.96.0.10"]), **kw)


POLICY = mutate.policy(settings(), own_namespace="interkube")


def pod(spec: dict[str, Any] | None = None, *, labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None, name: str = "web-0") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    full_spec = {"containers": [{"name": "main", "image": "example"}], "dnsPolicy": "ClusterFirst", **(spec or {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": full_spec}


def request(obj: Any, *, namespace: str = NS, operation: str = "CREATE",
            kind: dict[str, str] | None = None, sub: str | None = None) -> dict[str, Any]:
    req: dict[str, Any] = {"uid": "u-1", "kind": kind or {"group": "", "version": "v1", "kind": "Pod"},
                           "resource": {"group": "", "version": "v1", "resource": "pods"},
                           "namespace": namespace, "operation": operation}
    if obj is not None:
        req["object"] = obj
    if sub:
        req["subResource"] = sub
    return req


def apply_patch(doc: dict[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 "add" (the only operation the webhook uses), on a copy."""
    out = copy.deepcopy(doc)
    for op in patch:
        assert op["op"] == "add", op
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        target = out
        for part in parents:
            target = target[part]
        target[last] = copy.deepcopy(op["value"])
    return out


def injected(obj: dict[str, Any], policy: mutate.Policy = POLICY) -> dict[str, Any]:
    decision = mutate.decide(request(obj), policy)
    assert decision.reason == mutate.INJECTED, decision
    return apply_patch(obj, list(decision.patch))


def test_cluster_first_pod_gets_interkube_and_the_cluster_search_list() -> None:
    out = injected(pod())
    assert out["spec"]["dnsPolicy"] == "None"
    assert out["spec"]["dnsConfig"] == {
        "nameservers": ["10.96.0.10"],
        "searches": [f"{NS}.svc.cluster.local", "svc.cluster.local", "cluster.local", "cluster.all"],
        "options": [{"name": "ndots", "value": "5"}],
    }
    assert out["metadata"]["annotations"] == {mutate.INJECTED_ANNOTATION: "10.96.0.10"}


def test_a_second_call_changes_nothing() -> None:
    once = injected(pod(annotations={"team": "a"}))
    assert once["metadata"]["annotations"] == {"team": "a", mutate.INJECTED_ANNOTATION: "10.96.0.10"}
    again = mutate.decide(request(once), POLICY)
    assert again.reason == mutate.DNS_POLICY and not again.patch


def test_the_pods_own_dns_config_is_merged_as_the_kubelet_merges_it() -> None:
    own = {"nameservers": ["192.0.2.53", "10.96.0.10"], "searches": ["corp.example", "svc.cluster.local."],
           "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}
    out = injected(pod({"dnsConfig": own}), mutate.policy(settings(options=["timeout:2"])))
    config = out["spec"]["dnsConfig"]
    assert config["nameservers"] == ["10.96.0.10", "192.0.2.53"]
    assert config["searches"] == [f"{NS}.svc.cluster.local", "svc.cluster.local", "cluster.local", "cluster.all",
                                  "corp.example"]
    # The Pod's own option wins over ours by name; order: ours first, then the Pod's new ones.
    assert config["options"] == [{"name": "ndots", "value": "2"}, {"name": "timeout", "value": "2"},
                                 {"name": "edns0"}]


def test_what_the_api_server_limits_is_cut_and_told() -> None:
    many = [f"d{i}.example" for i in range(40)]
    own = {"nameservers": ["192.0.2.1", "192.0.2.2", "192.0.2.3"], "searches": many}
    decision = mutate.decide(request(pod({"dnsConfig": own})), POLICY)
    config = apply_patch(pod(), list(decision.patch))["spec"]["dnsConfig"]
    assert config["nameservers"] == ["10.96.0.10", "192.0.2.1", "192.0.2.2"]
    assert len(config["searches"]) == mutate.MAX_SEARCHES
    assert config["searches"][4:] == many[:mutate.MAX_SEARCHES - 4]
    assert len(decision.warnings) == 2 and "192.0.2.3" in decision.warnings[0]

    long = ["x" * 60 + f".d{i}.example" for i in range(31)]
    config = injected(pod({"dnsConfig": {"searches": long}}))["spec"]["dnsConfig"]
    assert len(" ".join(config["searches"])) <= mutate.MAX_SEARCH_CHARS
    assert len(config["searches"]) < mutate.MAX_SEARCHES


@pytest.mark.parametrize(("obj", "namespace", "reason"), [
    (pod(), "kube-system", mutate.EXCLUDED_NAMESPACE),
    (pod(), "interkube", mutate.EXCLUDED_NAMESPACE),
    (pod(labels={"app.kubernetes.io/name": "interkube"}), NS, mutate.OWN_POD),
    (pod(labels={mutate.OPT_IN_KEY: "disabled"}), NS, mutate.OPTED_OUT),
    (pod(annotations={mutate.OPT_IN_KEY: "disabled"}), NS, mutate.OPTED_OUT),
    (pod({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["192.0.2.1"]}}), NS, mutate.DNS_POLICY),
    (pod({"dnsPolicy": "Default"}), NS, mutate.DNS_POLICY),
    (pod({"hostNetwork": True}), NS, mutate.HOST_NETWORK),
    (pod({"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"}), NS, mutate.HOST_NETWORK),
    (pod({"dnsConfig": {"searches": "not-a-list"}}), NS, mutate.INVALID_DNS_CONFIG),
])
def test_pods_left_alone(obj: dict[str, Any], namespace: str, reason: str) -> None:
    decision = mutate.decide(request(obj, namespace=namespace), POLICY)
    assert (decision.reason, decision.patch) == (reason, ())


def test_host_network_pods_follow_cluster_first_with_host_net_when_asked() -> None:
    policy = mutate.policy(settings(), host_network=True)
    out = injected(pod({"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"}), policy)
    assert out["spec"]["dnsPolicy"] == "None" and out["spec"]["dnsConfig"]["nameservers"] == ["10.96.0.10"]
    # A hostNetwork Pod on ClusterFirst resolves through the node in Kubernetes: still left alone.
    assert mutate.decide(request(pod({"hostNetwork": True})), policy).reason == mutate.HOST_NETWORK


def test_the_annotation_route_needs_the_pods_own_opt_in() -> None:
    assert mutate.decide(request(pod()), POLICY, require_opt_in=True).reason == mutate.NOT_OPTED_IN
    for marked in (pod(annotations={mutate.OPT_IN_KEY: "enabled"}), pod(labels={mutate.OPT_IN_KEY: "enabled"})):
        assert mutate.decide(request(marked), POLICY, require_opt_in=True).injected


@pytest.mark.parametrize(("req", "reason"), [
    (request(pod(), operation="UPDATE"), mutate.NOT_CREATE),
    (request({"kind": "ConfigMap"}, kind={"group": "", "version": "v1", "kind": "ConfigMap"}), mutate.NOT_POD),
    (request(pod(), kind={"group": "apps", "version": "v1", "kind": "Pod"}), mutate.NOT_POD),
    (request(pod(), sub="ephemeralcontainers"), mutate.NOT_POD),
    (request(None), mutate.NO_OBJECT),
    (request({"kind": "Pod", "metadata": {"name": "x"}}), mutate.NO_OBJECT),
])
def test_anything_but_a_pod_at_create_is_allowed_unchanged(req: dict[str, Any], reason: str) -> None:
    decision = mutate.decide(req, POLICY)
    assert (decision.reason, decision.patch) == (reason, ())


def test_annotation_keys_are_escaped_in_the_patch_path() -> None:
    decision = mutate.decide(request(pod(annotations={})), POLICY)
    assert decision.patch[-1]["path"] == "/metadata/annotations/interkube.io~1dns-injected"


def test_review_response_carries_a_base64_json_patch() -> None:
    decision = mutate.decide(request(pod()), POLICY)
    response = mutate.review_response("u-1", decision.patch)["response"]
    assert response["uid"] == "u-1" and response["allowed"] is True and response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"])) == list(decision.patch)
    assert mutate.review_response("u-2")["response"] == {"uid": "u-2", "allowed": True}


@pytest.mark.parametrize(("body", "words"), [
    (b"\xff\xfe", "not UTF-8"),
    (b"{not json", "not JSON"),
    (b"[1, 2]", "JSON list"),
    (b'{"kind": "Pod", "apiVersion": "v1"}', "kind is 'Pod'"),
    (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1", "request": {"uid": "a"}}',
     "only admission.k8s.io/v1"),
    (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}', "request is missing"),
    (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": ""}}', "uid"),
])
def test_malformed_reviews_say_what_is_wrong(body: bytes, words: str) -> None:
    with pytest.raises(MalformedReview, match=words):
        mutate.parse_review(body)


@pytest.mark.parametrize(("kw", "words"), [
    ({"nameservers": []}, "at least one"),
    ({"nameservers": ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]}, "at most 3"),
    ({"nameservers": ["10.0.0.256"]}, "not an IP"),
    ({"nameservers": ["fe80::1%eth0"]}, "not an IP"),
    ({"nameservers": ["10.0.0.1", "10.0.0.1"]}, "repeat"),
    ({"cluster_domain": "Cluster_Local"}, "not a DNS name"),
    ({"searches": ["-bad.example"]}, "not a DNS name"),
    ({"searches": [f"d{i}.example" for i in range(30)]}, "allows 32"),
    ({"searches": ["a" * 60 + f".x{i}" * 20 for i in range(20)]}, "allows 2048"),
    ({"ndots": 16}, "out of range"),
    ({"options": ["ndots:3"]}, "--ndots"),
    ({"options": ["bad option"]}, "NAME or NAME:VALUE"),
    ({"options": ["timeout:1", "timeout:2"]}, "twice"),
])
def test_settings_that_pods_could_not_use_are_refused(kw: dict[str, Any], words: str) -> None:
    with pytest.raises(WebhookError, match=words):
        settings(**kw)


def test_settings_normalise_and_keep_29_extra_domains_for_the_longest_namespace() -> None:
    s = mutate.dns_settings(["FD00::A"], cluster_domain="Cluster.Local.", searches=["cluster.local", "b.example"])
    assert (s.nameservers, s.cluster_domain, s.searches) == (("fd00::a",), "cluster.local", ("b.example",))
    assert len(settings(searches=[f"d{i}.example" for i in range(29)]).search_list("n" * 63)) == 32
