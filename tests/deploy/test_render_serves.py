"""The rendered Deployment's pod, run as a process with the rendered ConfigMap, answers.

The pod template's command (`interkube serve -conf /etc/interkube/Corefile`) runs here with the
ConfigMap's Corefile, its addresses mapped to loopback (bind, the other clusters' DNS played by
dnsmasq, health/ready/prometheus on free ports) and its in-cluster kubernetes stanza reading the
real kube-apiserver as the rendered ServiceAccount, with a token for it and the rendered RBAC
applied for real: so the grant is enough for what the plugins read. With --tls --mtls, the other
cluster's side is its own rendered DoT front, also running, with certificates from `interkube
certs` laid out as the mounted Secrets would be.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from interkube.deploy.render import render_argv
from interkube.deploy.workload import SERVE_ARGS
from testkit.dig import needs_dig, short
from testkit.kubeapi import KubeAPI, KubeObjects
from testkit.servers import dnsmasq, free_port, http_get, interkube_process, process_output, wait_listening
from testkit.waiting import wait_until

from deploykit import PLAN, by_kind, container, localize, one, service_account_token, token_kubeconfig, wait_for_grant

pytestmark = [pytest.mark.peers, needs_dig]

Obj = dict[str, Any]

# The plan's addresses for the clusters' DNS: mapped to the dnsmasq playing each.
EAST_DNS, WEST_DNS = "172.20.0.10", "10.1.28.194"
WEST_FRONT_DNS = "172.21.0.10"  # west's own cluster DNS, which its DoT front asks


def corefile_of(objects: list[Obj], deployment: str) -> str:
    """The Corefile the Deployment's pods read: its ConfigMap's, found through its volume."""
    dep = one(objects, "Deployment", deployment)
    assert container(dep)["args"] == SERVE_ARGS
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    config = volumes["config"]["configMap"]["name"]
    return str(one(objects, "ConfigMap", config)["data"]["Corefile"])


def http_ports() -> dict[str, int]:
    return {"health": free_port(), "ready": free_port(), "prometheus": free_port()}


def run_pod(corefile: str, port: int, tmp: Path, name: str) -> Any:
    """The pod's command as a process: its Corefile at a path of its own instead of the mount."""
    path = tmp / name
    path.write_text(corefile)
    return interkube_process(path, port)


def grant(objects: list[Obj], apply: Any, kube_api: KubeAPI, namespace: str, tmp: Path) -> Path:
    """Apply the rendered ServiceAccount and RBAC for real; a kubeconfig with that account's token."""
    apply([o for o in objects if o["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")])
    role = one(objects, "ClusterRole")
    wait_for_grant(kube_api, namespace, "interkube",
                   [(rule["apiGroups"][0], r) for rule in role["rules"] for r in rule["resources"]])
    return token_kubeconfig(kube_api, tmp / "sa.kubeconfig", service_account_token(kube_api, namespace, "interkube"))


def answers(port: int, name: str, expected: list[str], *procs: Any) -> None:
    def what() -> str:
        return f"{name} -> {expected} (last: {short(port, name)}); the servers said:\n" + \
            "\n".join(process_output(p) for p in procs)

    wait_until(lambda: short(port, name) == expected, what, 20)


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    return path


def test_rendered_plan_corefile_answers(plan: Path, tmp_path: Path, kube_api: KubeAPI, kube: KubeObjects,
                                        kube_ns: str, apply: Any) -> None:
    port = free_port()
    objects = render_argv(["--plan", str(plan), "--cluster", "east", "--namespace", kube_ns,
                           "--dns-port", str(port)])
    kubeconfig = grant(objects, apply, kube_api, kube_ns, tmp_path)
    east_dns, west_dns = free_port(), free_port()
    http = http_ports()
    corefile = localize(corefile_of(objects, "interkube"), kubeconfig=str(kubeconfig), http_ports=http,
                        replace={f" {EAST_DNS}\n": f" 127.0.0.1:{east_dns}\n",
                                 f" {WEST_DNS}": f" 127.0.0.1:{west_dns}"})
    kube.service(kube_ns, "web", cluster_ip="10.96.7.7", ports=[("http", 80, "TCP")])
    kube.endpoint_slice(kube_ns, "web-1", service="web", addresses=["10.0.3.3"])
    with dnsmasq(east_dns, {"www.example.internal": ["192.0.2.1"]}), \
            dnsmasq(west_dns, {"db.remote.svc.cluster.local": ["10.1.5.5"],
                               "web.shop.svc.cluster.local": ["10.1.6.6"]}), \
            run_pod(corefile, port, tmp_path, "Corefile") as proc:
        try:
            # This cluster, from its API as the rendered ServiceAccount.
            answers(port, f"web.{kube_ns}.svc.cluster.local", ["10.96.7.7"], proc)
            answers(port, f"web.{kube_ns}.svc.cluster.east", ["10.96.7.7"], proc)
            # The plan's forwarded namespace, from west's DNS.
            answers(port, "db.remote.svc.cluster.local", ["10.1.5.5"], proc)
            # West's zone under its own name (merge renames west's cluster.local).
            answers(port, "web.shop.svc.cluster.west", ["10.1.6.6"], proc)
            # cluster.all: this cluster first (through itself), west where east has nothing.
            answers(port, f"web.{kube_ns}.svc.cluster.all", ["10.96.7.7"], proc)
            answers(port, "web.shop.svc.cluster.all", ["10.1.6.6"], proc)
            # Everything else: this cluster's DNS.
            answers(port, "www.example.internal", ["192.0.2.1"], proc)
            # The probes' paths answer (the Deployment asks /health and /ready).
            dep = container(one(objects, "Deployment", "interkube"))
            assert dep["livenessProbe"]["httpGet"]["path"] == "/health"
            assert dep["readinessProbe"]["httpGet"]["path"] == "/ready"
            assert asyncio.run(http_get(f"http://127.0.0.1:{http['health']}/health"))[0] == 200
            wait_until(lambda: asyncio.run(http_get(f"http://127.0.0.1:{http['ready']}/ready"))[0] == 200,
                       "ready", 20)
        finally:
            log = process_output(proc)
    # The grant covered everything the stanza reads: nothing was refused.
    # (403 as a word: a random port such as 40373 holds the digits)
    assert not re.search(r"\b403\b|forbidden", log, re.IGNORECASE), log


