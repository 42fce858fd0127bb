"""Metadata: labelled values that plugins attach to a query for other plugins to read.

As in CoreDNS, metadata exists only where the *metadata* plugin is configured: it gives every
query of its zones an empty table (``Request.meta``) and asks the block's *providers* to fill it
before the rest of the chain runs. Without it, :func:`set_value` does nothing and :func:`value`
finds nothing, so a plugin may offer metadata unconditionally at the cost of one attribute test.

A label is ``plugin/name`` (a slash with something on both sides, CoreDNS's rule). A value is a
string, or a function returning one, called when the value is first read: a provider pays only
for the labels some consumer asks for (the *log* plugin's ``{/LABEL}`` placeholders, say).

Providers are per server block: a plugin's setup adds a function to the block's list
(:func:`providers`), and the *metadata* handler calls each for every query it covers.
"""

from __future__ import annotations

from collections.abc import Callable

from interkube.pkg.shared import Kind, SharedObjects
from interkube.plugin.request import Request

#: A value, or a function that computes it on first read.
Value = str | Callable[[], str]
#: Called by the metadata handler for each query of its zones, before the rest of the chain.
Provider = Callable[[Request], None]


class Providers(list[Provider]):
    """The metadata providers of one server block, in the order their plugins were set up."""


PROVIDERS = Kind("metadata providers", Providers)


def providers(block_shared: SharedObjects) -> Providers:
    """The providers list of a server block (``ctx.block.shared``), created on first use."""
    return block_shared.get_or_create(PROVIDERS, None, Providers)


def is_label(label: str) -> bool:
    """Whether ``label`` is a valid metadata label: ``plugin/name``, both parts non-empty."""
    slash = label.find("/")
    return 0 < slash < len(label) - 1


def enabled(req: Request) -> bool:
    """Whether metadata is collected for this query (a *metadata* plugin covers it)."""
    return req.meta is not None


def set_value(req: Request, label: str, value: Value) -> bool:
    """Attach ``value`` under ``label``; False (and nothing kept) where metadata is not enabled."""
    meta = req.meta
    if meta is None:
        return False
    meta[label] = value
    return True


def value(req: Request, label: str) -> str | None:
    """The value of ``label`` for this query, or None when it has none."""
    meta = req.meta
    if meta is None:
        return None
    found = meta.get(label)
    if found is None:
        return None
    if callable(found):
        found = found()
        meta[label] = found  # computed once per query
    return str(found)


def labels(req: Request) -> list[str]:
    """Every label set for this query, sorted."""
    return sorted(req.meta) if req.meta is not None else []


__all__ = ["PROVIDERS", "Provider", "Providers", "Value", "enabled", "is_label", "labels", "providers",
           "set_value", "value"]
