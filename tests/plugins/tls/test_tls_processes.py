"""Seed 000 with DNS over TLS between the clusters, as docs/tls.md writes it, with real processes:
`interkube certs` makes the PKI, one `interkube serve` plays the remote cluster's DoT endpoint
(mutual TLS required) in front of dnsmasq, another the local forwarder; dig, kdig and
openssl s_client talk to them."""

from __future__ import annotations

import os
import re
import select
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from testkit.servers import LOOPBACK, dnsmasq, free_port, interkube_process, process_output, stop_process

REMOTE = "remote.svc.cluster.local"
PODS = {"10-1-17-231": "10.1.17.231", "10-1-46-20": "10.1.46.20", "10-1-68-212": "10.1.68.212"}
SRV_NAME = f"_couchbase._tcp.cb-example-srv.{REMOTE}"


@dataclass
class Seed000:
    certs: Path
    dot_port: int
    local_port: int
    remote: subprocess.Popen[bytes]
    local: subprocess.Popen[bytes]


def wait_for_tls(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Block until something accepts a TCP connection on ``port`` (the DoT listener is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"interkube exited early:\n{process_output(proc)}")
        try:
            socket.create_connection((LOOPBACK, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {port}:\n{process_output(proc)}")


@pytest.fixture
def seed000(tmp_path: Path) -> Iterator[Seed000]:
    pki = tmp_path / "certs"
    made = subprocess.run([sys.executable, "-m", "interkube", "certs", "--dir", str(pki), "local", "remote",
                           "--namespace", "remote"], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    dns_port, dot_port, local_port = free_port(), free_port(), free_port()
    remote_core = tmp_path / "remote.Corefile"
    remote_core.write_text(f"""\
tls://{REMOTE}:{dot_port} {{
    bind {LOOPBACK}
    tls {pki}/remote/server.crt {pki}/remote/server.key {pki}/ca.crt {{
        client_auth require_and_verify
    }}
    errors
    forward . {LOOPBACK}:{dns_port}
}}
""")
    local_core = tmp_path / "local.Corefile"
    local_core.write_text(f"""\
{REMOTE}:{local_port} {{
    bind {LOOPBACK}
    errors
    forward . tls://{LOOPBACK}:{dot_port}%dns.remote {{
        tls {pki}/local/client.crt {pki}/local/client.key {pki}/ca.crt
    }}
}}
""")
    srv = tuple(f"{SRV_NAME},{pod}.cb-example-srv.{REMOTE},11210,0,33" for pod in PODS)
    records = {f"{pod}.cb-example-srv.{REMOTE}": [ip] for pod, ip in PODS.items()}
    with dnsmasq(dns_port, records, srv=srv), \
            interkube_process(remote_core, dot_port, wait=False) as remote:
        wait_for_tls(dot_port, remote)
        with interkube_process(local_core, local_port) as local:
            yield Seed000(pki, dot_port, local_port, remote, local)


def test_seed_000_over_mutual_tls(seed000: Seed000) -> None:
    if shutil.which("dig") is None:
        pytest.skip("dig is not installed (Debian package dnsutils)")
    out = subprocess.run(["dig", f"@{LOOPBACK}", "-p", str(seed000.local_port), "+tries=1", "+time=8",
                          "+noall", "+answer", "+additional", "SRV", SRV_NAME],
                         capture_output=True, text=True, timeout=30).stdout
    assert len(re.findall(r"\sIN\s+SRV\s+0\s+33\s+11210\s", out)) == 3, out
    assert sorted(re.findall(r"\sIN\s+A\s+(10\.1\.\S+)", out)) == sorted(PODS.values())
    assert "refused" not in process_output(seed000.local) + process_output(seed000.remote)


def kdig(seed: Seed000, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kdig", f"@{LOOPBACK}", "-p", str(seed.dot_port), "+tls",
                           f"+tls-ca={seed.certs}/ca.crt", "+tls-hostname=dns.remote", "+timeout=5",
                           "+retry=0", *extra, "SRV", SRV_NAME],
                          capture_output=True, text=True, timeout=60)


def test_kdig_interoperates(seed000: Seed000) -> None:
    if shutil.which("kdig") is None:
        pytest.skip("kdig is not installed (Debian package knot-dnsutils)")
    ok = kdig(seed000, f"+tls-certfile={seed000.certs}/local/client.crt",
              f"+tls-keyfile={seed000.certs}/local/client.key")
    assert "TLS session (TLS1.3)" in ok.stdout and "status: NOERROR" in ok.stdout, ok.stdout + ok.stderr
    assert len(re.findall(r"\sIN\s+SRV\s+0\s+33\s+11210\s", ok.stdout)) == 3

    refused = kdig(seed000)  # no client certificate
    assert "status: NOERROR" not in refused.stdout
    assert "TLS fatal alert" in refused.stdout + refused.stderr  # the alert reached kdig
    assert "refused 127.0.0.1" in process_output(seed000.remote)
    assert "the client sent no certificate and client_auth requires one" in process_output(seed000.remote)


def s_client(seed: Seed000, query: bytes, *extra: str) -> tuple[bytes, str]:
    """Send one framed query through ``openssl s_client``; the framed answer (or b"") and stderr.

    s_client is stopped (by its PID) once the answer is in, rather than waiting for the server's
    idle timeout to close the connection.
    """
    proc = subprocess.Popen(["openssl", "s_client", "-quiet", "-connect", f"{LOOPBACK}:{seed.dot_port}",
                             "-CAfile", f"{seed.certs}/ca.crt", "-verify_hostname", "dns.remote",
                             "-verify_return_error", "-ign_eof", *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(query)
        proc.stdin.close()
        data = b""
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break  # the server closed the connection
                data += chunk
                if len(data) >= 2 and len(data) >= 2 + int.from_bytes(data[:2], "big"):
                    break
        assert proc.stderr is not None
    finally:
        stop_process(proc)  # type: ignore[arg-type]
    with proc.stdout, proc.stderr:
        return data, proc.stderr.read().decode(errors="replace")


def test_openssl_s_client_interoperates(seed000: Seed000) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    wire = dns.message.make_query(SRV_NAME, "SRV", id=4242).to_wire()
    framed = len(wire).to_bytes(2, "big") + wire
    data, err = s_client(seed000, framed, "-cert", f"{seed000.certs}/local/client.crt",
                         "-key", f"{seed000.certs}/local/client.key")
    assert len(data) >= 2, err
    resp = dns.message.from_wire(data[2:2 + int.from_bytes(data[:2], "big")])
    assert resp.id == 4242 and len(resp.answer[0]) == 3

    data, err = s_client(seed000, framed)  # no client certificate
    assert data == b""
    assert "alert certificate required" in err


def test_the_server_certificate_names(seed000: Seed000) -> None:
    """The server certificate names dns.remote; a client verifying another name refuses it."""
    ctx = ssl.create_default_context(cafile=f"{seed000.certs}/ca.crt")
    ctx.load_cert_chain(f"{seed000.certs}/local/client.crt", f"{seed000.certs}/local/client.key")
    with socket.create_connection((LOOPBACK, seed000.dot_port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            ctx.wrap_socket(raw, server_hostname="dns.local")
    with socket.create_connection((LOOPBACK, seed000.dot_port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=f"db.{REMOTE}") as tls:  # the zone wildcard
        assert tls.version() in ("TLSv1.3", "TLSv1.2")


def test_a_forwarder_without_client_certificate_says_why(seed000: Seed000, tmp_path: Path) -> None:
    """The same refusal through `interkube serve` (uvloop), as an operator would read it."""
    port = free_port()
    core = tmp_path / "nocert.Corefile"
    core.write_text(f"{REMOTE}:{port} {{\n    bind {LOOPBACK}\n    errors\n"
                    f"    forward . tls://{LOOPBACK}:{seed000.dot_port}%dns.remote {{\n"
                    f"        tls {seed000.certs}/ca.crt\n    }}\n}}\n")
    with interkube_process(core, port) as proc:
        resp = dns.query.udp(dns.message.make_query(SRV_NAME, "SRV"), LOOPBACK, port=port, timeout=10)
        assert resp.rcode() == dns.rcode.SERVFAIL
        out = process_output(proc)
    reason = "the server requires a client certificate and we sent none (TLS alert certificate_required)"
    assert f"[WARNING] plugin/forward: tls://{LOOPBACK}:{seed000.dot_port} refused the TLS connection: {reason}" in out
    assert f"[ERROR] plugin/errors: 2 {SRV_NAME}. SRV: tls://{LOOPBACK}:{seed000.dot_port}: {reason}" in out