def _secret_dir(directory: Path, files: dict[str, Path]) -> Path:
    """A directory as the kubelet mounts a Secret: one file per key."""
    directory.mkdir()
    for key, source in files.items():
        shutil.copy(source, directory / key)
    return directory


def test_rendered_dot_pair_answers_over_mutual_tls(plan: Path, tmp_path: Path, kube_api: KubeAPI,
                                                   kube: KubeObjects, kube_ns: str, apply: Any) -> None:
    # Certificates as docs/deploy.md makes them: `interkube certs`, one Secret per side.
    certs = tmp_path / "certs"
    subprocess.run([sys.executable, "-m", "interkube", "certs", "--dir", str(certs), "east", "west"],
                   check=True, capture_output=True)
    west_server = _secret_dir(tmp_path / "west-dot", {"tls.crt": certs / "west/server.crt",
                                                      "tls.key": certs / "west/server.key",
                                                      "ca.crt": certs / "ca.crt"})
    east_client = _secret_dir(tmp_path / "east-client", {"tls.crt": certs / "east/client.crt",
                                                         "tls.key": certs / "east/client.key",
                                                         "ca.crt": certs / "ca.crt"})
    front_port, port = free_port(), free_port()
    common = ["--namespace", kube_ns, "--tls", "--mtls", "--tls-secret", "dot-server", "--client-tls-secret",
              "dot-client", "--cloud", "gcp"]
    east = render_argv(["--plan", str(plan), "--cluster", "east", "--dns-port", str(port),
                        "--remote-dns", "west=10.1.0.53", *common])
    west = render_argv(["--plan", str(plan), "--cluster", "west", "--remote-dns", "east=10.0.0.53", *common])
    front = corefile_of(west, "interkube-dot")
    assert [d["metadata"]["name"] for d in by_kind(west, "Deployment")] == ["interkube", "interkube-dot"]

    kubeconfig = grant(east, apply, kube_api, kube_ns, tmp_path)
    west_dns = free_port()
    front = localize(front, http_ports=http_ports(), replace={
        "tls://cluster.local:853": f"tls://cluster.local:{front_port}",
        "/etc/interkube/dot/": f"{west_server}/",
        f"forward . {WEST_FRONT_DNS}": f"forward . 127.0.0.1:{west_dns}"})
    local = localize(corefile_of(east, "interkube"), kubeconfig=str(kubeconfig), http_ports=http_ports(),
                     replace={"10.1.0.53": f"127.0.0.1:{front_port}",
                              "/etc/interkube/dot-client/": f"{east_client}/",
                              f"forward . {EAST_DNS}": f"forward . 127.0.0.1:{free_port()}"})
    # The front is TLS only: nothing answers plain DNS on its port, so wait on the main server.
    front_path = tmp_path / "front.Corefile"
    front_path.write_text(front)
    with dnsmasq(west_dns, {"db.remote.svc.cluster.local": ["10.1.5.5"],
                            "web.shop.svc.cluster.local": ["10.1.6.6"]}), \
            interkube_process(front_path, front_port, wait=False) as front_proc:
        wait_listening(front_port, proc=front_proc)
        with run_pod(local, port, tmp_path, "Corefile") as proc:
            try:
                # East's forwarded namespace and west's zone, both over mutual TLS to west's front.
                answers(port, "db.remote.svc.cluster.local", ["10.1.5.5"], proc, front_proc)
                answers(port, "web.shop.svc.cluster.west", ["10.1.6.6"], proc, front_proc)
                answers(port, "web.shop.svc.cluster.all", ["10.1.6.6"], proc, front_proc)
            finally:
                log = process_output(proc) + process_output(front_proc)
    # No handshake was refused on either side (forward and the front log each refusal's reason).
    assert "certificate" not in log and "plugin/tls" not in log, log
