"""What `interkube serve` loads: only what its Corefile uses.

A hosts/forward server (issue 18's footprint goal) and a split-DNS sidecar's kubernetes stanza
(issue 15's budget) must not import the libraries only other features need: the metrics
exposition (until something asks for the registry), the HTTP servers, certificates, lightkube
(the common kubeconfigs are read without it), trio (which httpcore2 would load just because it is
installed), other subcommands and other plugins. Each of these costs RSS and start time; an
eager import added at the top of a module these servers load fails here.

The module list is Python's own (``PYTHONPROFILEIMPORTTIME``: one line per module imported, on
stderr), of the real command, after it answered.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from testkit.fakekube import FakeKube, endpoint_slice, service, serving_in_thread, write_kubeconfig
from testkit.fakeupstream import Behaviour, in_thread
from testkit.servers import free_port, interkube_process, process_output, query

#: Never loaded by these servers: top-level packages, and interkube's modules by prefix.
ABSENT_PACKAGES = frozenset({"prometheus_client", "aiohttp", "cryptography", "lightkube", "trio", "yaml"})
ABSENT_MODULES = ("interkube.deploy", "interkube.webhook", "interkube.proxy", "interkube.lab", "interkube.doctor",
                  "interkube.netplan", "interkube.externalnames", "interkube.server.workers",
                  "interkube.kube.lightkube_config", "interkube.plugins.prometheus", "interkube.plugins.file",
                  "interkube.plugins.kubernetes", "interkube.plugins.rewrite", "interkube.plugins.template")


def imported(output: str) -> set[str]:
    """The modules an ``importtime`` log names."""
    names = set()
    for line in output.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name)
    return names


def unexpected(modules: set[str], allowed: frozenset[str] = frozenset()) -> list[str]:
    """The modules of ``modules`` from the lists above. A package counts by its submodules: each
    of those packages loads some, and a bare name is also logged for an import that failed at
    once (trio, which the server marks absent)."""
    return sorted(m for m in modules if m not in allowed and (("." in m and m.split(".")[0] in ABSENT_PACKAGES)
                                                              or m.startswith(ABSENT_MODULES)))


def test_a_hosts_and_forward_server_loads_no_library_it_does_not_use(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.7 app.example.org\n")
    port = free_port()
    with in_thread(Behaviour(records={("far.example.net.", "A"): ["198.51.100.9"]})) as upstream:
        core = tmp_path / "Corefile"
        core.write_text(f".:{port} {{\n    bind 127.0.0.1\n    hosts {hosts} example.org\n"
                        f"    forward . {upstream.address}\n    cache 30\n    errors\n}}\n")
        with interkube_process(core, port, args=("-quiet",), env={"PYTHONPROFILEIMPORTTIME": "1"}) as proc:
            assert [rd.to_text() for rrset in query("app.example.org", "A", port).answer for rd in rrset] == [
                "192.0.2.7"]
            assert [rd.to_text() for rrset in query("far.example.net", "A", port).answer for rd in rrset] == [
                "198.51.100.9"]
            modules = imported(process_output(proc))
    assert {"interkube.plugins.hosts.handler", "interkube.plugins.forward.handler",
            "interkube.plugins.cache.handler"} <= modules
    assert unexpected(modules) == []


@pytest.mark.parametrize("form", ["yaml", "json"])
def test_a_kubernetes_stanza_reads_its_kubeconfig_without_lightkube(tmp_path: Path, form: str) -> None:
    """The sidecar's stanza (kubernetes on one namespace, splitdns in front) through a kubeconfig
    with a CA and a token, over TLS: yaml reads a YAML kubeconfig, nothing else of the list above
    loads, and a JSON kubeconfig (what kubectl reads too) needs no yaml either, like the sidecar's
    in-cluster service account."""
    fake = FakeKube(watch=True, tls=True)
    fake.add_all([service("shop", "db-headless", headless=True),
                  endpoint_slice("shop", "db-headless-a", "db-headless", [{"ip": "10.244.1.10", "hostname": "db-0"}])])
    port = free_port()
    with serving_in_thread(fake):
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"prod": fake})
        if form == "json":
            kubeconfig.write_text(json.dumps(yaml.safe_load(kubeconfig.read_text())))
        core = tmp_path / "Corefile"
        core.write_text(f""".:{port} {{
    bind 127.0.0.1
    kubernetes cluster.local {{
        namespaces shop
        kubeconfig {kubeconfig}
        fallthrough
    }}
    splitdns db.example.com {{
        pod ^db-([0-9]+)\\.db\\.example\\.com\\.$ db-{{1}}.db-headless.shop.svc.cluster.local.
    }}
}}
""")
        with interkube_process(core, port, args=("-quiet",), env={"PYTHONPROFILEIMPORTTIME": "1"}) as proc:
            answer = query("db-0.db.example.com", "A", port).answer
            assert [rd.to_text() for rrset in answer for rd in rrset] == ["10.244.1.10"]
            modules = imported(process_output(proc))
    assert {"interkube.plugin.kubestanza", "interkube.kube.live", "httpx2"} <= modules
    in_use = {m for m in modules if m.startswith("interkube.plugins.kubernetes")
              or (form == "yaml" and m.split(".")[0] == "yaml")}
    assert unexpected(modules, allowed=frozenset(in_use)) == []
