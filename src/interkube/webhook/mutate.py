"""What the webhook does to one AdmissionReview: pure functions, no I/O.

A Pod at CREATE gets ``dnsPolicy: None`` and a ``dnsConfig`` that reproduces what
``ClusterFirst`` would have given it, with interkube as the nameserver: the search list
``NS.svc.DOMAIN svc.DOMAIN DOMAIN`` plus configured extra domains (``cluster.all``), ``ndots``
and other options. A ``dnsConfig`` the Pod already had is merged the way the kubelet merges it
under ``ClusterFirst`` (its nameservers and searches after ours, its options overriding ours by
name), cut to the limits the API server enforces for ``dnsPolicy: None`` (3 nameservers, 32
search domains, 2048 characters) where the kubelet would have cut them when writing
resolv.conf.

Left unchanged, with the reason (a metric label) and words for the log:

* anything but a Pod at CREATE, or a review without an object;
* Pods in kube-system, in the webhook's own namespace or another excluded one, and interkube's
  own Pods (label ``app.kubernetes.io/name: interkube``);
* Pods opted out (label or annotation ``interkube.io/dns-injection: disabled``), and on the
  annotation route (:data:`ANNOTATED_PATH`) Pods that did not opt in with ``enabled``;
* ``dnsPolicy: None`` (the Pod chose its DNS; this is also what makes a second call a no-op)
  and ``dnsPolicy: Default`` (the Pod asked for the node's resolver);
* ``hostNetwork: true`` Pods, unless hostNetwork injection is on; then, as in Kubernetes, only
  those with ``dnsPolicy: ClusterFirstWithHostNet`` (the others use the node's DNS).

The namespace-label and pod-label opt-ins are the MutatingWebhookConfiguration's selectors
(``interkube.webhook.manifests``): the API server sends only what they match.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from interkube.errors import MalformedReview, WebhookError

ADMISSION_API_VERSION = "admission.k8s.io/v1"

#: Label (on a namespace or a Pod) or annotation (on a Pod): ``enabled`` opts in, ``disabled`` out.
OPT_IN_KEY = "interkube.io/dns-injection"
ENABLED, DISABLED = "enabled", "disabled"
#: Annotation set on every Pod the webhook changed: the nameservers it gave.
INJECTED_ANNOTATION = "interkube.io/dns-injected"
#: interkube's own Pods (the DNS servers and this webhook, as `interkube render` labels them)
#: are never changed.
OWN_LABEL, OWN_VALUE = "app.kubernetes.io/name", "interkube"
#: Always excluded: the cluster's own components.
SYSTEM_NAMESPACE = "kube-system"
#: The two routes: Pods sent to MUTATE_PATH were chosen by the configuration's selectors (a
#: namespace or Pod label); those sent to ANNOTATED_PATH must carry the opt-in themselves, as an
#: annotation (which no selector can match) or label.
MUTATE_PATH = "/mutate"
ANNOTATED_PATH = "/mutate-annotated"

# The API server's limits for a Pod's dnsConfig (k8s.io/kubernetes pkg/apis/core/validation:
# MaxDNSNameservers, MaxDNSSearchPaths, MaxDNSSearchListChars; the last two since
# ExpandedDNSConfig, GA in 1.28). tests/webhook check them against the real API server.
MAX_NAMESERVERS = 3
MAX_SEARCHES = 32
MAX_SEARCH_CHARS = 2048
#: A namespace name is a DNS label: the longest ``NS.svc.DOMAIN`` the search list can hold.
MAX_NAMESPACE_LEN = 63
#: resolv(5) caps ndots at 15.
MAX_NDOTS = 15

# Reasons: the ``reason`` label of interkube_webhook_admissions_total (a fixed set).
INJECTED = "injected"
NOT_CREATE = "not-create"
NOT_POD = "not-pod"
NO_OBJECT = "no-object"
EXCLUDED_NAMESPACE = "excluded-namespace"
OWN_POD = "own-pod"
OPTED_OUT = "opted-out"
NOT_OPTED_IN = "not-opted-in"
HOST_NETWORK = "host-network"
DNS_POLICY = "dns-policy"
INVALID_DNS_CONFIG = "invalid-dns-config"
REASONS: tuple[str, ...] = (INJECTED, NOT_CREATE, NOT_POD, NO_OBJECT, EXCLUDED_NAMESPACE, OWN_POD, OPTED_OUT,
                            NOT_OPTED_IN, HOST_NETWORK, DNS_POLICY, INVALID_DNS_CONFIG)

_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")
_OPTION_NAME_RE = re.compile(r"^[^\s:]+$")


# --- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DnsSettings:
    """What every injected Pod gets, validated once (:func:`dns_settings`)."""

    nameservers: tuple[str, ...]
    cluster_domain: str = "cluster.local"
    #: Extra search domains, after the cluster's three.
    searches: tuple[str, ...] = ()
    #: resolv.conf options as (name, value or None); ndots first.
    options: tuple[tuple[str, str | None], ...] = (("ndots", "5"),)

    def search_list(self, namespace: str) -> list[str]:
        domain = self.cluster_domain
        return [f"{namespace}.svc.{domain}", f"svc.{domain}", domain, *self.searches]

    def option_list(self) -> list[dict[str, str]]:
        return [{"name": n} if v is None else {"name": n, "value": v} for n, v in self.options]


def _subdomain(text: str, what: str) -> str:
    name = text.strip().lower().removesuffix(".")
    if len(name) > 253 or not _SUBDOMAIN_RE.match(name):
        raise WebhookError(f"{what} {text!r} is not a DNS name (lower-case labels of a-z, 0-9 and '-')")
    return name


def nameserver(text: str) -> str:
    """An IPv4 or IPv6 address as the API server accepts it in ``dnsConfig.nameservers``."""
    try:
        if "%" in text:  # a zone index: ip_address takes it, the API server does not
            raise ValueError(text)
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise WebhookError(f"nameserver {text!r} is not an IP address") from None


def dns_settings(nameservers: Sequence[str], *, cluster_domain: str = "cluster.local",
                 searches: Iterable[str] = (), ndots: int = 5,
                 options: Iterable[str] = ()) -> DnsSettings:
    """Validated settings: 1 to 3 nameservers, DNS names, ``NAME[:VALUE]`` options, and a search
    list that stays within the API server's limits for the longest namespace name."""
    servers = [nameserver(n) for n in nameservers]
    if not servers:
        raise WebhookError("at least one nameserver is needed (interkube's Service IP)")
    if len(set(servers)) != len(servers):
        raise WebhookError(f"nameservers repeat: {', '.join(servers)}")
    if len(servers) > MAX_NAMESERVERS:
        raise WebhookError(f"at most {MAX_NAMESERVERS} nameservers (the API server's limit), got {len(servers)}")
    domain = _subdomain(cluster_domain, "cluster domain")
    base = DnsSettings(tuple(servers), domain)
    extra: list[str] = []
    for text in searches:
        name = _subdomain(text, "search domain")
        if name not in extra and name not in base.search_list("x")[1:]:
            extra.append(name)
    if not 0 <= ndots <= MAX_NDOTS:
        raise WebhookError(f"ndots {ndots} is out of range (0 to {MAX_NDOTS})")
    opts: list[tuple[str, str | None]] = [("ndots", str(ndots))]
    for text in options:
        name, colon, value = text.partition(":")
        if not _OPTION_NAME_RE.match(name):
            raise WebhookError(f"option {text!r} is not NAME or NAME:VALUE")
        if name == "ndots":
            raise WebhookError("set ndots with --ndots, not as an option")
        if any(n == name for n, _ in opts):
            raise WebhookError(f"option {name!r} is given twice")
        opts.append((name, value if colon else None))
    settings = DnsSettings(tuple(servers), domain, tuple(extra), tuple(opts))
    longest = settings.search_list("n" * MAX_NAMESPACE_LEN)
    if len(longest) > MAX_SEARCHES:
        raise WebhookError(f"{len(longest)} search domains (the cluster's 3 and {len(extra)} more); "
                           f"the API server allows {MAX_SEARCHES}")
    if len(" ".join(longest)) > MAX_SEARCH_CHARS:
        raise WebhookError(f"the search list would reach {len(' '.join(longest))} characters in a namespace "
                           f"with a {MAX_NAMESPACE_LEN}-character name; the API server allows {MAX_SEARCH_CHARS}")
    return settings


