"""A small certificate authority for DNS-over-TLS between clusters (labs, tests, first deployments).

Built on the ``cryptography`` library. One CA signs, per cluster, a *server* certificate for that
cluster's DNS-over-TLS endpoint and a *client* certificate that the other clusters' forwarders
present for mutual TLS. Production deployments get the same shapes from cert-manager (see
docs/tls.md); this module is for everything before that.

Files are PEM. Private keys are written with mode 0600 and every file is written atomically
(a temporary file renamed into place), so a process watching a certificate never reads half of
one.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from interkube.errors import InterkubeError

KeyType = Literal["ec", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Validity when not told otherwise: ten years for the CA, one for leaf certificates.
CA_DAYS = 3650
LEAF_DAYS = 365
#: Backdating of notBefore, so that a peer whose clock is a little behind accepts a new certificate.
CLOCK_SKEW = datetime.timedelta(minutes=5)
DEFAULT_CLUSTER_DOMAIN = "cluster.local"

_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class CertificateError(InterkubeError):
    """A certificate or key could not be created, read, or written as asked."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def new_key(key_type: KeyType = "ec") -> PrivateKey:
    """A new private key: EC P-256 (accepted by every TLS stack we meet, and fast to make) or
    RSA 2048."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise CertificateError(f"unknown key type {key_type!r} (expected ec or rsa)")


def key_pem(key: PrivateKey) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, in memory."""

    cert: x509.Certificate
    key: PrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return key_pem(self.key)

    @property
    def dns_names(self) -> list[str]:
        return sans(self.cert)[0]

    @property
    def ip_addresses(self) -> list[str]:
        return sans(self.cert)[1]

    def save(self, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> None:
        """Write both files (key 0600, certificate 0644), each replaced atomically.

        The key goes first: a watcher that sees the new certificate then finds its key in place.
        """
        write_atomic(key_path, self.key_pem(), 0o600)
        write_atomic(cert_path, self.cert_pem(), 0o644)


def sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses of a certificate's subjectAltName (empty if it has none)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return (list(ext.get_values_for_type(x509.DNSName)),
            [str(a) for a in ext.get_values_for_type(x509.IPAddress)])


def create_ca(common_name: str = "interkube DNS CA", *, days: int = CA_DAYS,
              key_type: KeyType = "ec") -> Issued:
    """A self-signed CA that may sign leaf certificates only (pathLen 0)."""
    key = new_key(key_type)
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(cert, key)


def issue(ca: Issued, common_name: str, *, dns_names: Sequence[str] = (),
          ip_addresses: Sequence[str | IPAddress] = (), server: bool = True, client: bool = False,
          organizations: Sequence[str] = (), days: int = LEAF_DAYS,
          not_before: datetime.datetime | None = None, not_after: datetime.datetime | None = None,
          key_type: KeyType = "ec") -> Issued:
    """A leaf certificate signed by ``ca``.

    ``server`` and ``client`` choose the extended key usages (serverAuth, clientAuth): a TLS
    stack rejects a certificate used for the other purpose. ``organizations`` go into the
    subject before the common name (a Kubernetes API server reads them as the user's groups).
    ``not_before``/``not_after`` override the validity window (tests use them for expired
    certificates).
    """
    if not (server or client):
        raise CertificateError("a certificate must be for a server, a client, or both")
    key = new_key(key_type)
    now = _now()
    start = not_before or now - CLOCK_SKEW
    end = not_after or now + datetime.timedelta(days=days)
    if end <= start:
        raise CertificateError("the certificate would expire before it becomes valid")
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(dns_names)]
    for ip in dict.fromkeys(ip_addresses):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise CertificateError(f"{ip!r} is not an IP address") from None
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
             ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common_name, organizations))
               .issuer_name(ca.cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(start)
               .not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True,
                                            key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                                            content_commitment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=False, crl_sign=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                              critical=False))
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


# --- names a cluster's DNS service needs ---------------------------------------------------------


def check_label(text: str, what: str) -> str:
    """``text`` as a lower-case DNS label (cluster and namespace names are labels)."""
    label = text.lower()
    if not _LABEL_RE.match(label):
        raise CertificateError(f"{what} {text!r} is not a DNS label (a-z, 0-9 and '-', at most 63)")
    return label


