"""The plugin registry: which plugins exist and the one order in which they run.

As CoreDNS's plugin.cfg, the order here is fixed and independent of the order directives appear
in a Corefile: a query meets `acl` before `cache`, `cache` before `kubernetes`, and `forward`
last, whatever the user wrote. Config-only plugins (bind, tls, reload, health, ...) have a place
too; their setup returns no handler.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from interkube.corefile.lexer import Token
from interkube.errors import UnknownPlugin
from interkube.plugin.setup import Plugin

#: Execution order: CoreDNS 1.15's plugin.cfg for the plugins both have (rewrite and autopath
#: before acl and cache, as since CoreDNS 1.14.2), with interkube's own placed beside their
#: relatives: kubernetai, clusterset and splitdns after kubernetes, merge before forward. Each
#: name is a package `interkube.plugins.<name>` exposing `PLUGIN`; a name whose package this
#: build lacks is not available (an unknown plugin in a Corefile).
ORDER: tuple[str, ...] = (
    "tls",
    "metadata",
    "timeouts",
    "reload",
    "nsid",
    "bufsize",
    "bind",
    "ready",
    "health",
    "prometheus",
    "errors",
    "log",
    "local",
    "any",
    "chaos",
    "loadbalance",
    "rewrite",
    "autopath",
    "acl",
    "cache",
    "header",
    "minimal",
    "template",
    "transfer",
    "hosts",
    "k8s_external",
    "kubernetes",
    "kubernetai",
    "clusterset",
    "splitdns",
    "file",
    "loop",
    "merge",
    "forward",
    "whoami",
    "view",
)

_RANK = {name: i for i, name in enumerate(ORDER)}


@cache
def _load(name: str) -> Plugin[Any] | None:
    try:
        module = importlib.import_module(f"interkube.plugins.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"interkube.plugins.{name}":
            return None
        raise
    return getattr(module, "PLUGIN", None)


def available() -> list[str]:
    """Names of the plugins this build has, in execution order."""
    return [name for name in ORDER if _load(name) is not None]


def lookup(token: Token) -> Plugin[Any]:
    """The plugin a directive names; UnknownPlugin (with file:line) when there is none."""
    name = token.text
    plugin = _load(name) if name in _RANK else None
    if plugin is None:
        raise UnknownPlugin(f"unknown plugin {name!r} (available: {', '.join(available())})",
                            token.file, token.line)
    return plugin


def rank(name: str) -> int:
    return _RANK[name]
