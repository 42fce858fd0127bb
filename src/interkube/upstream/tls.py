"""TLS client contexts for upstreams (forward `tls`, merge fan-out), re-read when their files change."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from interkube.pkg.ticker import Ticker
from interkube.tlsutil.contexts import describe_certificate, digest_files
from interkube.tlsutil.watch import follower

if TYPE_CHECKING:
    from interkube.upstream.upstream import Upstream


def client_context(cert: str | None = None, key: str | None = None, ca: str | None = None) -> ssl.SSLContext:
    """A verifying client context, TLS 1.2 or newer, as CoreDNS's `tls [CERT KEY] [CA]`.

    Without CA the system's trust store verifies the server; with CERT and KEY the client
    presents a certificate (mutual TLS).
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert or key:
        if not (cert and key):
            raise ValueError("a client certificate needs both CERT and KEY")
        ctx.load_cert_chain(cert, key)
    return ctx


def describe_load_error(exc: BaseException, cert: str | None, key: str | None, ca: str | None) -> str:
    """Why :func:`client_context` failed, naming the file concerned."""
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "KEY_VALUES_MISMATCH":
            return f"{key} is not the key of the certificate in {cert}"
        return f"{' / '.join(p for p in (cert, key, ca) if p)}: {exc.reason or exc}"
    if isinstance(exc, OSError):
        return f"cannot read {exc.filename or ' / '.join(p for p in (cert, key, ca) if p)}: {exc.strerror or exc}"
    return str(exc)


class ClientTls:
    """A client context from files, rebuilt when their contents change.

    cert-manager renews a client certificate as it renews a server's; each rebuilt context is
    handed to ``on_change`` callbacks (forward points its TLS upstreams at it, so new connections
    present the new certificate while open ones carry on). A rebuild that fails (a key not
    matching its certificate mid-rotation, a file gone) keeps the previous context and is
    logged once per state of the files.
    """

    def __init__(self, cert: str | None, key: str | None, ca: str | None, *, label: str = "tls",
                 log: logging.Logger | None = None) -> None:
        self.cert, self.key, self.ca = cert, key, ca
        self.label = label
        self.log = log or logging.getLogger("interkube.upstream")
        self.paths = tuple(p for p in (cert, key, ca) if p)
        self.digest = digest_files(self.paths)  # before building: a change meanwhile is seen next time
        self.context = client_context(cert, key, ca)
        self.on_change: list[Callable[[ssl.SSLContext], None]] = []

    def check(self) -> bool:
        """Re-read the files if they changed; True when a new context is in use."""
        if not self.paths:
            return False
        digest = digest_files(self.paths)
        if digest == self.digest:
            return False
        self.digest = digest
        try:
            ctx = client_context(self.cert, self.key, self.ca)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            self.log.warning("%s: keeping the previous client TLS settings: %s", self.label,
                             describe_load_error(exc, self.cert, self.key, self.ca))
            return False
        self.context = ctx
        for callback in self.on_change:
            callback(ctx)
        what = describe_certificate(self.cert) if self.cert else ""
        self.log.info("%s: reloaded client TLS settings%s", self.label, f" ({what})" if what else "")
        return True


def follow_rotation(tls: ClientTls, upstreams: Sequence[Upstream]) -> Ticker | None:
    """A ticker (for the plugin to start and stop) that re-reads ``tls``'s files and points
    the TLS upstreams among ``upstreams`` at each rebuilt context; None when there is nothing
    to re-read. Shared by forward and the merge fan-out."""
    return follow_rotations([(tls, [up for up in upstreams if up.is_tls])])


def follow_rotations(pairs: Sequence[tuple[ClientTls, Sequence[Upstream]]]) -> Ticker | None:
    """One ticker for several client settings, each followed by its upstreams (forward's DoT
    and DoH upstreams read the same files into contexts of their own); None when there is
    nothing to re-read."""
    followed = [(tls, list(ups)) for tls, ups in pairs if tls.paths and ups]
    if not followed:
        return None
    for tls, ups in followed:
        def use(new: ssl.SSLContext, ups: list[Upstream] = ups) -> None:
            for up in ups:
                up.use_ssl_context(new)

        tls.on_change.append(use)

    def check() -> None:
        for tls, _ in followed:
            tls.check()

    return follower(check, name=followed[0][0].label)