@dataclass(frozen=True)
class ClusterNames:
    """What goes into one cluster's server certificate."""

    cluster: str
    namespaces: tuple[str, ...] = ()   # zones NS.svc.DOMAIN the cluster's DNS answers for
    services: tuple[str, ...] = ()     # NAME.NAMESPACE of the Service in front of the DoT server
    extra_dns: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN

    @property
    def server_name(self) -> str:
        """The name forwarders verify (``tls://IP%dns.CLUSTER``, ``tls_servername dns.CLUSTER``)."""
        return f"dns.{self.cluster}"

    @property
    def client_name(self) -> str:
        return f"dns-client.{self.cluster}"

    def dns_names(self) -> list[str]:
        """``dns.CLUSTER``, then per namespace ``NS.svc.DOMAIN`` and ``*.NS.svc.DOMAIN``, then per
        Service ``NAME.NS``, ``NAME.NS.svc`` and ``NAME.NS.svc.DOMAIN``, then the extra names."""
        domain = self.cluster_domain.strip(".").lower()
        names = [self.server_name]
        for ns in self.namespaces:
            names += [f"{ns}.svc.{domain}", f"*.{ns}.svc.{domain}"]
        for svc in self.services:
            names += [svc, f"{svc}.svc", f"{svc}.svc.{domain}"]
        names += [n.strip(".").lower() for n in self.extra_dns]
        return list(dict.fromkeys(names))


def cluster_names(cluster: str, *, namespaces: Iterable[str] = (), services: Iterable[str] = (),
                  extra_dns: Iterable[str] = (), ip_addresses: Iterable[str] = (),
                  cluster_domain: str = DEFAULT_CLUSTER_DOMAIN) -> ClusterNames:
    """Validated :class:`ClusterNames` (labels checked, Services as NAME.NAMESPACE, IPs parsed)."""
    svcs = []
    for svc in services:
        name, dot, ns = svc.partition(".")
        if not dot or "." in ns:
            raise CertificateError(f"service {svc!r} must be written NAME.NAMESPACE")
        svcs.append(f"{check_label(name, 'service name')}.{check_label(ns, 'namespace')}")
    ips = []
    for ip in ip_addresses:
        try:
            ips.append(str(ipaddress.ip_address(ip)))
        except ValueError:
            raise CertificateError(f"{ip!r} is not an IP address") from None
    return ClusterNames(cluster=check_label(cluster, "cluster name"),
                        namespaces=tuple(check_label(n, "namespace") for n in namespaces),
                        services=tuple(svcs), extra_dns=tuple(extra_dns), ip_addresses=tuple(ips),
                        cluster_domain=cluster_domain)


