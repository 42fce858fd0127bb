"""Parsing and setting up `clusterset` stanzas: options, defaults, errors at file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.plugins.clusterset.handler import ClustersetHandler
from interkube.plugins.clusterset.parse import ClustersetConfig, parse
from interkube.server.main import CorefileSource, Server
from interkube.server.runtime import Built

from clusterset_data import CLUSTERS, corefile


def stanza(text: str) -> ClustersetConfig:
    [block] = parse_text(".:53 {\n" + text + "\n}\n", "Corefile")
    return parse(block.directives[0])


def test_defaults() -> None:
    cfg = stanza("clusterset cluster.all")
    assert cfg.zones == ("cluster.all.",) and cfg.clusters == () and cfg.local is None
    assert (cfg.policy, cfg.remote, cfg.mcs, cfg.ttl, cfg.fallthrough.enabled) == ("all", "endpoints", False, 5, False)
    # A local cluster makes local-first the default policy.
    assert stanza("clusterset cluster.all {\n local east\n}").policy == "local-first"
    assert stanza("clusterset").zones == ()  # the server block's zones


def test_every_option() -> None:
    cfg = stanza("""clusterset clusterset.local {
        clusters east west central.eu
        local west
        policy all
        remote clusterip
        mcs
        ttl 30
        fallthrough clusterset.local
    }""")
    assert cfg.clusters == ("east", "west", "central.eu") and cfg.local == "west"
    assert (cfg.policy, cfg.remote, cfg.mcs, cfg.ttl) == ("all", "clusterip", True, 30)
    assert cfg.fallthrough.zones == ("clusterset.local.",)


@pytest.mark.parametrize(("text", "message"), [
    ("policy nearest", "Corefile:3: clusterset: policy must be one of local-first, all, not 'nearest'"),
    ("remote vip", "Corefile:3: clusterset: remote must be one of endpoints, clusterip, not 'vip'"),
    ("clusters east East", "Corefile:3: clusterset: cluster 'East' is named twice"),
    ("clusters -east", "Corefile:3: clusterset: '-east' is not a cluster name"),
    ("clusters", "Corefile:3: clusters: expected at least 1 argument"),
    ("mcs yes", "Corefile:3: mcs: expected exactly 0 arguments"),
    ("ttl 3601", "Corefile:3: ttl 3601 is above the maximum of 3600"),
    ("local a\n local b", "Corefile:4: clusterset: option 'local' given twice (first at Corefile:3)"),
    ("clusters east west\n local north",
     "Corefile:2: clusterset: local 'north' is not among the clusters (east, west)"),
    ("policy local-first", "Corefile:2: clusterset: policy local-first needs a `local NAME` line"),
    ("frobnicate", "Corefile:3: clusterset: unknown option 'frobnicate'"),
])
def test_mistakes_are_errors_at_their_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        stanza("clusterset cluster.all {\n " + text + "\n}")
    assert message in str(info.value)


def test_reverse_zones_are_refused() -> None:
    with pytest.raises(ConfigError, match="Corefile:2: clusterset: reverse zones are not served"):
        stanza("clusterset 10.0.0.0/8")


def build(text: str) -> Built:
    return Server(CorefileSource(path=None, text=text)).build()


def test_setup_checks_the_clusters_against_the_blocks_kubernetes_stanzas(snapshots: dict[str, Path]) -> None:
    built = build(corefile(snapshots, "    clusterset cluster.all\n").replace("PORT", "53"))
    [handler] = [h for h in built.handlers if isinstance(h, ClustersetHandler)]
    assert handler.clusters == CLUSTERS  # every stanza of the block, in order
    no_stanza = (r"<built-in default>:\d+: clusterset: no kubernetes stanza of this server block serves the "
                 r"cluster 'north' \(they serve east, west, central.eu")
    with pytest.raises(ConfigError, match=no_stanza):
        build(corefile(snapshots, "    clusterset cluster.all {\n clusters east north\n }\n").replace("PORT", "53"))
    with pytest.raises(ConfigError, match="clusterset: local 'north' is not among the clusters"):
        build(corefile(snapshots, "    clusterset cluster.all {\n local north\n }\n").replace("PORT", "53"))
    with pytest.raises(ConfigError,
                       match="clusterset: needs the clusters' `kubernetes` stanzas in the same server block"):
        build(".:53 {\n bind 127.0.0.1\n clusterset cluster.all\n}\n")


def test_the_local_cluster_is_preferred_first(snapshots: dict[str, Path]) -> None:
    built = build(corefile(snapshots, "    clusterset cluster.all {\n local central.eu\n }\n").replace("PORT", "53"))
    [handler] = [h for h in built.handlers if isinstance(h, ClustersetHandler)]
    assert handler.order == ("central.eu", "east", "west") and handler.clusters == CLUSTERS
