"""The harness's servers as configured for each scenario, started for real on loopback and asked
through the harness's own answer check: S6 (DNS over TLS) for every server that has DoT, and
knot-resolver in every scenario it takes part in. Never a timing figure.

Each server is started by ``bench.runner.serving`` (what ``python -m bench`` uses) with the
context ``Runner.context`` sets up (the upstream responder of S2/S3, the run's certificates of
S6), and stopped by its PID.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.exception
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # bench/ is a package at the repository root, not installed

from bench import dot  # noqa: E402
from bench.generators import Loadgen  # noqa: E402
from bench.runner import Runner, ScenarioResult, Settings, _query, check_answers, serving  # noqa: E402
from bench.scenarios import Scenario, build  # noqa: E402
from bench.servers import _CLASSES, Context, Dnsmasq, Server  # noqa: E402


def _server(name: str) -> Server:
    """The harness's server ``name``, or skip when it is not installed here."""
    if shutil.which("taskset") is None or shutil.which("gcc") is None:
        pytest.skip("the harness needs taskset and gcc (loadgen is built for the context)")
    if 0 not in os.sched_getaffinity(0):
        pytest.skip("servers are pinned to CPU 0, which this process may not use")
    server = _CLASSES[name](name)
    reason = server.unavailable()
    if reason:
        pytest.skip(reason)
    return server


def _scenario(sc_id: str) -> Scenario:
    (sc,) = build([sc_id])
    return sc


@contextmanager
def _context(sc: Scenario, tmp_path: Path, server: str) -> Iterator[Context]:
    """What the runner sets up around ``sc`` when ``server`` alone is selected."""
    runner = Runner(Settings(servers=[server]), [], Loadgen(), tmp_path)
    with runner.context(sc, ScenarioResult(sc.id, sc.title, sc.transport)) as ctx:
        yield ctx


def _workdir(tmp_path: Path, name: str) -> Path:
    wd = tmp_path / name
    wd.mkdir(parents=True, exist_ok=True)
    return wd


@pytest.mark.parametrize("name", ["interkube", "unbound", "kresd", "coredns"])
def test_s6_server_answers_over_dot_with_the_runs_certificate(name: str, tmp_path: Path) -> None:
    server = _server(name)
    sc = _scenario("S6")
    with _context(sc, tmp_path, name) as ctx, serving(sc, server, ctx, _workdir(tmp_path, name)) as (_, port, _l):
        assert ctx.pki is not None
        checked, bad = check_answers(sc, port, ctx.pki)
        assert checked > 0 and bad == []
        assert dot.negotiated(ctx.pki, port).startswith("TLSv1.")
        # The port speaks TLS only: a plain DNS-over-TCP query gets no answer there.
        with pytest.raises((EOFError, OSError, dns.exception.DNSException)):
            _query(sc.names[0], port, "tcp", timeout=1.0)


def test_dnsmasq_is_skipped_in_s6_for_want_of_dot_and_only_there() -> None:
    dnsmasq = Dnsmasq("dnsmasq")
    reason = dnsmasq.skip_reason(_scenario("S6"), Context())
    assert reason is not None and "DNS-over-TLS" in reason
    assert dnsmasq.skip_reason(_scenario("S4"), Context()) is None


def test_dot_answer_check_sees_wrong_answers_and_a_foreign_certificate(tmp_path: Path) -> None:
    server = _server("interkube")
    sc = _scenario("S6")
    # The server is given one record that differs from what the scenario expects.
    first, addr = sc.records[0]
    served = dataclasses.replace(sc, records=[(first, "203.0.113.9"), *sc.records[1:]])
    with _context(sc, tmp_path, "interkube") as ctx, \
            serving(served, server, ctx, _workdir(tmp_path, "interkube")) as (_, port, _l):
        assert ctx.pki is not None
        _, bad = check_answers(sc, port, ctx.pki)
        assert bad == [f"{first}: NOERROR ['203.0.113.9'] (want ['{addr}'])"]
        # A client that trusts another CA refuses the server's certificate: nothing is checked.
        foreign = dot.make_pki(tmp_path / "other-ca")
        checked, bad = check_answers(sc, port, foreign)
        assert len(bad) == checked and all("SSLCertVerificationError" in b for b in bad)


@pytest.mark.parametrize("sc_id", ["S1-hosts", "S1-k8s", "S2", "S3", "S4", "S6"])
def test_kresd_answers_in_every_scenario_it_takes_part_in(sc_id: str, tmp_path: Path) -> None:
    server = _server("kresd")
    sc = _scenario(sc_id)
    assert server.skip_reason(sc, Context()) is None
    with _context(sc, tmp_path, "kresd") as ctx, serving(sc, server, ctx, _workdir(tmp_path, "kresd")) as (_, port, _l):
        checked, bad = check_answers(sc, port, ctx.pki)
        assert checked > 0 and bad == []


def test_s5_lists_the_peers_it_does_not_measure_with_why() -> None:
    from bench.servers import servers_for

    listed = {s.label: s.unavailable() for s in servers_for(_scenario("S5"), ["interkube", "kresd", "dnsmasq"])}
    assert set(listed) == {"interkube", "interkube (2 workers)", "kresd (2 processes)", "dnsmasq (2 threads)"}
    reason = listed["kresd (2 processes)"]
    assert reason is not None and "one kresd process per core" in reason
    assert listed["dnsmasq (2 threads)"] == "dnsmasq is single-threaded"
