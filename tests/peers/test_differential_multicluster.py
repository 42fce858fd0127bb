"""CoreDNS's kubernetes ``multicluster ZONES`` option, given to both servers in the same Corefile:
interkube answers those zones by the clusterset plugin's MCS rules over the stanza's cluster
(see the kubernetes plugin's README), CoreDNS from what an MCS controller imported. The MCS
corpus of differential_corpus.py (exports, imports, ClusterSetIP, headless, names per cluster)
is asked of both, with a few questions of the stanza's own zone; every difference must be one
that docs/divergences.md lists, and every one listed for these cases must still differ so.

The stanza names its cluster through a kubeconfig context (``east``, the cluster ID the MCS
objects carry), which both servers accept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from lightkube import Client

from testkit.coredns import CoreDNS
from testkit.kubeapi import KubeAPI, KubeObjects
from testkit.servers import free_port, interkube_process, process_output
from testkit.waiting import wait_until

from differential_corpus import (
    CLUSTER_ID,
    MCS_CASES,
    MCS_SENTINELS,
    Case,
    Result,
    World,
    ask,
    check_comparison,
    populate,
    populate_mcs,
    summarize,
)

pytestmark = pytest.mark.peers

#: The one Corefile: ``{port}`` is ":PORT" for interkube and "" for CoreDNS (-dns.port).
COREFILE = """\
cluster.local{port} clusterset.local{port} {{
    bind 127.0.0.1
    kubernetes cluster.local clusterset.local {{
        kubeconfig {kubeconfig} {context}
        multicluster clusterset.local
    }}
}}
"""

#: The stanza's own zone beside the MCS one: answered as without the option.
LOCAL_CASES = (
    Case("mc-local-web-a", "web.{ns}.svc.cluster.local", "A", group="mc-local"),
    Case("mc-local-hl-srv", "_http._tcp.hl.{ns}.svc.cluster.local", "SRV", group="mc-local"),
    Case("mc-local-mcs-web-a", "web.{mcs}.svc.cluster.local", "A", group="mc-local"),
    Case("mc-local-apex-soa", "cluster.local.", "SOA", group="mc-local"),
)


def with_context(source: Path, target: Path, context: str) -> Path:
    """``source``'s kubeconfig with its one context renamed ``context``."""
    config = yaml.safe_load(source.read_text())
    config["contexts"][0]["name"] = context
    config["current-context"] = context
    target.write_text(yaml.safe_dump(config))
    return target


@contextlib.contextmanager
def pair(coredns_binary: Path, kubeconfig: Path, work: Path) -> Iterator[tuple[CoreDNS, int, object]]:
    port = free_port()
    ours = work / "Corefile.interkube"
    ours.write_text(COREFILE.format(port=f":{port}", kubeconfig=kubeconfig, context=CLUSTER_ID))
    theirs = COREFILE.format(port="", kubeconfig=kubeconfig, context=CLUSTER_ID)
    with CoreDNS(coredns_binary, theirs, work / "coredns", probe_name="cluster.local.") as peer, \
            interkube_process(ours, port) as proc:
        yield peer, port, proc


@pytest.fixture(scope="module")
def results(kube_api: KubeAPI, kube_client: Client, coredns_binary: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Result]]:
    work = tmp_path_factory.mktemp("multicluster")
    kube = KubeObjects(kube_client)
    world: World = populate(kube)
    try:
        populate_mcs(kube, world)
        kubeconfig = with_context(kube_api.kubeconfig, work / "kubeconfig", CLUSTER_ID)
        with pair(coredns_binary, kubeconfig, work) as (peer, port, proc):
            def synced() -> bool:
                return all(reply is not None and reply.answer for p in (peer.port, port)
                           for reply in [ask(p, MCS_SENTINELS[0], world, timeout=1.0)])

            wait_until(synced, lambda: f"both answering the MCS sentinel; interkube log:\n"
                       f"{process_output(proc)[-3000:]}", 60, every=0.2)  # type: ignore[arg-type]
            yield [Result(case, world.fill(case.name), summarize(ask(peer.port, case, world)),
                          summarize(ask(port, case, world))) for case in MCS_CASES + LOCAL_CASES]
    finally:
        for namespace in world.namespaces:
            kube_api.delete_namespace(namespace)


def test_multicluster_answers_as_coredns_or_as_documented(
        results: list[Result], peer_report: Callable[[str], None]) -> None:
    # The MCS cases are the corpus's own, documented under their plain ids (D8 to D11).
    check_comparison("multicluster differential (the same Corefile)", results, "", peer_report)


def test_the_comparison_means_something(results: list[Result]) -> None:
    assert not [r.case.id for r in results if r.interkube["rcode"] in ("SERVFAIL", "no answer")]
    identical = [r for r in results if not r.differs]
    assert len(identical) >= 0.7 * len(results)
    assert sum(1 for r in identical if r.interkube["answer"]) >= 8
