"""Forwarded DNS between clusters over DNS over TLS, as docs/tls.md writes it, with real processes:
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from interkube.pkg.framing import FrameReader, frame
from testkit.dig import dig, needs_dig
from testkit.forwarded import PODS, REMOTE, SRV_NAME, remote_cluster_dns
from testkit.servers import LOOPBACK, free_port, interkube_process, process_output, stop_process, wait_listening
from testkit.waiting import wait_until


@dataclass
class ForwardedOverTls:
    """The two clusters' interkubes: the remote one's DoT endpoint and the local forwarder."""

    certs: Path
    dot_port: int
    local_port: int
    remote: subprocess.Popen[bytes]
    local: subprocess.Popen[bytes]


@pytest.fixture
def over_tls(tmp_path: Path) -> Iterator[ForwardedOverTls]:
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
    with remote_cluster_dns(dns_port), \
            interkube_process(remote_core, dot_port, wait=False) as remote:
        wait_listening(dot_port, timeout=20, proc=remote)
        with interkube_process(local_core, local_port) as local:
            yield ForwardedOverTls(pki, dot_port, local_port, remote, local)


@needs_dig
def test_forwarded_dns_over_mutual_tls(over_tls: ForwardedOverTls) -> None:
    out = dig(over_tls.local_port, "+noall", "+answer", "+additional", "SRV", SRV_NAME, wait=8, check=False)
    assert len(re.findall(r"\sIN\s+SRV\s+0\s+33\s+11210\s", out)) == 3, out
    assert sorted(re.findall(r"\sIN\s+A\s+(10\.1\.\S+)", out)) == sorted(PODS.values())
    assert "refused" not in process_output(over_tls.local) + process_output(over_tls.remote)


def kdig(clusters: ForwardedOverTls, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kdig", f"@{LOOPBACK}", "-p", str(clusters.dot_port), "+tls",
                           f"+tls-ca={clusters.certs}/ca.crt", "+tls-hostname=dns.remote", "+timeout=5",
                           "+retry=0", *extra, "SRV", SRV_NAME],
                          capture_output=True, text=True, timeout=60)


def test_kdig_interoperates(over_tls: ForwardedOverTls) -> None:
    if shutil.which("kdig") is None:
        pytest.skip("kdig is not installed (Debian package knot-dnsutils)")
    ok = kdig(over_tls, f"+tls-certfile={over_tls.certs}/local/client.crt",
              f"+tls-keyfile={over_tls.certs}/local/client.key")
    assert "TLS session (TLS1.3)" in ok.stdout and "status: NOERROR" in ok.stdout, ok.stdout + ok.stderr
    assert len(re.findall(r"\sIN\s+SRV\s+0\s+33\s+11210\s", ok.stdout)) == 3

    refused = kdig(over_tls)  # no client certificate
    assert "status: NOERROR" not in refused.stdout
    assert "TLS fatal alert" in refused.stdout + refused.stderr  # the alert reached kdig
    # (the server logs the refusal once its alert is sent: kdig may be done before the line is)
    wait_until(lambda: "refused 127.0.0.1" in process_output(over_tls.remote),
               "the remote server logs the refused handshake")
    assert "the client sent no certificate and client_auth requires one" in process_output(over_tls.remote)


def s_client(clusters: ForwardedOverTls, query: bytes, *extra: str) -> tuple[bytes, str]:
    """Send one framed query through ``openssl s_client``; the answer (b"" when the server closed
    the connection without one) and s_client's stderr.

    s_client is stopped (by its PID) once the answer is in, rather than waiting for the server's
    idle timeout to close the connection.
    """
    proc = subprocess.Popen(["openssl", "s_client", "-quiet", "-connect", f"{LOOPBACK}:{clusters.dot_port}",
                             "-CAfile", f"{clusters.certs}/ca.crt", "-verify_hostname", "dns.remote",
                             "-verify_return_error", "-ign_eof", *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(query)
        proc.stdin.close()
        fd = proc.stdout.fileno()
        reader = FrameReader()

        def answered_or_closed() -> tuple[bytes] | None:
            """(the first whole answer,), or (b"",) once the connection closed without one."""
            if not select.select([fd], [], [], 0)[0]:
                return None
            chunk = os.read(fd, 65536)
            reader.feed(chunk)
            whole = reader.take(1)
            return (whole[0] if whole else b"",) if whole or not chunk else None

        (answer,) = wait_until(answered_or_closed, "an answer from s_client, or the connection closed", 20)
        assert proc.stderr is not None
    finally:
        stop_process(proc)  # type: ignore[arg-type]
    with proc.stdout, proc.stderr:
        return answer, proc.stderr.read().decode(errors="replace")


def test_openssl_s_client_interoperates(over_tls: ForwardedOverTls) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    wire = dns.message.make_query(SRV_NAME, "SRV", id=4242).to_wire()
    answer, err = s_client(over_tls, frame(wire), "-cert", f"{over_tls.certs}/local/client.crt",
                           "-key", f"{over_tls.certs}/local/client.key")
    assert answer, err
    resp = dns.message.from_wire(answer)
    assert resp.id == 4242 and len(resp.answer[0]) == 3

    answer, err = s_client(over_tls, frame(wire))  # no client certificate
    assert answer == b""
    assert "alert certificate required" in err


def test_the_server_certificate_names(over_tls: ForwardedOverTls) -> None:
    """The server certificate names dns.remote; a client verifying another name refuses it."""
    ctx = ssl.create_default_context(cafile=f"{over_tls.certs}/ca.crt")
    ctx.load_cert_chain(f"{over_tls.certs}/local/client.crt", f"{over_tls.certs}/local/client.key")
    with socket.create_connection((LOOPBACK, over_tls.dot_port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            ctx.wrap_socket(raw, server_hostname="dns.local")
    with socket.create_connection((LOOPBACK, over_tls.dot_port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=f"db.{REMOTE}") as tls:  # the zone wildcard
        assert tls.version() in ("TLSv1.3", "TLSv1.2")


def test_a_forwarder_without_client_certificate_says_why(over_tls: ForwardedOverTls, tmp_path: Path) -> None:
    """The same refusal through `interkube serve` (uvloop), as an operator would read it."""
    port = free_port()
    core = tmp_path / "nocert.Corefile"
    core.write_text(f"{REMOTE}:{port} {{\n    bind {LOOPBACK}\n    errors\n"
                    f"    forward . tls://{LOOPBACK}:{over_tls.dot_port}%dns.remote {{\n"
                    f"        tls {over_tls.certs}/ca.crt\n    }}\n}}\n")
    with interkube_process(core, port) as proc:
        resp = dns.query.udp(dns.message.make_query(SRV_NAME, "SRV"), LOOPBACK, port=port, timeout=10)
        assert resp.rcode() == dns.rcode.SERVFAIL
        out = process_output(proc)
    reason = "the server requires a client certificate and we sent none (TLS alert certificate_required)"
    assert f"[WARNING] plugin/forward: tls://{LOOPBACK}:{over_tls.dot_port} refused the TLS connection: {reason}" in out
    assert f"[ERROR] plugin/errors: 2 {SRV_NAME}. SRV: tls://{LOOPBACK}:{over_tls.dot_port}: {reason}" in out
