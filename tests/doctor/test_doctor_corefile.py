"""The doctor's plan and Corefile checks against real DNS servers on loopback: unbound, interkube
in this event loop (a DNS-over-TLS front with a file zone, a peer that forwards back)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from interkube.cli import main
from interkube.doctor import corefile
from interkube.doctor.findings import Finding, Level
from interkube.tlsutil import certs
from testkit.servers import LOOPBACK, free_port, in_process, unbound
from tests.doctor.helpers import SOA, ZONE, doctor, levels, one, zone_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plans"


def write(tmp_path: Path, text: str, name: str = "Corefile") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- the plan ----------------------------------------------------------------------------------------


async def test_plan_findings_are_check_s_findings(tmp_path: Path) -> None:
    good = await doctor(plan=str(EXAMPLES / "000_forwarded_dns_aws.yaml"))
    assert one(good, "plan.rules").level is Level.OK
    overlap = tmp_path / "plan.yaml"
    overlap.write_text("clusters:\n  - name: a\n    nodes: [10.0.0.0/16]\n    pods: [10.0.0.0/16]\n"
                       "    services: [172.20.0.0/16]\n  - name: b\n    nodes: [10.0.128.0/17]\n"
                       "    pods: [10.0.128.0/17]\n    services: [172.20.0.0/16]\n"
                       "links:\n  - between: [a, b]\n")
    bad = await doctor(plan=str(overlap))
    r1 = [f for f in bad if f.id == "plan.R1"]
    assert len(r1) == 4 and all(f.level is Level.FAIL and f.fix for f in r1)  # nodes and pods, both ways
    assert "10.0.128.0/17" in r1[0].evidence and "plan.yaml:3 clusters[0].nodes[0]" in r1[0].evidence
    assert not levels(bad, "plan.rules")


def test_command_exit_status_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--plan", str(EXAMPLES / "000_forwarded_dns_aws.yaml")]) == 0
    assert "ok     plan.rules" in capsys.readouterr().out
    assert main(["doctor", "--plan", str(EXAMPLES / "001_vip_black_hole.yaml"), "--json"]) == 1
    import json

    data = json.loads(capsys.readouterr().out)
    assert not data["ok"] and data["counts"]["fail"] >= 1
    assert any(f["id"] == "plan.R3" and f["level"] == "fail" for f in data["findings"])


# --- parse, setup ---------------------------------------------------------------------------------------


async def test_parse_and_setup_errors_name_the_line(tmp_path: Path) -> None:
    bad = write(tmp_path, f"{ZONE}:{free_port()} {{\n    forward . 127.0.0.1:53 {{\n"
                          "        no_such_option\n    }\n}\n")
    found = await doctor(corefile=bad)
    parse = one(found, "corefile.parse")
    assert parse.level is Level.FAIL and f"{bad}:3" in parse.evidence
    missing = write(tmp_path, f"{ZONE}:{free_port()} {{\n    file {tmp_path}/no-such.zone\n}}\n", "Corefile2")
    found = await doctor(corefile=missing)
    assert one(found, "corefile.parse").level is Level.OK
    setup = one(found, "corefile.setup")
    assert setup.level is Level.FAIL and f"{missing}:2" in setup.evidence


# --- open resolver -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("block", "expected"), [
    ("forward . 127.0.0.1:5300", Level.FAIL),
    ("acl {\n allow net 127.0.0.0/8 10.0.0.0/8\n block\n }\n forward . 127.0.0.1:5300", Level.OK),
    # Refusing only ANY leaves every other type open.
    ("acl {\n block type ANY\n }\n forward . 127.0.0.1:5300", Level.FAIL),
    # An allow for the whole internet comes first: open.
    ("acl {\n allow net 0.0.0.0/0\n block\n }\n forward . 127.0.0.1:5300", Level.FAIL),
    ("bind 127.0.0.1 10.1.2.3\n forward . 127.0.0.1:5300", Level.OK),
    ("bind 127.0.0.1 8.8.4.4\n forward . 127.0.0.1:5300", Level.FAIL),
    ("bind 0.0.0.0\n forward . 127.0.0.1:5300", Level.FAIL),  # every address
])
def test_open_resolver(tmp_path: Path, block: str, expected: Level) -> None:
    model, found = corefile.load(write(tmp_path, f".:{free_port()} {{\n {block}\n}}\n"))
    assert model is not None, found
    assert [f.level for f in corefile.check_open_resolver(model)] == [expected]


def test_forwarding_only_a_private_zone_is_no_open_resolver(tmp_path: Path) -> None:
    model, _ = corefile.load(write(tmp_path, f"{ZONE}:{free_port()} {{\n forward . 127.0.0.1:5300\n}}\n"))
    assert model is not None
    assert [f.level for f in corefile.check_open_resolver(model)] == [Level.OK]


# --- loops ---------------------------------------------------------------------------------------------------


async def test_forward_to_its_own_listener_is_a_loop(tmp_path: Path) -> None:
    port = free_port()
    looped = write(tmp_path, f"{ZONE}:{port} {{\n bind {LOOPBACK}\n forward . {LOOPBACK}:{port}\n}}\n")
    found = await doctor(corefile=looped)
    loop = one(found, "corefile.loop")
    assert loop.level is Level.FAIL and f"{looped}:3" in loop.subject and f"{LOOPBACK}:{port}" in loop.evidence
    # The same zone on another port than the upstream's: no loop.
    other = write(tmp_path, f"{ZONE}:{free_port()} {{\n bind {LOOPBACK}\n forward . {LOOPBACK}:{port}\n}}\n", "C2")
    assert levels(await doctor(corefile=other), "corefile.loop") == [Level.OK]


async def test_peer_that_forwards_back_is_a_loop(tmp_path: Path) -> None:
    ours, peer = free_port(), free_port()
    conf = write(tmp_path, f"{ZONE}:{ours} {{\n bind {LOOPBACK}\n forward . {LOOPBACK}:{peer}\n}}\n")
    # The peer (the remote cluster's server) forwards the zone back to ours.
    async with in_process(f"{ZONE}:{peer} {{\n bind {LOOPBACK}\n forward . {LOOPBACK}:{ours}\n}}\n"):
        found = await doctor(corefile=conf)
    looped = [f for f in found if f.id == "corefile.loop" and f.level is Level.FAIL]
    assert len(looped) == 1 and f"{LOOPBACK}:{peer}" in looped[0].evidence, found
    assert one(found, "upstream.soa").level is Level.FAIL


# --- SOA of forwarded zones ------------------------------------------------------------------------------------


async def test_upstream_answering_soa_passes_and_a_silent_one_fails(tmp_path: Path) -> None:
    good, silent = free_port(), free_port()
    with unbound(good, [SOA], zone=ZONE):
        passing = write(tmp_path, f"{ZONE}:{free_port()} {{\n bind {LOOPBACK}\n forward . {LOOPBACK}:{good}\n}}\n")
        found = await doctor(corefile=passing)
        soa = one(found, "upstream.soa")
        assert soa.level is Level.OK and "serial 7" in soa.evidence
        assert levels(found, "corefile.loop") == [Level.OK]

        mixed = write(tmp_path, f"{ZONE}:{free_port()} {{\n bind {LOOPBACK}\n"
                      f" forward . {LOOPBACK}:{good} {LOOPBACK}:{silent}\n}}\n", "C2")
        soa = one(await doctor(corefile=mixed), "upstream.soa")
        assert soa.level is Level.WARN and f"{LOOPBACK}:{silent}: no answer" in soa.evidence

    failing = write(tmp_path, f"{ZONE}:{free_port()} {{\n bind {LOOPBACK}\n forward . {LOOPBACK}:{silent}\n}}\n", "C3")
    soa = one(await doctor(corefile=failing), "upstream.soa")
    assert soa.level is Level.FAIL and "no upstream answers SOA" in soa.evidence and soa.fix


async def test_upstream_that_does_not_serve_the_zone_fails(tmp_path: Path) -> None:
    port = free_port()
    # unbound serves another zone only: it refuses (no recursion) or answers without our SOA.
    with unbound(port, ["other.example. 3600 IN SOA ns.other.example. h.other.example. 1 3600 600 86400 30"],
                 zone="other.example."):
        conf = write(tmp_path, f"{ZONE}:{free_port()} {{\n bind {LOOPBACK}\n forward . {LOOPBACK}:{port}\n}}\n")
        assert one(await doctor(corefile=conf), "upstream.soa").level is Level.FAIL


# --- over TLS ---------------------------------------------------------------------------------------------------


SERVER_NAME = "dns.remote"


def pair(tmp_path: Path, name: str, issued: certs.Issued) -> tuple[Path, Path]:
    crt, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    issued.save(crt, key)
    return crt, key


async def tls_findings(tmp_path: Path, server: certs.Issued, ca: certs.Issued) -> list[Finding]:
    crt, key = pair(tmp_path, "server", server)
    ca_path = tmp_path / "ca.crt"
    ca_path.write_bytes(ca.cert_pem())
    client_crt, client_key = pair(tmp_path, "client", certs.issue(ca, "client", server=False, client=True))
    zone = zone_file(tmp_path / "remote.zone")
    dot = free_port()
    conf = write(tmp_path, f"{ZONE}:{free_port()} {{\n bind {LOOPBACK}\n"
                 f" forward . tls://{LOOPBACK}:{dot} {{\n  tls {client_crt} {client_key} {ca_path}\n"
                 f"  tls_servername {SERVER_NAME}\n }}\n}}\n")
    front = (f"tls://{ZONE}:{dot} {{\n bind {LOOPBACK}\n tls {crt} {key} {ca_path} {{\n"
             "  client_auth require_and_verify\n }\n file " + zone + "\n}\n")
    async with in_process(front):
        return await doctor(corefile=conf)


async def test_dot_upstream_with_a_good_certificate(tmp_path: Path) -> None:
    ca = certs.create_ca("doctor CA")
    found = await tls_findings(tmp_path, certs.issue(ca, SERVER_NAME, dns_names=[SERVER_NAME]), ca)
    for id in ("upstream.tls-name", "upstream.tls-chain", "upstream.tls-expiry", "upstream.soa"):
        assert one(found, id).level is Level.OK, one(found, id)


async def test_dot_certificate_near_expiry_is_a_warning(tmp_path: Path) -> None:
    ca = certs.create_ca("doctor CA")
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=10)
    found = await tls_findings(tmp_path, certs.issue(ca, SERVER_NAME, dns_names=[SERVER_NAME], not_after=soon), ca)
    expiry = one(found, "upstream.tls-expiry")
    assert expiry.level is Level.WARN and "expires in 9 days" in expiry.evidence
    assert one(found, "upstream.soa").level is Level.OK


async def test_dot_certificate_expired_fails(tmp_path: Path) -> None:
    ca = certs.create_ca("doctor CA")
    now = datetime.datetime.now(datetime.UTC)
    expired = certs.issue(ca, SERVER_NAME, dns_names=[SERVER_NAME], not_before=now - datetime.timedelta(days=30),
                          not_after=now - datetime.timedelta(days=1))
    found = await tls_findings(tmp_path, expired, ca)
    assert one(found, "upstream.tls-expiry").level is Level.FAIL
    soa = one(found, "upstream.soa")
    assert soa.level is Level.FAIL and "expired" in soa.evidence


async def test_dot_certificate_for_another_name_or_ca_fails(tmp_path: Path) -> None:
    ca = certs.create_ca("doctor CA")
    (tmp_path / "name").mkdir()
    found = await tls_findings(tmp_path / "name", certs.issue(ca, "dns.other", dns_names=["dns.other"]), ca)
    name = one(found, "upstream.tls-name")
    assert name.level is Level.FAIL and SERVER_NAME in name.evidence and "dns.other" in name.evidence
    assert one(found, "upstream.tls-chain").level is Level.OK

    other = certs.create_ca("another CA")
    (tmp_path / "ca").mkdir()
    found = await tls_findings(tmp_path / "ca", certs.issue(other, SERVER_NAME, dns_names=[SERVER_NAME]), ca)
    chain = one(found, "upstream.tls-chain")
    assert chain.level is Level.FAIL and "another CA" in chain.evidence
    assert one(found, "upstream.soa").level is Level.FAIL


def test_probe_pod_needs_a_lab(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--probe-pod", "cluster1/client", "--lab-state", str(tmp_path / "none")]) == 1
    out = capsys.readouterr().out
    assert "fail   probe  lab pod cluster1/client" in out and "interkube lab up" in out
    assert main(["doctor", "--probe-pod", "cluster1"]) == 1
    assert "--probe-pod takes CLUSTER/POD" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--probe-connect", "10.0.0.1"], ["--probe-connect", "host:80"],
                                  ["--probe-dns", "10.0.0.1:99999"], ["--timeout", "0"]])
def test_probe_addresses_are_checked(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["doctor", "--probe", "ns", *argv])
    assert exc.value.code == 2 and argv[0] in capsys.readouterr().err


def test_nothing_to_check_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["doctor"])
    assert exc.value.code == 2 and "give something to check" in capsys.readouterr().err
