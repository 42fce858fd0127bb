"""The one exception hierarchy of interkube.

Every error the project raises on purpose derives from :class:`InterkubeError`. Subclasses are
named for the condition, and errors raised at an edge carry where they came from: a file and
line for configuration, a cluster and context for Kubernetes, an upstream address for forward.
"""

from __future__ import annotations


class InterkubeError(Exception):
    """Root of every error interkube raises on purpose."""


# --- configuration ---------------------------------------------------------------------------


class ConfigError(InterkubeError):
    """A configuration file is wrong at a known place.

    ``str(err)`` reads ``FILE:LINE: message`` so that a user can jump to it.
    """

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        super().__init__(self.__str__())

    @property
    def where(self) -> str:
        if self.file is None:
            return ""
        return f"{self.file}:{self.line}" if self.line else self.file

    def __str__(self) -> str:
        where = self.where
        return f"{where}: {self.message}" if where else self.message


class UnknownPlugin(ConfigError):
    """A directive names a plugin this build does not have."""


class PlanError(ConfigError):
    """An address plan file is malformed; ``path`` names the place inside it."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 path: str | None = None) -> None:
        self.path = path
        full = f"{path}: {message}" if path else message
        super().__init__(full, file, line)


class LabError(InterkubeError):
    """`interkube lab` could not build, reach or remove its network namespaces."""


# --- DNS serving -----------------------------------------------------------------------------


class DnsError(InterkubeError):
    """A DNS exchange failed."""


class MalformedMessage(DnsError):
    """Bytes that do not form a DNS message we can answer."""


class UpstreamError(DnsError):
    """An upstream server could not give an answer."""

    def __init__(self, upstream: str, reason: str) -> None:
        self.upstream = upstream
        self.reason = reason
        super().__init__(f"{upstream}: {reason}")


class UpstreamTimeout(UpstreamError):
    """An upstream did not answer in time."""


class UpstreamRefused(UpstreamError):
    """An upstream refused the connection or the datagram (ICMP port unreachable, RST)."""


class TlsVerificationFailed(UpstreamError):
    """A TLS peer's certificate or name was not accepted."""


class NoHealthyUpstream(DnsError):
    """Every upstream of a forward stanza is marked down."""


class InvalidRewrite(DnsError):
    """A rewrite rule made the question name into something that is not a domain name."""


class ListenerError(InterkubeError):
    """A socket could not be opened for serving."""


# --- Kubernetes ------------------------------------------------------------------------------


class KubeError(InterkubeError):
    """Talking to a Kubernetes cluster failed; carries the cluster and context."""

    def __init__(self, message: str, cluster: str | None = None, context: str | None = None) -> None:
        self.cluster = cluster
        self.context = context
        where = ", ".join(p for p in (f"cluster {cluster}" if cluster else "",
                                      f"context {context}" if context else "") if p)
        super().__init__(f"{where}: {message}" if where else message)


class KubeconfigError(KubeError):
    """A kubeconfig file or context is unusable."""


class KubeCredentialsError(InterkubeError):
    """The credentials for a request could not be had (a token file gone, an exec plugin that
    failed): a transient failure the API clients retry, not a refusal by the server."""


class KubeForbidden(KubeError):
    """RBAC refused a verb on a resource."""


class WatchExpired(KubeError):
    """A watch's resourceVersion is too old (HTTP 410 Gone); relist."""


# --- deployment manifests ----------------------------------------------------------------------


class RenderError(InterkubeError):
    """``interkube render`` cannot write what was asked: an option's value, options that do not
    fit together, a plan cluster that does not exist, a destination it may not replace."""


# --- admission webhook -------------------------------------------------------------------------


class WebhookError(InterkubeError):
    """The admission webhook cannot run or be rendered as asked (a flag's value, a certificate)."""


class MalformedReview(WebhookError):
    """A request body that is not an admission.k8s.io/v1 AdmissionReview the webhook can answer."""


# --- Service proxy -----------------------------------------------------------------------------


class ProxyError(InterkubeError):
    """``interkube proxy`` cannot program or read its nftables tables (nft missing or failing)."""


# --- ExternalName controller -------------------------------------------------------------------


class ExternalNamesError(InterkubeError):
    """``interkube externalnames`` cannot run as asked (a flag's value, a source that never syncs)."""
