"""OpenSSL (libssl and libcrypto) loaded only by a server whose Corefile uses it (issue 18, footprint).

Python maps OpenSSL's libraries for two extension modules: ``_ssl`` (under ``ssl``) and
``_hashlib`` (under ``hashlib`` and ``hmac``): 4.9 MiB of a hosts/forward server's 25 MiB
budget. Three standard modules load them although they run without: asyncio imports ``ssl``
(for its TLS transports), hashlib and hmac import ``_hashlib`` (for OpenSSL's digests), each
``try: import ...`` with a fallback for a Python built without OpenSSL. dnspython imports
hashlib and hmac for TSIG, which interkube does not use.

So ``interkube serve`` reads its Corefile first; when nothing in it uses TLS or a Kubernetes API
(:func:`needed`) and the event loop is asyncio's (uvloop imports ssl itself), it imports those
three modules while ``ssl`` and ``_hashlib`` are marked missing (:func:`import_without`), then
unmarks them. They take their documented fallbacks: asyncio without TLS transports, hashlib
and hmac with Python's own digests (the same bytes). interkube's modules that a plain server
loads import ssl only where TLS is used.

A reload may then bring a configuration that uses TLS: its setup imports ssl (whatever the
predicate above said). asyncio's modules are not imported again, and the ones that bound
``ssl = None`` at their import keep it: no import order makes an imported module see a later
one. :func:`catch_up`, after every build, gives it to them as their own import would have:
``asyncio.sslproto`` is executed again (``importlib.reload``: its module-level code derives
names from ssl, and asyncio reaches its classes through the module, so the new ones are used),
and ``ssl`` is set in ``asyncio.base_events`` and ``asyncio.selector_events`` (the two other
modules that bound it). hashlib and hmac are executed again too, now with OpenSSL (its
algorithms and implementations, as a normal start has them). This is the one place that reaches
into asyncio's modules; the reload test in tests/server/test_import_discipline.py checks it, and
would fail on a Python whose asyncio binds ssl elsewhere.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterable, Iterator

from interkube.corefile.parser import Directive, ServerBlock

#: The extension modules that map OpenSSL's libraries, and the modules that import them.
OPENSSL_MODULES = ("ssl", "_hashlib")
OPTIONAL_USERS = ("asyncio", "hashlib", "hmac")

#: Plugins that use TLS or a Kubernetes API (HTTPS, a kubeconfig's certificates) whatever their
#: arguments. Arguments and server keys with a TLS scheme are found by :func:`needed` itself.
OPENSSL_PLUGINS = frozenset({"tls", "kubernetes", "kubernetai", "clusterset", "k8s_external", "splitdns"})


def needed(blocks: Iterable[ServerBlock]) -> bool:
    """Whether a configuration may use OpenSSL: a plugin of :data:`OPENSSL_PLUGINS`, or any server
    key or argument with a scheme other than dns:// (tls://, https://). Erring towards True only
    costs memory; a False that a setup contradicts is made good by :func:`catch_up`."""

    def schemed(text: str) -> bool:
        return "://" in text and not text.lower().startswith("dns://")

    def uses(directives: Iterable[Directive]) -> bool:
        return any(d.name in OPENSSL_PLUGINS or any(schemed(a.text) for a in d.args) or uses(d.block)
                   for d in directives)

    return any(any(schemed(k.text) for k in b.keys) or uses(b.directives) for b in blocks)


@contextlib.contextmanager
def _missing(names: Iterable[str]) -> Iterator[None]:
    """``import NAME`` raises ImportError meanwhile, for each of ``names`` not imported yet (a
    None in sys.modules, as the import system documents)."""
    marked = [name for name in names if name not in sys.modules]
    for name in marked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in marked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


#: The modules :func:`import_without` imported while OpenSSL was missing, until
#: :func:`catch_up` gave it to them.
_without: list[str] = []


def import_without() -> None:
    """Import asyncio, hashlib and hmac without OpenSSL (those not imported yet: call it before
    anything else imports them)."""
    with _missing(OPENSSL_MODULES):
        for name in OPTIONAL_USERS:
            if name not in sys.modules:
                importlib.import_module(name)
                _without.append(name)


def catch_up() -> None:
    """Once OpenSSL is loaded in a process that imported modules without it: they use it from
    now on (see the module's docstring). Does nothing otherwise, and nothing the second time."""
    ssl = sys.modules.get("ssl")
    if ssl is None or not _without:
        return
    if "asyncio" in _without:
        importlib.reload(sys.modules["asyncio.sslproto"])
        for name in ("asyncio.base_events", "asyncio.selector_events"):
            sys.modules[name].__dict__["ssl"] = ssl  # the global its `import ssl` would have set
    for name in ("hashlib", "hmac"):  # in this order: hmac takes hashlib's constructors
        if name in _without:
            importlib.reload(sys.modules[name])
    _without.clear()
