"""Server SSL contexts for DNS over TLS, with CoreDNS's client_auth modes and live reloads.

``client_auth`` takes the five values of CoreDNS's *tls* plugin, which are Go's ClientAuthType:

=================== ============================ ====================================
mode                asks for a certificate       a certificate given is
=================== ============================ ====================================
nocert              no                           ignored
request             yes, optional                accepted unverified
require             yes, mandatory               accepted unverified
verify_if_given     yes, optional                verified against CA
require_and_verify  yes, mandatory               verified against CA
=================== ============================ ====================================

Python's ssl module has the last two (CERT_OPTIONAL, CERT_REQUIRED) but no way to ask for a
certificate without verifying it. ``request`` and ``require`` therefore install OpenSSL's verify
callback through ctypes (:func:`accept_any_certificate`), after checking that the ctypes view of
the context agrees with Python's.

:class:`ServerTls` holds two contexts. The *front* one is what the listener hands each new
connection; its server-name callback (called for every ClientHello, with or without SNI) moves
the connection to the *current* one, which holds the certificate, key and CA store. A reload
builds a new current context and swaps it in: new handshakes get the new certificate and CA
store (a removed CA stops being trusted, which adding to one long-lived context could not do),
and established connections keep the session they have.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLIENT_AUTH_MODES = ("nocert", "request", "require", "verify_if_given", "require_and_verify")
#: The modes that ask for a client certificate without verifying it.
UNVERIFIED_MODES = ("request", "require")
_VERIFY_MODE = {
    "nocert": ssl.CERT_NONE,
    "request": ssl.CERT_OPTIONAL,
    "require": ssl.CERT_REQUIRED,
    "verify_if_given": ssl.CERT_OPTIONAL,
    "require_and_verify": ssl.CERT_REQUIRED,
}
#: ALPN id of DNS over TLS (RFC 7858, IANA "dot"); offered, never required.
ALPN = ["dot"]


class TlsSetupError(Exception):
    """A server context could not be built (unreadable file, key not matching, bad mode)."""


# --- accepting any client certificate (request, require) ----------------------------------------

_VerifyCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


def _accept_any(preverify_ok: int, store_ctx: int) -> int:
    # Go's RequestClientCert / RequireAnyClientCert: whatever the certificate, it is accepted.
    return 1


_accept = _VerifyCallback(_accept_any)  # a call: as a decorator, mypy cannot type through CFUNCTYPE


_libssl: Any = None


def _ssl_ctx_pointer(ctx: ssl.SSLContext) -> int:
    # CPython's PySSLContext starts with the object header, then `SSL_CTX *ctx`.
    return ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value or 0


def _load_libssl() -> Any:
    """libssl as the ssl module links it, checked against a throwaway context; None if unusable."""
    global _libssl
    if _libssl is not None:
        return _libssl or None
    _libssl = False
    if sys.implementation.name != "cpython":
        return None
    try:
        import _ssl

        lib = ctypes.CDLL(_ssl.__file__)  # resolves libssl's symbols through the module's links
        lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
        lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VerifyCallback]
        lib.SSL_CTX_set_verify.restype = None
        lib.SSL_CTX_get_verify_callback.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_get_verify_callback.restype = ctypes.c_void_p
        lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        lib.SSL_CTX_ctrl.restype = ctypes.c_long
    except (OSError, AttributeError, ImportError):
        return None
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ptr = _ssl_ctx_pointer(probe)
    if not ptr:
        return None
    for mode, bits in ((ssl.CERT_REQUIRED, 3), (ssl.CERT_OPTIONAL, 1), (ssl.CERT_NONE, 0)):
        probe.verify_mode = mode
        if lib.SSL_CTX_get_verify_mode(ptr) != bits:
            return None
    _libssl = lib
    return lib


def accept_any_certificate(ctx: ssl.SSLContext) -> None:
    """Make ``ctx`` accept any client certificate it asks for (its verify_mode says whether it asks
    and whether one is mandatory). Python keeps the callback when verify_mode changes later."""
    lib = _load_libssl()
    if lib is None:
        raise TlsSetupError("client_auth request/require need OpenSSL's verify callback, which this "
                            "Python does not let interkube set; use verify_if_given or require_and_verify")
    lib.SSL_CTX_set_verify(_ssl_ctx_pointer(ctx), lib.SSL_CTX_get_verify_mode(_ssl_ctx_pointer(ctx)), _accept)


_SSL_CTRL_SET_SESS_CACHE_MODE = 44
_SSL_SESS_CACHE_OFF = 0


def disable_session_cache(ctx: ssl.SSLContext) -> bool:
    """Turn off TLS 1.2 session-ID resumption on a server context (best effort; False if not).

    A resumed session skips the client certificate check. The ssl module can turn off tickets
    but not the server's session cache, hence OpenSSL's SSL_CTX_set_session_cache_mode here.
    """
    lib = _load_libssl()
    if lib is None:
        return False
    lib.SSL_CTX_ctrl(_ssl_ctx_pointer(ctx), _SSL_CTRL_SET_SESS_CACHE_MODE, _SSL_SESS_CACHE_OFF, None)
    return True


# --- building contexts -------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerFiles:
    cert: str
    key: str
    ca: str | None = None

    def paths(self) -> tuple[str, ...]:
        return (self.cert, self.key) + ((self.ca,) if self.ca else ())


def _base(client_auth: str, alpn: Sequence[str] = ALPN) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = _VERIFY_MODE[client_auth]
    ctx.set_alpn_protocols(list(alpn))
    # No resumption: a resumed session skips the client certificate check, so a client whose
    # CA was removed could come back on an old session. DoT connections are long-lived, so
    # resumption saves little.
    ctx.options |= ssl.OP_NO_TICKET
    ctx.num_tickets = 0
    disable_session_cache(ctx)
    return ctx


def build_current(files: ServerFiles, client_auth: str, keylog: str | None = None,
                  alpn: Sequence[str] = ALPN) -> ssl.SSLContext:
    """The context holding the certificate, key and CA store (what a handshake actually uses).
    ``alpn``: the protocols offered (DNS over TLS by default; the admission webhook's HTTPS
    offers http/1.1)."""
    if client_auth not in _VERIFY_MODE:
        raise TlsSetupError(f"unknown client_auth {client_auth!r} (expected {', '.join(CLIENT_AUTH_MODES)})")
    for path in files.paths():
        # OpenSSL's errors do not say which file is missing or unreadable; this does.
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise TlsSetupError(f"cannot read {path}: {exc.strerror or exc}") from None
    ctx = _base(client_auth, alpn)
    try:
        ctx.load_cert_chain(files.cert, files.key)
    except ssl.SSLError as exc:
        raise TlsSetupError(_describe_chain_error(exc, files)) from None
    except OSError as exc:
        raise TlsSetupError(f"cannot read {files.cert} / {files.key}: {exc.strerror or exc}") from None
    try:
        if files.ca:
            ctx.load_verify_locations(cafile=files.ca)
        elif client_auth in ("verify_if_given", "require_and_verify"):
            # As CoreDNS: without a CA, client certificates are checked against the system's CAs.
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    except ssl.SSLError as exc:
        raise TlsSetupError(f"{files.ca or 'system CAs'}: no usable CA certificate ({exc.reason or exc})") from None
    except OSError as exc:
        raise TlsSetupError(f"cannot read {files.ca or 'system CAs'}: {exc.strerror or exc}") from None
    if keylog:
        ctx.keylog_filename = keylog
    return ctx


def _describe_chain_error(exc: ssl.SSLError, files: ServerFiles) -> str:
    if exc.reason == "KEY_VALUES_MISMATCH":
        return f"{files.key} is not the key of the certificate in {files.cert}"
    if exc.reason in ("NO_START_LINE", "PEM_LIB", "BAD_END_LINE", "BAD_BASE64_DECODE"):
        return f"{files.cert} / {files.key}: not a PEM certificate and key ({exc.reason})"
    return f"{files.cert} / {files.key}: {exc.reason or exc}"


def describe_certificate(path: str) -> str:
    """``CN=dns.remote, names dns.remote,..., expires 2027-01-01`` (for the log), or '' if unreadable."""
    # Here, not at the top: cryptography's x509 (14 MiB of RSS) loads only where a certificate
    # is described, not in every server whose forward may speak TLS.
    from cryptography import x509

    from interkube.tlsutil.certs import sans

    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError):
        return ""
    dns_names, ips = sans(cert)
    subject = cert.subject.rfc4514_string() or "(empty subject)"
    names = ", ".join(dns_names + ips)
    return (f"{subject}" + (f", names {names}" if names else "")
            + f", expires {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")


def digest_files(paths: tuple[str, ...]) -> str:
    """A digest of the files' contents (a missing or unreadable file counts as its own state)."""
    h = hashlib.sha256()
    for p in paths:
        try:
            data = Path(p).read_bytes()
        except OSError as exc:
            data = f"<{type(exc).__name__}>".encode()
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


