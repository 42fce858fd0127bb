"""tls: parsing (pure) and setup (files read once, mistakes reported at file:line)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from interkube.corefile.parser import Directive, parse_text
from interkube.errors import ConfigError
from interkube.plugin.services import Services
from interkube.plugins.tls.parse import parse
from interkube.server.runtime import build
from interkube.tlsutil.contexts import ServerTls
from testkit.corefile import directive
from testkit.dot import LOOPBACK, Pki, peer_serial
from testkit.servers import free_port, in_process


def tls_directive(text: str) -> Directive:
    return directive(text, key="tls://.:853")


def test_parse_every_option() -> None:
    cfg = parse(tls_directive("tls cert.pem key.pem ca.pem {\n client_auth verify_if_given\n keylog /tmp/keys\n}"))
    assert (cfg.cert, cfg.key, cfg.ca, cfg.client_auth, cfg.keylog) == (
        "cert.pem", "key.pem", "ca.pem", "verify_if_given", "/tmp/keys")


def test_default_is_nocert_even_with_a_ca() -> None:
    # CoreDNS: "The default is nocert"; the CA only matters for the verifying modes.
    assert parse(tls_directive("tls cert.pem key.pem ca.pem")).client_auth == "nocert"
    assert parse(tls_directive("tls cert.pem key.pem")).ca is None


@pytest.mark.parametrize(("text", "message"), [
    ("tls cert.pem", "2 to 3 arguments"),
    ("tls a b c d", "2 to 3 arguments"),
    ("tls c k {\n client_auth sometimes\n}", "unknown mode 'sometimes'"),
    ("tls c k {\n client_auth\n}", "exactly 1 argument"),
    ("tls c k {\n ciphers AES\n}", "unknown option 'ciphers'"),
])
def test_parse_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse(tls_directive(text))
    assert info.value.file == "Corefile" and info.value.line >= 2


def _build(text: str) -> object:
    return build(parse_text(text), "Corefile", Services())


def test_setup_reads_the_files_and_gives_the_block_its_context(pki: Pki) -> None:
    built = _build(f"tls://.:8853 {{\n bind 127.0.0.1\n tls {pki.crt('server')} {pki.key('server')} "
                   f"{pki.crt('ca')} {{\n  client_auth require_and_verify\n }}\n}}\n")
    (server_tls,) = built.tls.values()  # type: ignore[attr-defined]
    assert isinstance(server_tls, ServerTls)
    front = server_tls.context
    assert front.minimum_version == ssl.TLSVersion.TLSv1_2
    assert front.verify_mode == ssl.CERT_REQUIRED
    assert server_tls.current.cert_store_stats()["x509_ca"] == 1


@pytest.mark.parametrize(("files", "message"), [
    (("nope.crt", "server.key", None), r"Corefile:3: tls: cannot read .*nope\.crt"),
    (("server.crt", "client.key", None), r"Corefile:3: tls: .*client\.key is not the key of the certificate"),
    (("server.crt", "server.key", "nope.crt"), r"Corefile:3: tls: cannot read .*nope\.crt"),
    (("server.crt", "server.key", "server.key"), r"Corefile:3: tls: .*no usable CA certificate"),
])
def test_setup_errors_name_the_line(pki: Pki, files: tuple[str, str, str | None], message: str) -> None:
    cert, key, ca = (str(pki.dir / f) if f else "" for f in files)
    with pytest.raises(ConfigError, match=message):
        _build(f"tls://.:8853 {{\n bind 127.0.0.1\n tls {cert} {key} {ca}\n}}\n")


def test_a_tls_block_needs_the_tls_directive() -> None:
    with pytest.raises(ConfigError, match=r"Corefile:1: a tls:// server block needs a `tls CERT KEY"):
        _build("tls://.:8853 {\n bind 127.0.0.1\n}\n")


def test_tls_concerns_only_the_tls_keys_of_a_block(pki: Pki) -> None:
    built = _build(f"dns://.:8053 tls://.:8853 {{\n bind 127.0.0.1\n tls {pki.crt('server')} {pki.key('server')}\n}}\n")
    assert [lkey for lkey in built.tls] == [("tls", "127.0.0.1", 8853)]  # type: ignore[attr-defined]
    assert sorted(built.chains) == [("dns", "127.0.0.1", 8053), ("tls", "127.0.0.1", 8853)]  # type: ignore[attr-defined]


def test_tls_is_not_on_the_query_path(pki: Pki) -> None:
    built = _build(f"tls://.:8853 {{\n bind 127.0.0.1\n tls {pki.crt('server')} {pki.key('server')}\n"
                   f" errors\n}}\n")
    # A config-only plugin: errors heads the chain, tls only keeps the certificate current.
    assert [h.plugin for h in built.handlers] == ["errors"]  # type: ignore[attr-defined]
    assert [hooks.plugin for hooks in built.hooks] == ["tls", "errors"]  # type: ignore[attr-defined]


async def test_keylog_writes_session_secrets(pki: Pki, tmp_path: Path) -> None:
    keylog = tmp_path / "keys.log"
    port = free_port()
    corefile = (f"tls://.:{port} {{\n bind {LOOPBACK}\n tls {pki.crt('server')} {pki.key('server')} {{\n"
                f"  keylog {keylog}\n }}\n}}\n")
    async with in_process(corefile):
        await peer_serial(port, pki.client_context(None))
    # NSS key log lines for TLS 1.3: the secrets Wireshark needs, tagged with the client random.
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in keylog.read_text()