# --- files -------------------------------------------------------------------------------------


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` with ``mode`` by renaming a finished temporary file over it."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        os.fchmod(fd, mode)  # before any byte is written: a key is never readable by others
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> Issued:
    """Read a PEM certificate and its unencrypted PEM key."""
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    except OSError as exc:
        raise CertificateError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"{cert_path} / {key_path}: not a PEM certificate and key: {exc}") from exc
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise CertificateError(f"{key_path}: only EC and RSA keys are supported")
    if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
            cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise CertificateError(f"{key_path} is not the key of {cert_path}")
    return Issued(cert, key)


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether ``ca``'s key signed ``cert``."""
    if cert.issuer != ca.subject:
        return False
    public = ca.public_key()
    algorithm = cert.signature_hash_algorithm
    if algorithm is None:  # an Ed25519 or Ed448 signature, which no RSA or EC key made
        return False
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class ClusterFiles:
    """Where one cluster's certificates live: ``DIR/CLUSTER/{server,client}.{crt,key}``."""

    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def under(cls, directory: Path) -> ClusterFiles:
        return cls(*(directory / f"{role}.{ext}" for role in ("server", "client") for ext in ("crt", "key")))


@dataclass(frozen=True)
class Layout:
    """The files under one directory: ``ca.crt``, ``ca.key`` and a folder per cluster."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    def cluster(self, name: str) -> ClusterFiles:
        return ClusterFiles.under(self.directory / name)


@dataclass
class Report:
    """What a run did to each file: lines such as ``created  DIR/ca.crt``."""

    lines: list[tuple[str, Path, str]] = field(default_factory=list)

    def add(self, action: str, path: Path, detail: str = "") -> None:
        self.lines.append((action, path, detail))

    def text(self) -> str:
        return "\n".join(f"{action:<9}{path}" + (f"  ({detail})" if detail else "")
                         for action, path, detail in self.lines)


def _mkdir(path: Path) -> None:
    # Folders hold private keys: only their owner may list them.
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def ensure_ca(layout: Layout, *, common_name: str = "interkube DNS CA", days: int = CA_DAYS,
              key_type: KeyType = "ec", new: bool = False, report: Report | None = None) -> Issued:
    """The CA under ``layout``: read if present, created if not; replaced only when ``new``.

    Replacing a CA invalidates every certificate it signed, hence its own flag.
    """
    report = report if report is not None else Report()
    have_cert, have_key = layout.ca_cert.exists(), layout.ca_key.exists()
    if have_cert and have_key and not new:
        ca = load(layout.ca_cert, layout.ca_key)
        report.add("kept", layout.ca_cert, f"expires {ca.cert.not_valid_after_utc:%Y-%m-%d}")
        return ca
    if (have_cert or have_key) and not new:
        present, missing = (layout.ca_cert, layout.ca_key) if have_cert else (layout.ca_key, layout.ca_cert)
        raise CertificateError(f"{present} exists but {missing} does not; restore it, or pass "
                               f"--new-ca to create a new CA (every certificate must then be reissued)")
    _mkdir(layout.directory)
    ca = create_ca(common_name, days=days, key_type=key_type)
    ca.save(layout.ca_cert, layout.ca_key)
    report.add("replaced" if have_cert else "created", layout.ca_cert)
    report.add("replaced" if have_key else "created", layout.ca_key)
    return ca


def _why_not_reusable(existing: Issued, ca: Issued, common_name: str, dns_names: list[str],
                      ip_addresses: list[str], renew_within: datetime.timedelta) -> str | None:
    """Why an existing leaf certificate does not do what was asked, or None if it does."""
    cert = existing.cert
    if not signed_by(cert, ca.cert):
        return "signed by another CA"
    have_dns, have_ip = sans(cert)
    if sorted(have_dns) != sorted(dns_names) or sorted(have_ip) != sorted(ip_addresses):
        return f"names differ: has {', '.join(have_dns + have_ip) or 'none'}"
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cn or cn[0].value != common_name:
        return "common name differs"
    if cert.not_valid_after_utc - renew_within <= _now():
        return f"expires {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    return None


def ensure_leaf(ca: Issued, cert_path: Path, key_path: Path, common_name: str, *,
                dns_names: Sequence[str] = (), ip_addresses: Sequence[str] = (), server: bool = True,
                client: bool = False, days: int = LEAF_DAYS, key_type: KeyType = "ec",
                force: bool = False, report: Report | None = None) -> Issued:
    """A leaf certificate at ``cert_path``: kept when it already is what was asked, issued when
    missing, and replaced only with ``force`` (the error says why it would have to be)."""
    report = report if report is not None else Report()
    names = list(dict.fromkeys(dns_names))
    ips = [str(ipaddress.ip_address(i)) for i in dict.fromkeys(ip_addresses)]
    exists = cert_path.exists() or key_path.exists()
    if exists and not force:
        if not (cert_path.exists() and key_path.exists()):
            present, missing = (cert_path, key_path) if cert_path.exists() else (key_path, cert_path)
            raise CertificateError(f"{present} exists but {missing} does not; pass --force to reissue both")
        existing = load(cert_path, key_path)
        why = _why_not_reusable(existing, ca, common_name, names, ips, datetime.timedelta(days=days / 10))
        if why is None:
            report.add("kept", cert_path, f"expires {existing.cert.not_valid_after_utc:%Y-%m-%d}")
            return existing
        raise CertificateError(f"{cert_path} exists but is not what was asked ({why}); "
                               f"pass --force to reissue it")
    _mkdir(cert_path.parent)
    leaf = issue(ca, common_name, dns_names=names, ip_addresses=ips, server=server, client=client,
                 days=days, key_type=key_type)
    leaf.save(cert_path, key_path)
    report.add("replaced" if exists else "created", cert_path, ", ".join(names + ips))
    report.add("replaced" if exists else "created", key_path)
    return leaf


def ensure_cluster(layout: Layout, ca: Issued, names: ClusterNames, *, server: bool = True,
                   client: bool = True, days: int = LEAF_DAYS, key_type: KeyType = "ec",
                   force: bool = False, report: Report | None = None) -> ClusterFiles:
    """One cluster's server certificate (its DoT endpoint) and client certificate (for mTLS)."""
    files = layout.cluster(names.cluster)
    if server:
        ensure_leaf(ca, files.server_cert, files.server_key, names.server_name,
                    dns_names=names.dns_names(), ip_addresses=names.ip_addresses, server=True,
                    days=days, key_type=key_type, force=force, report=report)
    if client:
        ensure_leaf(ca, files.client_cert, files.client_key, names.client_name,
                    dns_names=[names.client_name], server=False, client=True, days=days,
                    key_type=key_type, force=force, report=report)
    return files
