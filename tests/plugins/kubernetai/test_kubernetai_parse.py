"""A kubernetai stanza is a kubernetes stanza: the same options, parsed alike, its errors named
kubernetai at file:line; any number of them in one server block."""

from __future__ import annotations

import dataclasses

import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.kube.stanza import KubernetesConfig
from interkube.plugins.kubernetai.parse import parse
from interkube.plugins.kubernetes.parse import parse as parse_kubernetes
from interkube.server.runtime import parse_directives

EVERY_OPTION = """{plugin} cluster.local 10.0.0.0/16 clusterset.local {{
    kubeconfig /etc/kube/config prod
    namespaces app team
    labels environment in (staging, qa),application=nginx
    pods verified
    endpoint_pod_names
    ttl 30
    noendpoints
    fallthrough in-addr.arpa
    ignore empty_service
    multicluster clusterset.local
    startup_timeout 10s
    cluster prod
}}"""


def stanza(text: str, plugin: str = "kubernetai") -> KubernetesConfig:
    [block] = parse_text(".:53 {\n" + text + "\n}\n", "Corefile")
    return (parse if plugin == "kubernetai" else parse_kubernetes)(block.directives[0])


def test_every_option_means_what_it_means_for_kubernetes() -> None:
    ours = stanza(EVERY_OPTION.format(plugin="kubernetai"))
    theirs = stanza(EVERY_OPTION.format(plugin="kubernetes"), "kubernetes")
    assert ours == theirs
    assert dataclasses.replace(ours, where="") != KubernetesConfig()
    assert ours.multicluster == ("clusterset.local.",) and ours.ttl == 30 and ours.context == "prod"


@pytest.mark.parametrize(("body", "message"), [
    ("kubernetai {\n    pods sometimes\n}", "Corefile:3: kubernetai: pods must be one of disabled, insecure, verified"),
    ("kubernetai {\n    zonal\n}", "Corefile:3: kubernetai: option 'zonal' is not supported"),
    ("kubernetai {\n    resolution fast\n}", "Corefile:3: kubernetai: unknown option 'resolution'"),
    ("kubernetai cluster.local {\n    multicluster clusterset.local\n}",
     "Corefile:3: multicluster: zone clusterset.local. is not one of the stanza's zones (cluster.local.)"),
    ("kubernetai cluster.local in-addr.arpa {\n    multicluster in-addr.arpa\n}",
     "Corefile:3: multicluster: zone in-addr.arpa. is a reverse zone"),
])
def test_mistakes_are_named_at_their_line(body: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        stanza(body)
    assert str(info.value).startswith(message), str(info.value)


def test_any_number_of_stanzas_share_a_block_after_the_kubernetes_ones() -> None:
    [block] = parse_text(".:53 {\n kubernetai a.test\n kubernetai b.test\n kubernetes c.test\n"
                         " kubernetai d.test\n file db.test\n}\n", "Corefile")
    order = [(plugin.name, d.args[0].text) for _, plugin, _, d in parse_directives(block) if d.args]
    assert order == [("kubernetes", "c.test"), ("kubernetai", "a.test"), ("kubernetai", "b.test"),
                     ("kubernetai", "d.test"), ("file", "db.test")]
