"""Parsing and setting up `kubernetes` stanzas: options, defaults, errors at file:line, reloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.kube.registry import cluster_registry
from interkube.plugin.services import Services
from interkube.plugins.kubernetes.parse import KubernetesConfig, parse
from interkube.plugins.kubernetes.setup import cluster_name, local_addresses
from interkube.server.main import CorefileSource, Server
from testkit.servers import free_port

SAMPLE = Path(__file__).with_name("data") / "cluster.yaml"


def stanza(text: str) -> KubernetesConfig:
    [block] = parse_text(".:53 {\n" + text + "\n}\n", "Corefile")
    return parse(block.directives[0])


def test_coredns_defaults() -> None:
    cfg = stanza("kubernetes cluster.local")
    assert (cfg.ttl, cfg.pods, cfg.startup_timeout, cfg.endpoint_pod_names) == (5, "disabled", 5.0, False)
    assert cfg.zones == ("cluster.local.",) and not cfg.fallthrough.enabled and cfg.kubeconfig is None


def test_every_option() -> None:
    cfg = stanza("""kubernetes cluster.local 10.0.0.0/16 {
        kubeconfig /etc/kube/config prod
        namespaces app team
        labels environment in (staging, qa),application=nginx
        pods verified
        endpoint_pod_names
        ttl 30
        noendpoints
        fallthrough in-addr.arpa
        ignore empty_service
        startup_timeout 1m30s
        cluster prod-eu
    }""")
    assert cfg.zones == ("cluster.local.", "0.10.in-addr.arpa.")
    assert (cfg.kubeconfig, cfg.context, cfg.cluster) == ("/etc/kube/config", "prod", "prod-eu")
    assert cfg.namespaces == {"app", "team"} and cfg.labels.matches({"environment": "qa", "application": "nginx"})
    assert (cfg.pods, cfg.endpoint_pod_names, cfg.ttl, cfg.noendpoints) == ("verified", True, 30, True)
    assert cfg.fallthrough.zones == ("in-addr.arpa.",) and cfg.ignore_empty_service
    assert cfg.startup_timeout == 90.0 and cfg.where == "Corefile:2"
    endpoint = stanza("kubernetes {\n endpoint https://10.0.0.1:6443\n tls c.crt c.key ca.crt\n}")
    assert (endpoint.endpoint, endpoint.tls) == ("https://10.0.0.1:6443", ("c.crt", "c.key", "ca.crt"))
    assert stanza("kubernetes {\n snapshot a.yaml b.json\n}").snapshot == ("a.yaml", "b.json")


@pytest.mark.parametrize(("text", "message"), [
    ("pods sometimes", "Corefile:3: kubernetes: pods must be one of disabled, insecure, verified"),
    ("ttl 3601", "Corefile:3: ttl 3601 is above the maximum of 3600"),
    ("ttl -1", "is below the minimum of 0"),
    ("labels a in x", "Corefile:3: kubernetes: labels: expected ',' between requirements"),
    ("ignore everything", "ignore takes empty_service"),
    ("startup_timeout soon", "invalid duration 'soon'"),
    ("endpoint https://a https://b", "endpoint takes one URL"),
    ("endpoint ftp://a", "is not an http(s):// URL"),
    ("tls a b", "expected exactly 3 arguments"),
    ("cluster -bad-", "cluster name '-bad-' may hold only"),
    ("resyncperiod 5m", "option 'resyncperiod' is not supported"),
    ("namespace_labels a=b", "option 'namespace_labels' is not supported"),
    ("frobnicate", "Corefile:3: kubernetes: unknown option 'frobnicate'"),
    ("ttl 5\n ttl 6", "Corefile:4: kubernetes: option 'ttl' given twice (first at Corefile:3)"),
    ("snapshot a.yaml\n kubeconfig k ctx", "`snapshot` reads the cluster from files; it cannot go with `kubeconfig`"),
    ("tls a b c", "`tls` is for an `endpoint`"),
])
def test_mistakes_are_errors_at_their_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        stanza("kubernetes cluster.local {\n " + text + "\n}")
    assert message in str(info.value)


def test_default_cluster_names() -> None:
    def name(text: str, zones: tuple[str, ...] = ("cluster.local.",)) -> str:
        return cluster_name(stanza(text), stanza(text).zones or zones)

    assert name("kubernetes cluster.east") == "east"
    assert name("kubernetes cluster.east.example.org") == "east.example.org"
    assert name("kubernetes cluster.local") == "local"
    assert name("kubernetes corp.example") == "corp.example"
    assert name("kubernetes cluster.east {\n kubeconfig k prod\n}") == "prod"
    assert name("kubernetes cluster.east {\n kubeconfig k prod\n cluster mine\n}") == "mine"
    assert name("kubernetes", ("svc.example.",)) == "svc.example"


def test_local_addresses_leave_out_loopback() -> None:
    assert local_addresses(("127.0.0.1", "::1", "192.0.2.1", "fe80::1")) == ("192.0.2.1",)
    assert all(not a.startswith("127.") for a in local_addresses(()))


def build(text: str) -> Server:
    server = Server(CorefileSource(path=None, text=text))
    server.build()
    return server


def test_setup_errors_name_the_corefile_line_and_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError,
                       match=rf"<built-in default>:3: kubernetes: cannot read snapshot {tmp_path}/absent"):
        build(f".:53 {{\n  bind 127.0.0.1\n"
              f"  kubernetes cluster.local {{\n    snapshot {tmp_path}/absent.yaml\n  }}\n}}\n")
    with pytest.raises(ConfigError,
                       match=rf":3: kubernetes: cluster prod, context prod: cannot use kubeconfig {tmp_path}/kc"):
        build(f".:53 {{\n  bind 127.0.0.1\n"
              f"  kubernetes cluster.local {{\n    kubeconfig {tmp_path}/kc prod\n  }}\n}}\n")
    with pytest.raises(ConfigError, match="needs a zone that is not a reverse zone"):
        build(f".:53 {{\n  kubernetes in-addr.arpa {{\n    snapshot {SAMPLE}\n  }}\n}}\n")


async def test_two_stanzas_may_not_give_one_name_to_two_sources(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(SAMPLE.read_text())
    text = f""".:{free_port()} {{
    bind 127.0.0.1
    kubernetes cluster.a {{
        snapshot {SAMPLE}
        cluster same
    }}
    kubernetes cluster.b {{
        snapshot {other}
        cluster same
    }}
}}
"""
    server = Server(CorefileSource(path=None, text=text))
    with pytest.raises(Exception, match="serve the cluster name 'same' from different sources"):
        await server.start()
    assert cluster_registry(server.services.shared, server.services.metrics).names() == []


async def test_reloads_share_an_unchanged_cluster_and_replace_a_changed_one(tmp_path: Path) -> None:
    corefile = tmp_path / "Corefile"
    port = free_port()

    def write(ttl: int, snapshot: Path = SAMPLE) -> None:
        corefile.write_text(f""".:{port} {{
    bind 127.0.0.1
    kubernetes cluster.local {{
        snapshot {snapshot}
        ttl {ttl}
    }}
}}
""")

    write(5)
    server = Server(CorefileSource(path=str(corefile)), services=Services())
    await server.start()
    try:
        registry = cluster_registry(server.services.shared, server.services.metrics)
        assert server.instance is not None
        replaced = list(server.instance.built.handlers)
        first = registry.get("local")
        assert first is not None and first.started
        write(30)  # another TTL: the same source, so the same cluster keeps running
        assert await server.reload()
        assert registry.get("local") is first
        copy = tmp_path / "copy.yaml"
        copy.write_text(SAMPLE.read_text())
        replaced += server.instance.built.handlers
        write(30, copy)  # another source: a new cluster, while the old one serves on
        assert await server.reload()
        second = registry.get("local")
        assert second is not None and second is not first and second.started and first.started
        for handler in replaced:  # what the server does a few seconds after a reload
            await handler.stop()
        assert not first.started and registry.get("local") is second
    finally:
        await server.stop()
    assert registry.names() == [] and not second.started
