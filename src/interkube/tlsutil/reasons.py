"""Why a TLS handshake failed, in words an operator can act on.

OpenSSL reports a refusal as a reason code (``TLSV13_ALERT_CERTIFICATE_REQUIRED``) or, for a
certificate it rejected itself, a verification code and message. The functions here turn those
into one phrase for each side: the client (forward, reaching an upstream) and the server (the
DNS-over-TLS listener, refusing a client). The raw OpenSSL text stays at the end in parentheses,
so that nothing is hidden by the translation.
"""

from __future__ import annotations

import re
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded by whoever makes a TLS connection: a server without TLS never loads it (issue 18)
    import ssl

# X509_V_ERR_* codes (openssl/x509_vfy.h); the ssl module does not name them.
_EXPIRED = 10
_NOT_YET_VALID = 9
_UNTRUSTED = {2, 18, 19, 20, 21}  # no issuer / self-signed / unable to verify leaf
_INVALID_PURPOSE = 26
_NAME_MISMATCH = {62, 64}        # hostname, IP address

_ALERT_RE = re.compile(r"^(?:SSLV3|TLSV1|TLSV13)_ALERT_([A-Z_]+)$")

# What an alert *from the server* means to us, the client.
_SERVER_ALERTS = {
    "certificate_required": "the server requires a client certificate and we sent none",
    "handshake_failure": "the server refused the handshake: it may require a client certificate "
                         "that we did not send, or share no cipher or TLS version with us",
    "unknown_ca": "the server does not trust the CA that signed our client certificate",
    "certificate_expired": "the server says our client certificate has expired",
    "bad_certificate": "the server rejected our client certificate",
    "certificate_unknown": "the server rejected our client certificate",
    "unsupported_certificate": "the server rejected our client certificate (is it meant for "
                               "client authentication?)",
    "certificate_revoked": "the server says our client certificate was revoked",
    "access_denied": "the server denied access",
    "protocol_version": "the server supports no TLS version we accept (1.2 or newer)",
}

# What an alert *from the client* means to us, the server.
_CLIENT_ALERTS = {
    "unknown_ca": "the client does not trust the CA that signed our certificate",
    "bad_certificate": "the client rejected our certificate (a name it does not match?)",
    "certificate_unknown": "the client rejected our certificate (a name it does not match?)",
    "certificate_expired": "the client says our certificate has expired",
    "unsupported_certificate": "the client rejected our certificate (is it meant for servers?)",
    "protocol_version": "the client supports no TLS version we accept (1.2 or newer)",
    "handshake_failure": "the client aborted the handshake",
}

_NOT_TLS = {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST", "PACKET_LENGTH_TOO_LONG",
            "UNKNOWN_PROTOCOL", "RECORD_LENGTH_MISMATCH"}


def tls_errors() -> tuple[type[ssl.SSLError], ...]:
    """``(ssl.SSLError,)`` once the ssl module is loaded, else ``()``: for ``except`` and
    ``isinstance`` in code that TLS and plain connections share. A process that never loaded ssl
    has had no TLS connection to fail, and naming the class would load OpenSSL's libraries."""
    loaded = sys.modules.get("ssl")
    return (loaded.SSLError,) if loaded is not None else ()


def _verify_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """``exc`` when it is a certificate verification error."""
    loaded = sys.modules.get("ssl")
    return exc if loaded is not None and isinstance(exc, loaded.SSLCertVerificationError) else None


def alert_name(exc: BaseException) -> str | None:
    """The TLS alert an SSLError reports having received (``certificate_required``), if any."""
    reason = getattr(exc, "reason", None)
    if not isinstance(reason, str):
        return None
    m = _ALERT_RE.match(reason)
    return m.group(1).lower() if m else None


def _raw(exc: BaseException) -> str:
    verify = _verify_error(exc)
    if verify is not None and verify.verify_message:
        return str(verify.verify_message)
    text = str(exc)
    # "[SSL: REASON] reason text (_ssl.c:1234)": keep the words, drop the C source position.
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text) or type(exc).__name__


def _verification(exc: ssl.SSLCertVerificationError, whose: str, name: str | None) -> str:
    code = exc.verify_code
    if code == _EXPIRED:
        what = f"{whose} certificate has expired"
    elif code == _NOT_YET_VALID:
        what = f"{whose} certificate is not valid yet (a clock out of step?)"
    elif code in _UNTRUSTED:
        what = f"{whose} certificate is not signed by a CA we trust"
    elif code in _NAME_MISMATCH:
        what = f"{whose} certificate is not valid for the name we verify" + (f" ({name})" if name else "")
    elif code == _INVALID_PURPOSE:
        what = f"{whose} certificate is not meant for this use (extended key usage)"
    else:
        what = f"{whose} certificate was rejected"
    return f"{what} ({_raw(exc)})"


def client_side(exc: BaseException, server_name: str | None = None) -> str:
    """Why an upstream's TLS connection failed, as its client (forward) sees it."""
    verify = _verify_error(exc)
    if verify is not None:
        return _verification(verify, "the server's", server_name)
    alert = alert_name(exc)
    if alert is not None:
        meaning = _SERVER_ALERTS.get(alert, "the server aborted the connection")
        return f"{meaning} (TLS alert {alert})"
    reason = getattr(exc, "reason", None)
    if reason in _NOT_TLS:
        return f"the upstream does not speak TLS on this port ({_raw(exc)})"
    if reason == "UNSUPPORTED_PROTOCOL":
        return f"no TLS version in common (we require 1.2 or newer) ({_raw(exc)})"
    if reason == "UNEXPECTED_EOF_WHILE_READING":
        return "the upstream closed the connection during the TLS handshake"
    return f"TLS failed ({_raw(exc)})"


def server_side(exc: BaseException) -> str:
    """Why a client's TLS handshake was refused, as the DNS-over-TLS server sees it."""
    verify = _verify_error(exc)
    if verify is not None:
        return _verification(verify, "the client's", None)
    reason = getattr(exc, "reason", None)
    if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return "the client sent no certificate and client_auth requires one"
    alert = alert_name(exc)
    if alert is not None:
        meaning = _CLIENT_ALERTS.get(alert, "the client aborted the handshake")
        return f"{meaning} (TLS alert {alert})"
    if reason in _NOT_TLS:
        return "not a TLS client (plain DNS or HTTP sent to the TLS port?)"
    if reason == "UNSUPPORTED_PROTOCOL":
        return "the client offers only TLS versions older than 1.2"
    if reason == "NO_SHARED_CIPHER":
        return "no cipher suite in common with the client"
    return f"TLS handshake failed ({_raw(exc)})"


class OncePer:
    """Lets one log line per key through per ``period`` seconds and counts the rest.

    A scanner, or a misconfigured peer retrying, must not flood the log with the same refusal.
    """

    def __init__(self, period: float = 60.0) -> None:
        self.period = period
        self._last: dict[object, float] = {}
        self._held: dict[object, int] = {}

    def allow(self, key: object) -> int | None:
        """None to stay quiet; else how many were held back since the last line for ``key``."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        if len(self._last) > 1024:  # bounded memory whatever the keys
            self._last.clear()
            self._held.clear()
        self._last[key] = now
        return self._held.pop(key, 0)
