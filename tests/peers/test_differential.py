"""interkube and CoreDNS answer the same corpus from the same kube-apiserver; every difference
must be one that docs/divergences.md lists (see differential_corpus.py for what is compared).

The figures (queries compared, identical, each divergence) are printed at the end of the pytest
run, and by ``python -m tests.peers.differential_report``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from lightkube import Client

from testkit.kubeapi import KubeAPI, KubeObjects

from differential_corpus import (
    ALL_CASE_IDS,
    ASPECTS,
    CASES,
    MCS_CASES,
    Case,
    Divergence,
    Result,
    Verdict,
    documented,
    judge,
    mcs_available,
    report,
    run,
)

pytestmark = pytest.mark.peers


@pytest.fixture(scope="module")
def verdict(kube_api: KubeAPI, kube_client: Client, tmp_path_factory: pytest.TempPathFactory,
            coredns_binary: Path) -> Verdict:
    """Both servers, every question of the corpus, judged against the document."""
    _, results = run(kube_api, coredns_binary, tmp_path_factory.mktemp("differential"),
                     KubeObjects(kube_client))
    return judge(results, documented())


def test_every_difference_from_coredns_is_a_documented_divergence(
        verdict: Verdict, peer_report: Callable[[str], None]) -> None:
    peer_report(report(verdict))
    assert len(verdict.results) == len(CASES) + (len(MCS_CASES) if mcs_available() else 0)
    assert not verdict.undocumented, (
        "answers differ from CoreDNS's in ways docs/divergences.md does not list; fix interkube "
        "or document the divergence:\n" + "\n".join(r.describe() for r in verdict.undocumented))
    assert not verdict.stale, (
        "docs/divergences.md lists differences that are gone; remove them:\n"
        + "\n".join(f"{key} {case}: {why}" for key, case, why in verdict.stale))


def test_most_answers_are_identical(verdict: Verdict) -> None:
    # A guard against a corpus that stops meaning anything (e.g. every answer SERVFAIL on both
    # sides would be "identical"): the identical answers must hold real records too.
    identical = [r for r in verdict.results if not r.differs]
    assert len(identical) >= 0.9 * len(verdict.results)
    with_records = [r for r in identical if r.interkube["answer"]]
    assert len(with_records) >= 0.4 * len(identical)
    assert not [r.case.id for r in verdict.results if r.interkube["rcode"] in ("SERVFAIL", "no answer")]


def test_the_divergence_document_is_well_formed() -> None:
    divergences = documented()
    assert divergences, "docs/divergences.md lists no divergence"
    for d in divergences:
        assert d.status in ("intended", "pending"), d
        assert len(d.reason) > 80, f"{d.key} gives no reason"
        assert set(d.cases) <= ALL_CASE_IDS, f"{d.key} lists cases the corpus does not have"


def test_mcs_clusterset_local_is_compared(verdict: Verdict) -> None:
    # CoreDNS's `multicluster clusterset.local` against interkube's clusterset plugin (`mcs`).
    if not mcs_available():
        pytest.skip("MCS (clusterset.local) not compared: this build of interkube has no clusterset "
                    "plugin (src/interkube/plugins/clusterset)")
    mcs = [r for r in verdict.results if r.case.group == "mcs"]
    assert len(mcs) == len(MCS_CASES)
    assert sum(1 for r in mcs if not r.differs) >= len(mcs) // 2


# --- the judging itself (no peers needed) -----------------------------------------------------


def _result(case: str, **differs: str) -> Result:
    same = {a: "x" for a in ASPECTS}
    return Result(Case(case, "n.", "A"), "n.", same, {**same, **differs})


def test_judge_flags_undocumented_and_stale_entries() -> None:
    doc = [Divergence("D1", "t", "intended", {"apex-txt": frozenset({"rcode"}),
                                               "svc-ent-txt": frozenset({"rcode"})}, "r")]
    verdict = judge([_result("apex-txt", rcode="y"), _result("svc-ent-txt"),
                     _result("web-a", answer="y")], doc)
    assert [r.case.id for r in verdict.undocumented] == ["web-a"]
    assert verdict.stale == [("D1", "svc-ent-txt", "answers identically now")]
    # A documented case that differs in a part its entry does not name is undocumented too.
    verdict = judge([_result("apex-txt", rcode="y", answer="y")], doc)
    assert [r.case.id for r in verdict.undocumented] == ["apex-txt"]
