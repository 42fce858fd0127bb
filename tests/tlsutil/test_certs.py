"""`interkube certs` and its Python API: names a cluster's DNS needs, key permissions, usable
certificates, idempotent runs, and refusing to overwrite silently."""

from __future__ import annotations

import re
import shutil
import ssl
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from interkube.cli import main
from interkube.tlsutil import certs


def run(tmp_path: Path, *argv: str) -> int:
    return main(["certs", "--dir", str(tmp_path / "out"), *argv])


def test_ca_and_leaf_certificates() -> None:
    ca = certs.create_ca("lab CA")
    bc = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    srv = certs.issue(ca, "dns.remote", dns_names=["dns.remote", "*.remote.svc.cluster.local"],
                      ip_addresses=["127.0.0.1", "::1"])
    assert srv.dns_names == ["dns.remote", "*.remote.svc.cluster.local"]
    assert srv.ip_addresses == ["127.0.0.1", "::1"]
    eku = srv.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert certs.signed_by(srv.cert, ca.cert) and not certs.signed_by(srv.cert, certs.create_ca().cert)
    cli = certs.issue(ca, "dns-client.local", server=False, client=True, key_type="rsa")
    assert list(cli.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == \
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(certs.CertificateError, match="server, a client, or both"):
        certs.issue(ca, "x", server=False, client=False)
    with pytest.raises(certs.CertificateError, match="not an IP address"):
        certs.issue(ca, "x", ip_addresses=["10.0.0.300"])


def test_cluster_names() -> None:
    names = certs.cluster_names("Remote", namespaces=["remote"], services=["interkube-dot.kube-system"],
                                extra_dns=["dot.example.org."], ip_addresses=["10.1.0.53"])
    assert names.server_name == "dns.remote"
    assert names.dns_names() == ["dns.remote", "remote.svc.cluster.local", "*.remote.svc.cluster.local",
                                 "interkube-dot.kube-system", "interkube-dot.kube-system.svc",
                                 "interkube-dot.kube-system.svc.cluster.local", "dot.example.org"]
    assert names.ip_addresses == ("10.1.0.53",)
    with pytest.raises(certs.CertificateError, match="not a DNS label"):
        certs.cluster_names("my_cluster")
    with pytest.raises(certs.CertificateError, match=re.escape("NAME.NAMESPACE")):
        certs.cluster_names("a", services=["dot"])


def test_certs_command_writes_a_usable_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "local", "remote", "--namespace", "remote", "--ip", "127.0.0.1") == 0
    out = tmp_path / "out"
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["ca.crt", "ca.key", "local/client.crt", "local/client.key", "local/server.crt",
                     "local/server.key", "remote/client.crt", "remote/client.key", "remote/server.crt",
                     "remote/server.key"]
    for p in out.rglob("*"):
        mode = stat.S_IMODE(p.stat().st_mode)
        if p.suffix == ".key":
            assert mode == 0o600, p
        elif p.is_dir():
            assert mode == 0o700, p
        else:
            assert mode == 0o644, p
    assert not list(out.rglob(".*"))  # no temporary files left behind
    remote = certs.load(out / "remote/server.crt", out / "remote/server.key")
    assert remote.dns_names == ["dns.remote", "remote.svc.cluster.local", "*.remote.svc.cluster.local"]
    assert remote.ip_addresses == ["127.0.0.1"]
    assert "remote: forwarders verify the name dns.remote" in capsys.readouterr().out

    # The files work where they are meant to: a TLS server, a TLS client, OpenSSL's verify.
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(out / "remote/server.crt", out / "remote/server.key")
    client_ctx = ssl.create_default_context(cafile=str(out / "ca.crt"))
    client_ctx.load_cert_chain(out / "local/client.crt", out / "local/client.key")
    if shutil.which("openssl"):
        for purpose, path in (("sslserver", "remote/server.crt"), ("sslclient", "local/client.crt")):
            res = subprocess.run(["openssl", "verify", "-purpose", purpose, "-CAfile", str(out / "ca.crt"),
                                  str(out / path)], capture_output=True, text=True, timeout=30)
            assert res.returncode == 0 and ": OK" in res.stdout, res.stdout + res.stderr


def test_certs_command_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "remote", "--namespace", "remote") == 0
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert run(tmp_path, "remote", "--namespace", "remote") == 0
    after = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert after == before
    out = capsys.readouterr().out
    assert out.count("kept") == 3 and "created" not in out


def test_certs_command_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "remote", "--namespace", "remote") == 0
    server_crt = tmp_path / "out/remote/server.crt"
    before = server_crt.read_bytes()
    assert run(tmp_path, "remote", "--namespace", "other") == 1
    err = capsys.readouterr().err
    assert "exists but is not what was asked (names differ" in err and "--force" in err
    assert server_crt.read_bytes() == before

    assert run(tmp_path, "remote", "--namespace", "other", "--force") == 0
    assert "*.other.svc.cluster.local" in certs.load(server_crt, tmp_path / "out/remote/server.key").dns_names
    assert "replaced" in capsys.readouterr().out


def test_a_new_ca_reissues_what_it_signs(tmp_path: Path) -> None:
    assert run(tmp_path, "remote") == 0
    out = tmp_path / "out"
    old_ca = out.joinpath("ca.crt").read_bytes()
    assert run(tmp_path, "remote", "--new-ca") == 0
    ca = certs.load(out / "ca.crt", out / "ca.key")
    assert out.joinpath("ca.crt").read_bytes() != old_ca
    assert certs.signed_by(certs.load(out / "remote/server.crt", out / "remote/server.key").cert, ca.cert)


def test_a_half_present_ca_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path) == 0
    (tmp_path / "out/ca.key").unlink()
    assert run(tmp_path, "remote") == 1
    assert "ca.key does not" in capsys.readouterr().err
    assert not (tmp_path / "out/remote").exists()


def test_a_bad_name_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "good", "Not_A_Label") == 1
    assert "is not a DNS label" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_server_only_and_client_only(tmp_path: Path) -> None:
    assert run(tmp_path, "a", "--server-only") == 0
    assert run(tmp_path, "b", "--client-only") == 0
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "a").iterdir()) == ["server.crt", "server.key"]
    assert sorted(p.name for p in (out / "b").iterdir()) == ["client.crt", "client.key"]