@dataclass(frozen=True)
class Policy:
    """Which Pods are changed and what they get."""

    dns: DnsSettings
    #: Never changed: kube-system, the webhook's own namespace, and any other given.
    excluded_namespaces: frozenset[str] = frozenset({SYSTEM_NAMESPACE})
    #: Change hostNetwork Pods too (those with dnsPolicy ClusterFirstWithHostNet).
    host_network: bool = False


def policy(dns: DnsSettings, *, own_namespace: str | None = None, exclude: Iterable[str] = (),
           host_network: bool = False) -> Policy:
    excluded = {SYSTEM_NAMESPACE, *exclude}
    if own_namespace:
        excluded.add(own_namespace)
    return Policy(dns, frozenset(excluded), host_network)


# --- reviews -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Review:
    """The parts of an AdmissionReview the webhook reads."""

    uid: str
    request: Mapping[str, Any]


def parse_review(body: bytes) -> Review:
    """An ``admission.k8s.io/v1`` AdmissionReview from a request body, or MalformedReview saying
    what is wrong with it."""
    try:
        # Decoded here: json.loads would guess UTF-16 or UTF-32 from the first bytes.
        doc = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise MalformedReview("the body is not UTF-8 JSON") from None
    except ValueError as exc:
        raise MalformedReview(f"the body is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise MalformedReview(f"the body is a JSON {type(doc).__name__}, not an AdmissionReview object")
    if doc.get("kind") != "AdmissionReview":
        raise MalformedReview(f"kind is {doc.get('kind')!r}, not 'AdmissionReview'")
    if doc.get("apiVersion") != ADMISSION_API_VERSION:
        raise MalformedReview(f"apiVersion {doc.get('apiVersion')!r} is not served: only {ADMISSION_API_VERSION} "
                              f"(admissionReviewVersions: [v1])")
    request = doc.get("request")
    if not isinstance(request, dict):
        raise MalformedReview("request is missing or not an object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReview("request.uid is missing")
    return Review(uid, request)


def review_response(uid: str, patch: Sequence[Mapping[str, Any]] = (),
                    warnings: Sequence[str] = ()) -> dict[str, Any]:
    """The AdmissionReview answering ``uid``: allowed, with the JSONPatch when there is one."""
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(list(patch), separators=(",", ":")).encode()).decode()
    if warnings:
        response["warnings"] = list(warnings)
    return {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": response}


# --- the decision ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What to do with one review: a patch (empty: unchanged), why, and words for the log."""

    reason: str
    subject: str
    detail: str = ""
    patch: tuple[dict[str, Any], ...] = ()
    #: Shown to the client that created the Pod (kubectl prints them): what was dropped.
    warnings: tuple[str, ...] = ()

    @property
    def injected(self) -> bool:
        return bool(self.patch)


class _Unmergeable(Exception):
    """The Pod's own dnsConfig has a shape the API server will refuse anyway."""


def _strings(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Unmergeable(f"dnsConfig.{what} is not a list of strings")
    return list(value)


def merged_dns_config(own: Any, namespace: str, dns: DnsSettings) -> tuple[dict[str, Any], list[str]]:
    """Our dnsConfig with the Pod's own merged in as the kubelet merges it under ClusterFirst,
    and the warnings for what the API server's limits made us drop."""
    if own is None:
        own = {}
    if not isinstance(own, dict):
        raise _Unmergeable("dnsConfig is not an object")
    warnings: list[str] = []

    nameservers = list(dict.fromkeys([*dns.nameservers, *_strings(own.get("nameservers"), "nameservers")]))
    if len(nameservers) > MAX_NAMESERVERS:
        warnings.append(f"interkube: nameservers beyond {MAX_NAMESERVERS} dropped: "
                        f"{' '.join(nameservers[MAX_NAMESERVERS:])}")
        nameservers = nameservers[:MAX_NAMESERVERS]

    searches = dns.search_list(namespace)
    seen = {s.lower().removesuffix(".") for s in searches}
    length = len(" ".join(searches))
    dropped = []
    for search in _strings(own.get("searches"), "searches"):
        key = search.lower().removesuffix(".")
        if key in seen:
            continue
        if len(searches) >= MAX_SEARCHES or length + 1 + len(search) > MAX_SEARCH_CHARS:
            dropped.append(search)
            continue
        seen.add(key)
        searches.append(search)
        length += 1 + len(search)
    if dropped:
        warnings.append(f"interkube: {len(dropped)} search domain(s) dropped to stay within "
                        f"{MAX_SEARCHES} domains / {MAX_SEARCH_CHARS} characters")

    options: dict[str, dict[str, str]] = {o["name"]: o for o in dns.option_list()}
    own_options = own.get("options")
    if own_options is not None:
        if not isinstance(own_options, list):
            raise _Unmergeable("dnsConfig.options is not a list")
        for option in own_options:
            if not isinstance(option, dict) or not isinstance(option.get("name"), str):
                raise _Unmergeable("dnsConfig.options has an entry without a name")
            options[option["name"]] = dict(option)  # the Pod's own option wins, as in the kubelet

    return {"nameservers": nameservers, "searches": searches, "options": list(options.values())}, warnings


def _pointer(key: str) -> str:
    """``key`` as one JSON Pointer token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def _text_map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _subject(request: Mapping[str, Any], obj: Mapping[str, Any] | None) -> str:
    meta = _text_map(obj.get("metadata")) if obj else {}
    namespace = request.get("namespace") or meta.get("namespace") or ""
    name = request.get("name") or meta.get("name") or (f"{meta['generateName']}*" if meta.get("generateName") else "")
    return f"{namespace}/{name}" if namespace else str(name or "?")


def decide(request: Mapping[str, Any], policy: Policy, *, require_opt_in: bool = False) -> Decision:
    """The decision for one review's ``request`` (see the module's docstring)."""
    kind = _text_map(request.get("kind"))
    obj = request.get("object")
    subject = _subject(request, obj if isinstance(obj, dict) else None)
    operation = request.get("operation")
    if operation != "CREATE":
        return Decision(NOT_CREATE, subject, f"operation {operation}")
    if kind.get("group", "") != "" or kind.get("kind") != "Pod" or request.get("subResource"):
        what = "/".join(p for p in (kind.get("group"), kind.get("version")) if p)
        sub = f" subresource {request['subResource']}" if request.get("subResource") else ""
        return Decision(NOT_POD, subject, f"kind {what} {kind.get('kind')}{sub}")
    if not isinstance(obj, dict):
        return Decision(NO_OBJECT, subject, "the review carries no object")
    if obj.get("kind", "Pod") != "Pod":
        return Decision(NOT_POD, subject, f"object of kind {obj.get('kind')}")
    spec = obj.get("spec")
    meta = _text_map(obj.get("metadata"))
    namespace = request.get("namespace") or meta.get("namespace")
    if not isinstance(spec, dict) or not namespace or not isinstance(namespace, str):
        return Decision(NO_OBJECT, subject, "the Pod has no spec" if not isinstance(spec, dict) else
                        "the Pod has no namespace")

    if namespace in policy.excluded_namespaces:
        return Decision(EXCLUDED_NAMESPACE, subject, f"namespace {namespace} is excluded")
    labels, annotations = _text_map(meta.get("labels")), _text_map(meta.get("annotations"))
    if labels.get(OWN_LABEL) == OWN_VALUE:
        return Decision(OWN_POD, subject, f"interkube's own Pod ({OWN_LABEL}={OWN_VALUE})")
    marks = (labels.get(OPT_IN_KEY), annotations.get(OPT_IN_KEY))
    if DISABLED in marks:
        return Decision(OPTED_OUT, subject, f"{OPT_IN_KEY}={DISABLED}")
    if require_opt_in and ENABLED not in marks:
        return Decision(NOT_OPTED_IN, subject, f"no {OPT_IN_KEY}={ENABLED} annotation or label")

    dns_policy = spec.get("dnsPolicy") or "ClusterFirst"
    if dns_policy == "None":
        return Decision(DNS_POLICY, subject, "dnsPolicy is already None")
    if spec.get("hostNetwork") is True:
        if not policy.host_network:
            return Decision(HOST_NETWORK, subject, "hostNetwork Pod (injection into them is off)")
        if dns_policy != "ClusterFirstWithHostNet":
            return Decision(HOST_NETWORK, subject, f"hostNetwork Pod with dnsPolicy {dns_policy} uses the node's DNS")
    elif dns_policy not in ("ClusterFirst", "ClusterFirstWithHostNet"):
        return Decision(DNS_POLICY, subject, f"dnsPolicy {dns_policy} (only ClusterFirst Pods are changed)")

    try:
        config, warnings = merged_dns_config(spec.get("dnsConfig"), namespace, policy.dns)
    except _Unmergeable as exc:
        return Decision(INVALID_DNS_CONFIG, subject, str(exc))
    patch: list[dict[str, Any]] = [
        # "add" replaces a member that exists (RFC 6902 4.1): dnsPolicy always does (defaulted).
        {"op": "add", "path": "/spec/dnsPolicy", "value": "None"},
        {"op": "add", "path": "/spec/dnsConfig", "value": config},
    ]
    marker = ",".join(config["nameservers"])
    if isinstance(meta.get("annotations"), dict):
        patch.append({"op": "add", "path": f"/metadata/annotations/{_pointer(INJECTED_ANNOTATION)}",
                      "value": marker})
    else:
        patch.append({"op": "add", "path": "/metadata/annotations", "value": {INJECTED_ANNOTATION: marker}})
    detail = f"nameservers {marker}, searches {' '.join(config['searches'])}"
    return Decision(INJECTED, subject, detail, tuple(patch), tuple(warnings))
