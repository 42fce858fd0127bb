"""A real kube-apiserver (with etcd) on loopback for tests, and helpers to fill it with objects.

Everything binds to 127.0.0.1 on ephemeral ports and lives in one temporary directory:
generated certificates (a CA, the serving certificate, an admin client certificate, the
service-account signing key), etcd's data, the logs and the kubeconfigs. There are no
controllers and no nodes: objects that controllers would write (EndpointSlices, pod IPs in
status) are written directly by :class:`KubeObjects`.

Typical use (the pytest fixtures in ``testkit/peerfixtures.py`` do this)::

    api = KubeAPI(workdir, apiserver_bin, etcd_bin)
    api.start()
    api.install_mcs_crds()
    objs = KubeObjects(api.client())
    ns = objs.namespace("demo")
    objs.service(ns, "web", ports=[("http", 80, "TCP")])
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import ipaddress
import json
import ssl
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx2
import yaml
from cryptography.hazmat.primitives import serialization
from lightkube import ApiError, Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from interkube.tlsutil import certs
from testkit.peers import PeerFailed, PeerProcess, free_port
from testkit.waiting import NeverHappened, wait_until

#: Service ClusterIP ranges given to the API server: dual-stack, private ranges (RFC 1918 and
#: an RFC 4193 ULA). They are only values written into Service objects; nothing ever sends a
#: packet to them.
SERVICE_CIDRS: tuple[str, str] = ("10.96.0.0/16", "fd00:10:96::/112")

#: Where the MCS CustomResourceDefinitions live (written from the mcs-api v1alpha1 schema).
CRD_DIR = Path(__file__).with_name("crds")

MCS_GROUP = "multicluster.x-k8s.io"
MCS_VERSION = "v1alpha1"
ServiceExport = create_namespaced_resource(MCS_GROUP, MCS_VERSION, "ServiceExport", "serviceexports")
ServiceImport = create_namespaced_resource(MCS_GROUP, MCS_VERSION, "ServiceImport", "serviceimports")

#: The user in the admin kubeconfig; system:masters is bound to cluster-admin by the API
#: server's bootstrap policy, so no RBAC objects are needed for it.
ADMIN_USER = "interkube-admin"

#: Resources whose watch cache is turned off, so that a watch on them is served by etcd itself
#: and an etcd compaction is what makes an old resourceVersion answer 410 Gone. Everything else
#: keeps the watch cache, as in a real cluster.
UNCACHED_RESOURCES: tuple[str, ...] = ("configmaps",)


# --- certificates ----------------------------------------------------------------------------

#: Validity of the test cluster's certificates: longer than any test run, short enough that a
#: leaked one is worthless.
CERT_DAYS = 2


class Pki:
    """The certificates and keys of one test cluster, as files in ``dir`` (made with
    :mod:`interkube.tlsutil.certs`, as ``interkube certs`` makes a deployment's)."""

    def __init__(self, directory: Path, ca: certs.Issued) -> None:
        self.dir = directory
        self.ca = ca
        self.ca_cert_pem = ca.cert_pem()
        self.layout = certs.Layout(directory)
        self.ca_cert = self.layout.ca_cert
        self.serving_cert, self.serving_key = directory / "apiserver.crt", directory / "apiserver.key"
        self.sa_key, self.sa_pub = directory / "sa.key", directory / "sa.pub"

    @classmethod
    def create(cls, directory: Path, service_ips: Sequence[str] = ()) -> Pki:
        """A CA, the API server's serving certificate (127.0.0.1, ::1, localhost and the
        in-cluster names) and the service-account signing key pair."""
        directory.mkdir(parents=True, exist_ok=True)
        pki = cls(directory, certs.create_ca("interkube-test-ca", days=CERT_DAYS))
        pki.ca.save(pki.layout.ca_cert, pki.layout.ca_key)

        names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local"]
        ips = ["127.0.0.1", "::1", *service_ips]
        certs.issue(pki.ca, "kube-apiserver", dns_names=names, ip_addresses=ips,
                    days=CERT_DAYS).save(pki.serving_cert, pki.serving_key)

        sa = certs.new_key()
        certs.write_atomic(pki.sa_key, certs.key_pem(sa), 0o600)
        pki.sa_pub.write_bytes(sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return pki

    def issue(self, common_name: str, groups: Sequence[str] = (), *,
              server_names: Sequence[str] = (), server_ips: Sequence[str] = ()) -> tuple[bytes, bytes]:
        """A certificate signed by the CA: a client certificate for user ``common_name`` in
        ``groups`` (the API server reads CN as the user and O as the groups), or a serving
        certificate when names or IPs are given. Returns (cert PEM, key PEM)."""
        serving = bool(server_names or server_ips)
        leaf = certs.issue(self.ca, common_name, organizations=groups, dns_names=server_names,
                           ip_addresses=server_ips, server=serving, client=not serving, days=CERT_DAYS)
        return leaf.cert_pem(), leaf.key_pem()


def write_kubeconfig(path: Path, server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes,
                     user: str, cluster: str = "interkube-test") -> Path:
    """A self-contained kubeconfig (certificates embedded) with one context named ``cluster``."""
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server,
                                                   "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(cert_pem),
                                          "client-key-data": b64(key_pem)}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def kubeconfig_with_contexts(path: Path, apis: Mapping[str, KubeAPI]) -> Path:
    """One kubeconfig with a context per API (named by the keys, each its admin credentials),
    the first one current: what a command reading two clusters from one file is given."""
    config: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": []}
    for name, api in apis.items():
        theirs = yaml.safe_load(api.kubeconfig.read_text())
        config["clusters"].append({"name": name, "cluster": theirs["clusters"][0]["cluster"]})
        config["users"].append({"name": name, "user": theirs["users"][0]["user"]})
        config["contexts"].append({"name": name, "context": {"cluster": name, "user": name}})
    config["current-context"] = next(iter(apis))
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


# --- etcd ------------------------------------------------------------------------------------

# urllib would honour http_proxy from the environment; loopback calls must never leave the host.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Etcd:
    """One etcd member on loopback, plain HTTP (it is only reachable from this host)."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.client_url = f"http://127.0.0.1:{self.client_port}"
        peer_url = f"http://127.0.0.1:{self.peer_port}"
        self.process = PeerProcess("etcd", [
            binary,
            "--name", "interkube-test",
            "--data-dir", workdir / "etcd-data",
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"interkube-test={peer_url}",
            "--initial-cluster-state", "new",
            # Throwaway data: skipping fsync makes every write (and so every test) faster.
            "--unsafe-no-fsync",
            "--log-level", "warn",
        ], workdir / "etcd.log")

    def start(self, timeout: float = 30.0) -> None:
        self.process.start()
        self.process.wait_until(self._healthy, timeout, "healthy")

    def stop(self) -> None:
        self.process.stop()

    def _healthy(self) -> bool:
        with _NO_PROXY.open(f"{self.client_url}/health", timeout=2) as resp:
            return bool(json.load(resp).get("health") == "true")

    def _call(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """etcd's gRPC gateway: JSON over HTTP at /v3/..., no etcdctl needed."""
        req = urllib.request.Request(f"{self.client_url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with _NO_PROXY.open(req, timeout=10) as resp:
            return dict(json.load(resp))

    def revision(self) -> int:
        """etcd's current revision (what the API server calls resourceVersion)."""
        # Any range answers with the store's header; a key that does not exist costs nothing.
        out = self._call("/v3/kv/range", {"key": base64.b64encode(b"\0").decode()})
        return int(out["header"]["revision"])

    def get(self, key: str) -> tuple[bytes, int] | None:
        """The value of ``key`` and its mod revision, or None when it does not exist."""
        out = self._call("/v3/kv/range", {"key": base64.b64encode(key.encode()).decode()})
        kvs = out.get("kvs") or []
        if not kvs:
            return None
        return base64.b64decode(kvs[0].get("value", "")), int(kvs[0]["mod_revision"])

    def put(self, key: str, value: bytes) -> int:
        """Write ``key`` behind the API server's back; returns the new revision."""
        out = self._call("/v3/kv/put", {"key": base64.b64encode(key.encode()).decode(),
                                        "value": base64.b64encode(value).decode()})
        return int(out["header"]["revision"])

    def delete(self, key: str) -> int:
        """Delete ``key`` behind the API server's back; returns the new revision."""
        out = self._call("/v3/kv/deleterange", {"key": base64.b64encode(key.encode()).decode()})
        return int(out["header"]["revision"])

    def compact(self, revision: int | None = None) -> int:
        """Compact history up to ``revision`` (default: the current one); returns it.

        After this, a watch that reaches etcd from a resourceVersion older than ``revision - 1``
        gets 410 Gone. Edge: a watch from exactly ``revision - 1`` starts at the compaction
        revision, which etcd still allows, but its first event has lost its previous value and
        kube-apiserver v1.36 answers it with a 500 ERROR event ("PrevKv=nil"), not a 410.
        """
        rev = self.revision() if revision is None else revision
        self._call("/v3/kv/compaction", {"revision": str(rev), "physical": True})
        return rev


# --- kube-apiserver --------------------------------------------------------------------------


class KubeAPI:
    """etcd + kube-apiserver on loopback with generated credentials and an admin kubeconfig."""

    def __init__(self, workdir: Path, apiserver_binary: Path, etcd_binary: Path, *,
                 name: str = "interkube-test",
                 service_cidrs: Sequence[str] = SERVICE_CIDRS,
                 uncached_resources: Sequence[str] = UNCACHED_RESOURCES) -> None:
        """``name`` is the cluster and context name in the kubeconfigs written; several
        instances with different names and workdirs can run side by side.
        ``uncached_resources`` get no watch cache: their watches are served by etcd itself."""
        self.name = name
        self.uncached_resources = tuple(uncached_resources)
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.service_cidrs = tuple(service_cidrs)
        first_ips = [str(next(ipaddress.ip_network(c).hosts())) for c in self.service_cidrs]
        self.pki = Pki.create(workdir / "pki", service_ips=first_ips)
        self.etcd = Etcd(etcd_binary, workdir)
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        cert, key = self.pki.issue(ADMIN_USER, ["system:masters"])
        self.admin_cert = self._write_pair("admin", cert, key)
        self.kubeconfig = write_kubeconfig(workdir / "admin.kubeconfig", self.url,
                                           self.pki.ca_cert_pem, cert, key, ADMIN_USER, name)
        self.apiserver = PeerProcess("kube-apiserver", self._apiserver_args(apiserver_binary),
                                     workdir / "kube-apiserver.log")
        self._http: httpx2.Client | None = None

    def _write_pair(self, name: str, cert: bytes, key: bytes) -> tuple[Path, Path]:
        cpath, kpath = self.pki.dir / f"{name}.crt", self.pki.dir / f"{name}.key"
        cpath.write_bytes(cert)
        kpath.write_bytes(key)
        return cpath, kpath

    def _apiserver_args(self, binary: Path) -> list[str | Path]:
        pki = self.pki
        return [
            binary,
            f"--etcd-servers={self.etcd.client_url}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.port}",
            "--advertise-address=127.0.0.1",
            # No controller keeps the 'kubernetes' Service's endpoints, and a loopback address
            # would be rejected as an endpoint anyway.
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={','.join(self.service_cidrs)}",
            f"--enable-admission-plugins={','.join(ENABLED_ADMISSION)}",
            f"--disable-admission-plugins={','.join(_DISABLED_ADMISSION)}",
            f"--watch-cache-sizes={','.join(f'{r}#0' for r in self.uncached_resources)}",
            # Only explicit compactions (Etcd.compact) happen, so 410s are deterministic.
            "--etcd-compaction-interval=0",
            "--profiling=false",
            # Unused (certificates are given above) but keeps it from defaulting to /var/run.
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            "--v=1",
        ]

    # lifecycle

    def start(self, timeout: float = 90.0) -> None:
        """Start etcd and kube-apiserver and wait until /readyz says ok."""
        if not self.etcd.process.running():
            self.etcd.start()
        self.start_apiserver(timeout)

    def start_apiserver(self, timeout: float = 90.0) -> None:
        self.apiserver.start()
        self.apiserver.wait_until(self._ready, timeout, "ready (/readyz)")

    def stop_apiserver(self) -> None:
        self.apiserver.stop()
        # Pooled connections point at the old process.
        if self._http is not None:
            self._http.close()
            self._http = None

    def restart_apiserver(self, timeout: float = 90.0) -> None:
        """Stop kube-apiserver and start it again on the same port; etcd keeps the data."""
        self.stop_apiserver()
        self.start_apiserver(timeout)

    def stop(self) -> None:
        self.stop_apiserver()
        self.etcd.stop()

    def _ready(self) -> bool:
        resp = self.http().get("/readyz", timeout=5)
        return resp.status_code == 200 and resp.text.strip() == "ok"

    # clients

    def ssl_context(self, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        """Verifies the API server against the test CA and presents ``cert`` (default: admin)."""
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        c, k = cert or self.admin_cert
        ctx.load_cert_chain(str(c), str(k))
        return ctx

    def http(self) -> httpx2.Client:
        """A raw HTTP client as admin, for calls the typed client does not make (watch with
        an old resourceVersion, namespace finalize, discovery)."""
        if self._http is None:
            # trust_env=False: never route loopback traffic through a proxy from the environment.
            self._http = httpx2.Client(base_url=self.url, verify=self.ssl_context(),
                                       trust_env=False, timeout=30)
        return self._http

    def client(self, kubeconfig: Path | None = None) -> Client:
        """A lightkube client from ``kubeconfig`` (default: the admin one)."""
        config = KubeConfig.from_file(str(kubeconfig or self.kubeconfig))
        return Client(config=config, trust_env=False, field_manager="interkube-tests")

    # setup helpers

    def install_mcs_crds(self, timeout: float = 30.0) -> None:
        """Create the ServiceExport/ServiceImport CRDs and wait until they are served."""
        client = self.client()
        try:
            for path in sorted(CRD_DIR.glob("*.yaml")):
                crd = from_dict(yaml.safe_load(path.read_text()))
                try:
                    client.create(crd)
                except ApiError as err:
                    if err.status.code != 409:  # already there (e.g. after a restart)
                        raise
        finally:
            client.close()

        def served(plural: str) -> bool:
            return self.http().get(f"/apis/{MCS_GROUP}/{MCS_VERSION}/{plural}").status_code == 200

        for plural in ("serviceexports", "serviceimports"):
            self._wait(functools.partial(served, plural), timeout, f"{plural} served")

    def restricted_kubeconfig(self, user: str,
                              rules: Sequence[Mapping[str, Any]] | None = None,
                              timeout: float = 30.0) -> Path:
        """A kubeconfig for ``user`` that RBAC limits to ``rules`` cluster-wide.

        Default rules: get/list/watch Services and nothing else, so listing EndpointSlices
        answers 403 Forbidden. Returns once the grant has reached the authorizer.
        """
        if rules is None:
            rules = [{"apiGroups": [""], "resources": ["services"],
                      "verbs": ["get", "list", "watch"]}]
        cert, key = self.pki.issue(user)
        self._write_pair(f"user-{user}", cert, key)  # beside the admin's (the kubeconfig embeds them)
        role = f"interkube-test:{user}"
        client = self.client()
        try:
            client.create(from_dict({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": role}, "rules": [dict(r) for r in rules]}))
            client.create(from_dict({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": role},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                              "name": user}]}))
        finally:
            client.close()
        # The RBAC authorizer reads roles through an informer: wait until it has the grant.
        verb, resource, group = _first_grant(rules)
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": {"user": user, "groups": ["system:authenticated"],
                           "resourceAttributes": {"verb": verb, "resource": resource,
                                                  "group": group}}}

        def allowed() -> bool:
            resp = self.http().post("/apis/authorization.k8s.io/v1/subjectaccessreviews",
                                    json=review)
            return bool(resp.status_code == 201 and resp.json()["status"].get("allowed"))

        self._wait(allowed, timeout, f"RBAC grant for {user}")
        path = self.workdir / f"{user}.kubeconfig"
        return write_kubeconfig(path, self.url, self.pki.ca_cert_pem, cert, key, user, self.name)

    def delete_namespace(self, namespace: str, timeout: float = 30.0) -> None:
        """Delete a namespace and everything in it, now.

        No namespace controller runs, so a plain DELETE would leave the namespace Terminating
        and its objects in place (visible to a DNS server watching all namespaces). This does
        the controller's work: delete every namespaced object kind found by discovery, then
        clear the ``kubernetes`` finalizer.
        """
        http = self.http()
        for base, resource, verbs in self._namespaced_resources():
            coll = f"{base}/namespaces/{namespace}/{resource}"
            # gracePeriodSeconds=0: a pod bound to a node would otherwise wait for a kubelet.
            params = {"gracePeriodSeconds": "0", "propagationPolicy": "Background"}
            if "deletecollection" in verbs:
                _expect(http.delete(coll, params=params), 200, 404)
            elif "list" in verbs and "delete" in verbs:  # e.g. services: no deletecollection
                resp = http.get(coll)
                if resp.status_code == 404:
                    continue
                _expect(resp, 200)
                for item in resp.json().get("items", []):
                    _expect(http.delete(f"{coll}/{item['metadata']['name']}", params=params),
                            200, 202, 404)
        resp = http.delete(f"/api/v1/namespaces/{namespace}")
        _expect(resp, 200, 202, 404)
        if resp.status_code == 404:
            return
        ns = http.get(f"/api/v1/namespaces/{namespace}")
        if ns.status_code == 200:
            body = ns.json()
            body.setdefault("spec", {})["finalizers"] = []
            _expect(http.put(f"/api/v1/namespaces/{namespace}/finalize", json=body), 200, 404)
        self._wait(lambda: http.get(f"/api/v1/namespaces/{namespace}").status_code == 404,
                   timeout, f"namespace {namespace} gone")

    def _namespaced_resources(self) -> list[tuple[str, str, list[str]]]:
        """(API path, resource, verbs) for every namespaced top-level resource served."""
        http = self.http()
        bases = ["/api/v1"]
        groups = _expect(http.get("/apis"), 200).json()["groups"]
        bases += [f"/apis/{g['preferredVersion']['groupVersion']}" for g in groups]
        out = []
        for base in bases:
            for r in _expect(http.get(base), 200).json()["resources"]:
                if r.get("namespaced") and "/" not in r["name"]:
                    out.append((base, r["name"], list(r.get("verbs", []))))
        return out

    def user_cert(self, user: str) -> tuple[Path, Path]:
        """The client certificate files written by :meth:`restricted_kubeconfig`."""
        return self.pki.dir / f"user-{user}.crt", self.pki.dir / f"user-{user}.key"

    def compact_etcd(self) -> int:
        """Compact etcd at its current revision; returns that revision."""
        return self.etcd.compact()

    def watch_first_event(self, path: str, resource_version: str,
                          timeout: float = 10.0) -> tuple[int, dict[str, Any] | None]:
        """Open ``GET path?watch=1&resourceVersion=...`` and return (HTTP status, first event).

        A 410 may arrive either as the HTTP status or, with 200, as an ERROR event whose
        object is a Status with code 410; callers look at both. The event is None when the
        watch stayed silent for ``timeout`` seconds.
        """
        params = {"watch": "1", "resourceVersion": resource_version,
                  "timeoutSeconds": str(max(1, int(timeout)))}
        with self.http().stream("GET", path, params=params,
                                timeout=httpx2.Timeout(timeout + 5)) as resp:
            if resp.status_code != 200:
                resp.read()
                return resp.status_code, resp.json()
            for line in resp.iter_lines():
                if line.strip():
                    return 200, dict(json.loads(line))
            return 200, None

    def _wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        # An API answer not yet what is wanted (an error, a body still missing a field) is "not yet".
        try:
            wait_until(check, what, timeout, every=0.1, ignoring=(httpx2.HTTPError, ApiError, KeyError, ValueError))
        except NeverHappened:
            raise PeerFailed(f"timed out waiting for {what}; log {self.apiserver.log_path}") from None


def _expect(resp: httpx2.Response, *codes: int) -> httpx2.Response:
    if resp.status_code not in codes:
        raise PeerFailed(f"{resp.request.method} {resp.request.url.path}: HTTP {resp.status_code}: "
                         f"{resp.text[:500]}")
    return resp


def _first_grant(rules: Sequence[Mapping[str, Any]]) -> tuple[str, str, str]:
    rule = rules[0]
    return rule["verbs"][0], rule["resources"][0], rule.get("apiGroups", [""])[0]


#: Admission plugins left on. NamespaceLifecycle refuses objects in missing or terminating
#: namespaces, as a real cluster does; the two webhook plugins cost nothing while no webhook is
#: registered, and let a test register interkube's own admission webhook against this server.
ENABLED_ADMISSION: tuple[str, ...] = (
    "NamespaceLifecycle", "MutatingAdmissionWebhook", "ValidatingAdmissionWebhook")

# The rest of kube-apiserver v1.36's default-on plugins (from its --help). They need
# controllers or objects a bare API server never gets (ServiceAccount would refuse every Pod:
# no 'default' service account is ever created; ResourceQuota and LimitRanger want their
# controllers), or police things these tests do not exercise. A name the pinned binary does not
# know makes it refuse to start, so a version bump shows up here at once.
_DISABLED_ADMISSION: tuple[str, ...] = (
    "LimitRanger", "ServiceAccount", "TaintNodesByCondition", "PodSecurity", "Priority",
    "DefaultTolerationSeconds", "DefaultStorageClass", "StorageObjectInUseProtection",
    "PodGroupProtection", "PersistentVolumeClaimResize", "RuntimeClass", "CertificateApproval",
    "CertificateSigning", "ClusterTrustBundleAttest", "CertificateSubjectRestriction",
    "DefaultIngressClass", "PodTopologyLabels", "PodGroupWorkloadExists",
    "NodeDeclaredFeatureValidator", "JobValidation", "PodResizeValidator",
    "MutatingAdmissionPolicy", "ValidatingAdmissionPolicy", "ResourceQuota",
)


# --- objects ---------------------------------------------------------------------------------


PortSpec = tuple[str | None, int, str]  # (name or None, port, protocol)


def _ports(ports: Iterable[PortSpec]) -> list[dict[str, Any]]:
    out = []
    for name, port, protocol in ports:
        p: dict[str, Any] = {"port": port, "protocol": protocol}
        if name:
            p["name"] = name
        out.append(p)
    return out


class KubeObjects:
    """Creates the objects DNS tests need, written directly since no controller runs.

    Every method returns the object as the API server stored it (a lightkube model).
    """

    def __init__(self, client: Client) -> None:
        self.client = client

    def create(self, obj: Mapping[str, Any]) -> Any:
        """Create any object given as a plain manifest dict."""
        return self.client.create(from_dict(dict(obj)))

    def namespace(self, name: str, labels: Mapping[str, str] | None = None) -> str:
        self.create({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": name, "labels": dict(labels or {})}})
        return name

    def service(self, namespace: str, name: str, *, ports: Iterable[PortSpec] = (("http", 80, "TCP"),),
                type: str = "ClusterIP", cluster_ip: str | None = None,
                ip_families: Sequence[str] | None = None, ip_family_policy: str | None = None,
                external_name: str | None = None, selector: Mapping[str, str] | None = None,
                publish_not_ready_addresses: bool = False,
                labels: Mapping[str, str] | None = None) -> Any:
        """A Service. ``cluster_ip="None"`` makes it headless; ``ip_family_policy=
        "RequireDualStack"`` gives it one ClusterIP from each range."""
        spec: dict[str, Any] = {"type": type}
        if type != "ExternalName" or ports:
            spec["ports"] = _ports(ports)
        if cluster_ip is not None:
            spec["clusterIP"] = cluster_ip
        if ip_families is not None:
            spec["ipFamilies"] = list(ip_families)
        if ip_family_policy is not None:
            spec["ipFamilyPolicy"] = ip_family_policy
        if external_name is not None:
            spec["externalName"] = external_name
        if selector is not None:
            spec["selector"] = dict(selector)
        if publish_not_ready_addresses:
            spec["publishNotReadyAddresses"] = True
        return self.create({"apiVersion": "v1", "kind": "Service",
                            "metadata": {"name": name, "namespace": namespace,
                                         "labels": dict(labels or {})},
                            "spec": spec})

    def headless_service(self, namespace: str, name: str, **kw: Any) -> Any:
        return self.service(namespace, name, cluster_ip="None", **kw)

    def external_name_service(self, namespace: str, name: str, target: str, **kw: Any) -> Any:
        kw.setdefault("ports", ())
        return self.service(namespace, name, type="ExternalName", external_name=target, **kw)

    def dual_stack_service(self, namespace: str, name: str, **kw: Any) -> Any:
        return self.service(namespace, name, ip_family_policy="RequireDualStack",
                            ip_families=["IPv4", "IPv6"], **kw)

    def endpoint_slice(self, namespace: str, name: str, *, service: str | None,
                       addresses: Iterable[str | Mapping[str, Any]],
                       ports: Iterable[PortSpec] = (("http", 80, "TCP"),),
                       address_type: str = "IPv4",
                       labels: Mapping[str, str] | None = None) -> Any:
        """An EndpointSlice (discovery.k8s.io/v1), as the EndpointSlice controller would write it.

        ``addresses`` items are an IP (a ready endpoint) or a full endpoint dict
        (``{"addresses": [...], "conditions": {"ready": False}, "hostname": ...}``).
        ``service`` sets the ``kubernetes.io/service-name`` label (None: leave it out, e.g.
        for MCS slices labelled ``multicluster.kubernetes.io/service-name`` instead).
        """
        endpoints = [{"addresses": [a], "conditions": {"ready": True}} if isinstance(a, str)
                     else dict(a) for a in addresses]
        all_labels = dict(labels or {})
        if service is not None:
            all_labels.setdefault("kubernetes.io/service-name", service)
        all_labels.setdefault("endpointslice.kubernetes.io/managed-by", "interkube-tests")
        return self.create({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                            "metadata": {"name": name, "namespace": namespace, "labels": all_labels},
                            "addressType": address_type, "endpoints": endpoints,
                            "ports": _ports(ports)})

    def pod(self, namespace: str, name: str, *, ips: Sequence[str] = (),
            labels: Mapping[str, str] | None = None, hostname: str | None = None,
            subdomain: str | None = None, node_name: str | None = None,
            ready: bool = True) -> Any:
        """A Pod; with ``ips`` its status is patched to Running with those pod IPs.

        No scheduler or kubelet runs, so the pod would stay Pending without IPs; the status
        subresource is written the way a kubelet would.
        """
        spec: dict[str, Any] = {"containers": [{"name": "main", "image": "registry.invalid/none"}]}
        if hostname:
            spec["hostname"] = hostname
        if subdomain:
            spec["subdomain"] = subdomain
        if node_name:
            spec["nodeName"] = node_name
        obj = self.create({"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": name, "namespace": namespace,
                                        "labels": dict(labels or {})},
                           "spec": spec})
        if ips:
            obj = self.set_pod_ips(namespace, name, ips, ready=ready)
        return obj

    def set_pod_ips(self, namespace: str, name: str, ips: Sequence[str], *,
                    ready: bool = True) -> Any:
        """Patch a pod's status subresource: phase Running, podIP(s), Ready condition."""
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {
            "phase": "Running",
            "podIP": ips[0],
            "podIPs": [{"ip": ip} for ip in ips],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                            "lastTransitionTime": now}],
        }
        return self.client.patch(Pod.Status, name, {"status": status}, namespace=namespace,
                                 patch_type=PatchType.MERGE)

    def service_export(self, namespace: str, name: str) -> Any:
        return self.create({"apiVersion": f"{MCS_GROUP}/{MCS_VERSION}", "kind": "ServiceExport",
                            "metadata": {"name": name, "namespace": namespace}})

    def service_import(self, namespace: str, name: str, *, type: str = "ClusterSetIP",
                       ips: Sequence[str] = (), ports: Iterable[PortSpec] = (("http", 80, "TCP"),),
                       ip_families: Sequence[str] | None = None,
                       clusters: Sequence[str] = ()) -> Any:
        """A ServiceImport as an MCS controller would write it (spec and status.clusters)."""
        spec: dict[str, Any] = {"type": type, "ports": _ports(ports)}
        if ips:
            spec["ips"] = list(ips)
        if ip_families is not None:
            spec["ipFamilies"] = list(ip_families)
        obj = self.create({"apiVersion": f"{MCS_GROUP}/{MCS_VERSION}", "kind": "ServiceImport",
                           "metadata": {"name": name, "namespace": namespace}, "spec": spec})
        if clusters:
                obj = self.client.patch(ServiceImport.Status, name,
                                    {"status": {"clusters": [{"cluster": c} for c in clusters]}},
                                    namespace=namespace, patch_type=PatchType.MERGE)
        return obj
