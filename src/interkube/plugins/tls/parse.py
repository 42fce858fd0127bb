"""Parse `tls CERT KEY [CA] [{ client_auth MODE; keylog FILE }]` (CoreDNS's tls syntax)."""

from __future__ import annotations

from dataclasses import dataclass

from interkube.corefile.parser import Directive
from interkube.pkg import args
from interkube.tlsutil.contexts import CLIENT_AUTH_MODES


@dataclass(frozen=True)
class TlsConfig:
    cert: str
    key: str
    ca: str | None = None
    client_auth: str = "nocert"   # CoreDNS's default, with or without CA
    keylog: str | None = None


def parse(d: Directive) -> TlsConfig:
    if not d.args:
        # CoreDNS's `tls { acme DOMAIN... }` form.
        raise args.not_supported(d.token, "tls", "automatic certificates (ACME, `tls` without CERT KEY)",
                                 "give `tls CERT KEY [CA]`")
    a = args.nargs(d, 2, 3)
    client_auth = "nocert"
    keylog = None
    for opt in d.block:
        if opt.name == "client_auth":
            tok = args.nargs(opt, 1, 1)[0]
            if tok.text not in CLIENT_AUTH_MODES:
                raise tok.error(f"client_auth: unknown mode {tok.text!r} "
                                f"(expected {', '.join(CLIENT_AUTH_MODES)})")
            client_auth = tok.text
        elif opt.name == "keylog":
            keylog = args.nargs(opt, 1, 1)[0].text
        else:
            raise args.unknown_option(opt, "tls")
    return TlsConfig(cert=a[0].text, key=a[1].text, ca=a[2].text if len(a) == 3 else None,
                     client_auth=client_auth, keylog=keylog)
