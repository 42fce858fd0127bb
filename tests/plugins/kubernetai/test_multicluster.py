"""A kubernetes (or kubernetai) stanza's ``multicluster ZONES``, CoreDNS's MCS option: those zones
answer exactly as ``clusterset ZONES { mcs; clusters NAME; local NAME }`` over the stanza's
cluster would, with the stanza's ttl and fallthrough; the stanza's other zones are untouched.
And the kubernetes README's multicluster example, started."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.plugin.services import Services
from interkube.server.runtime import build
from testkit.fakekube import DEFAULT_TYPES, SERVICE_EXPORT, SERVICE_IMPORT, FakeKube, write_kubeconfig, write_snapshot
from testkit.readme import on_port, readme_examples
from testkit.servers import aquery, free_port, in_process

from kubernetai_data import east_objects, mcs_objects

Running = Any
Serve = Callable[[str], Awaitable[Running]]

QUESTIONS = [
    ("web.mcs.svc.clusterset.local", "A"), ("web.mcs.svc.clusterset.local", "AAAA"),
    ("web.mcs.svc.clusterset.local", "SRV"), ("_http._tcp.web.mcs.svc.clusterset.local", "SRV"),
    ("_http._udp.web.mcs.svc.clusterset.local", "SRV"), ("WeB.Mcs.Svc.ClusterSet.Local", "A"),
    ("hl.mcs.svc.clusterset.local", "A"), ("hl.mcs.svc.clusterset.local", "SRV"),
    ("pet-0.east.hl.mcs.svc.clusterset.local", "A"), ("10-244-5-21.east.hl.mcs.svc.clusterset.local", "A"),
    ("pet-0.west.hl.mcs.svc.clusterset.local", "A"), ("east.hl.mcs.svc.clusterset.local", "A"),
    ("unimported.mcs.svc.clusterset.local", "A"), ("private.mcs.svc.clusterset.local", "A"),
    ("missing.mcs.svc.clusterset.local", "A"), ("mcs.svc.clusterset.local", "A"),
    ("svc.clusterset.local", "TXT"), ("clusterset.local", "SOA"), ("clusterset.local", "NS"),
    ("dns-version.clusterset.local", "TXT"), ("10-244-5-5.mcs.pod.clusterset.local", "A"),
    ("clusterset.local", "AXFR"),
]


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    return write_snapshot(tmp_path / "east.yaml", east_objects() + mcs_objects())


def shape(msg: dns.message.Message) -> tuple[str, ...]:
    """The whole answer as text, the SOA serial aside (two servers' clusters were read apart)."""
    out = []
    for section in (msg.answer, msg.authority, msg.additional):
        for rrset in section:
            for rd in rrset:
                text = rd.to_text()
                if rrset.rdtype == dns.rdatatype.SOA:
                    text = " ".join(p if i != 2 else "SERIAL" for i, p in enumerate(text.split()))
                out.append(f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {text}")
    return (dns.rcode.to_text(msg.rcode()), dns.flags.to_text(msg.flags), *sorted(out))


async def answers(k: Running, questions: list[tuple[str, str]]) -> list[tuple[str, ...]]:
    return [shape(await k.query(name, rdtype, tcp=rdtype == "AXFR")) for name, rdtype in questions]


@pytest.mark.parametrize("plugin", ["kubernetes", "kubernetai"])
async def test_the_multicluster_zone_answers_as_clusterset_mcs_over_the_stanzas_cluster(
        serve: Serve, snapshot: Path, plugin: str) -> None:
    ours = await serve(f"""cluster.east:PORT clusterset.local:PORT {{
    bind 127.0.0.1
    {plugin} cluster.east clusterset.local {{
        snapshot {snapshot}
        multicluster clusterset.local
    }}
}}
""")
    reference = await serve(f"""cluster.east:PORT clusterset.local:PORT {{
    bind 127.0.0.1
    kubernetes cluster.east {{
        snapshot {snapshot}
    }}
    clusterset clusterset.local {{
        mcs
        clusters east
        local east
    }}
}}
""")
    got, want = await answers(ours, QUESTIONS), await answers(reference, QUESTIONS)
    assert [q for q, a, b in zip(QUESTIONS, got, want, strict=True) if a != b] == []
    by_question = dict(zip(QUESTIONS, got, strict=True))
    # And they are the MCS answers: the clusterset IP, per-cluster names for headless endpoints,
    # an exported Service without its ServiceImport at its (local) ClusterIP, nothing unexported.
    assert "web.mcs.svc.clusterset.local. 5 A 10.97.0.10" in by_question[("web.mcs.svc.clusterset.local", "A")]
    assert "pet-0.east.hl.mcs.svc.clusterset.local. 5 A 10.244.5.20" in by_question[
        ("pet-0.east.hl.mcs.svc.clusterset.local", "A")]
    assert "unimported.mcs.svc.clusterset.local. 5 A 10.96.5.30" in by_question[
        ("unimported.mcs.svc.clusterset.local", "A")]
    assert by_question[("private.mcs.svc.clusterset.local", "A")][0] == "NXDOMAIN"
    assert by_question[("dns-version.clusterset.local", "TXT")][-1].endswith('TXT "1.0.0"')
    # The stanza's own zone is its own, as without the option.
    web = shape(await ours.query("web.shop.svc.cluster.east", "A"))
    assert "web.shop.svc.cluster.east. 5 A 10.96.1.10" in web


async def test_the_stanzas_ttl_and_fallthrough_hold_in_the_multicluster_zone(serve: Serve, snapshot: Path,
                                                                             tmp_path: Path) -> None:
    zone = tmp_path / "db.clusterset"
    zone.write_text("@ 300 IN SOA ns admin 1 7200 1800 86400 30\n@ 300 IN NS ns\nns 300 IN A 192.0.2.53\n"
                    "other.mcs.svc 300 IN A 192.0.2.7\n")
    k = await serve(f"""clusterset.local:PORT {{
    bind 127.0.0.1
    kubernetes {{
        snapshot {snapshot}
        cluster east
        ttl 30
        fallthrough
        multicluster clusterset.local
    }}
    file {zone} clusterset.local
}}
""")
    web = await k.query("web.mcs.svc.clusterset.local", "A")
    assert [(r.ttl, r[0].to_text()) for r in web.answer] == [(30, "10.97.0.10")]
    other = await k.query("other.mcs.svc.clusterset.local", "A")
    assert [(r.ttl, r[0].to_text()) for r in other.answer] == [(300, "192.0.2.7")]  # the file's


def test_a_multicluster_zone_the_stanza_does_not_serve_is_refused_at_its_line(snapshot: Path) -> None:
    # The stanza takes the block's zones: checked at setup, at the stanza's line.
    text = f"cluster.local {{\n  kubernetes {{\n    snapshot {snapshot}\n    multicluster clusterset.local\n  }}\n}}\n"
    with pytest.raises(ConfigError) as info:
        build(parse_text(text, "Corefile"), "Corefile", Services())
    assert str(info.value) == ("Corefile:2: kubernetes: zone clusterset.local. is not one of the stanza's "
                               "zones (cluster.local.); a multicluster zone must be served by its stanza")


async def test_the_kubernetes_readmes_multicluster_example(tmp_path: Path) -> None:
    [example] = [e for e in readme_examples("kubernetes") if "multicluster" in e]
    async with FakeKube(watch=True, types=(*DEFAULT_TYPES, SERVICE_EXPORT, SERVICE_IMPORT)) as fake:
        fake.add_all(east_objects() + mcs_objects())
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"east": fake})
        port = free_port()
        text = example.replace("/etc/interkube/kubeconfig", str(kubeconfig))
        async with in_process(on_port(text, port)):
            web = await aquery("web.mcs.svc.clusterset.local", "A", port)
            pet = await aquery("pet-0.east.hl.mcs.svc.clusterset.local", "A", port)
            local = await aquery("web.shop.svc.cluster.local", "A", port)
    assert [r[0].to_text() for r in web.answer] == ["10.97.0.10"]
    assert [r[0].to_text() for r in pet.answer] == ["10.244.5.20"]  # the context names the cluster ID
    assert [r[0].to_text() for r in local.answer] == ["10.96.1.10"]