class ServerTls:
    """One `tls CERT KEY [CA]` configuration: the context a listener holds, reloadable in place.

    ``context`` (the front) never changes; :meth:`reload` swaps what it hands handshakes to.
    """

    def __init__(self, files: ServerFiles, client_auth: str = "nocert", keylog: str | None = None,
                 label: str = "tls", log: logging.Logger | None = None, alpn: Sequence[str] = ALPN) -> None:
        self.files = files
        self.client_auth = client_auth
        self.keylog = keylog
        self.label = label
        self.log = log or logging.getLogger("interkube.plugin.tls")
        # The digest first: should a file change while the context is built, the next check
        # sees a digest that differs from this one and builds again.
        self.digest = digest_files(files.paths())
        self.alpn = tuple(alpn)
        self.current = build_current(files, client_auth, keylog, self.alpn)
        self.generation = 1
        self.context = _base(client_auth, self.alpn)
        if client_auth in UNVERIFIED_MODES:
            accept_any_certificate(self.context)
        self.context.sni_callback = self._hand_over

    def _hand_over(self, sslobj: Any, server_name: str | None, front: ssl.SSLContext) -> None:
        # The verify mode and verify callback stay the front's (OpenSSL copied them when the
        # connection was created); certificate, key and trusted CAs come from here.
        sslobj.context = self.current

    def check(self) -> bool:
        """Re-read the files if their contents changed; True when a new certificate is in use.

        A file that cannot be read, or a key that does not match its certificate, keeps the
        previous certificate in service; the problem is logged once per distinct state of the
        files (a half-finished rotation logs once, and the finished one then loads).
        """
        digest = digest_files(self.files.paths())
        if digest == self.digest:
            return False
        self.digest = digest
        try:
            ctx = build_current(self.files, self.client_auth, self.keylog, self.alpn)
        except TlsSetupError as exc:
            self.log.warning("%s: keeping the previous certificate: %s", self.label, exc)
            return False
        self.current = ctx
        self.generation += 1
        self.log.info("%s: loaded %s", self.label, describe_certificate(self.files.cert) or self.files.cert)
        return True
