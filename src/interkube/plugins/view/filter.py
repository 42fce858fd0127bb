"""A view's condition on the fast path: every ``expr`` of the view true for the query.

The answer is remembered per combination of what the expressions read, when what they read
repeats: the question name (as its wire bytes), type and class, the client's address, the
transport, the DO bit, the EDNS size, the server's address. A repeated query from a known client
then costs one dict lookup; its first costs a walk of the compiled closures (a few
microseconds). An expression that reads what differs on nearly every query (``id()``,
``port()``, ``size()``, ``metadata()``) is evaluated each time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from interkube.dns.memo import Memo
from interkube.plugin.metadata import Providers
from interkube.plugin.request import Request
from interkube.plugins.view.expression import FUNCTIONS, Program, run_all

#: Remembered answers per view (each entry a key and a bool).
MEMO_LIMIT = 4096


class ViewCondition:
    """Whether a query is for the view's block: :attr:`accepts` (a plain function, called
    for every query of the zone that reaches this view)."""

    def __init__(self, programs: Sequence[Program], collect: Providers | None) -> None:
        self.programs = tuple(programs)
        uses = sorted(set().union(*(p.uses for p in self.programs)))
        #: The block's metadata providers, asked before ``metadata()`` is read (as CoreDNS
        #: collects a block's metadata before its view decides); None: the block has no
        #: *metadata*, and ``metadata()`` is "".
        self.collect = collect
        self.reads_metadata = "metadata" in uses
        self.memo: Memo[Any, bool] = Memo(MEMO_LIMIT)
        keys = [FUNCTIONS[name].key for name in uses]
        self.key: Callable[[Request], Any] | None
        if any(FUNCTIONS[name].varies for name in uses):
            self.key = None
        elif not keys:
            self.key = _no_key
        elif len(keys) == 1:
            self.key = keys[0]
        else:
            self.key = _tuple_key([k for k in keys if k is not None])
        self.accepts = self._remembering() if self.key is not None else self.evaluate

    def _remembering(self) -> Callable[[Request], bool]:
        # A closure over locals: an attribute lookup less per step than a method (this runs
        # for every query of a zone with views, once per view asked).
        key = self.key
        assert key is not None
        table = self.memo.table
        remember = self.memo.remember
        evaluate = self.evaluate

        def accepts(req: Request) -> bool:
            k = key(req)
            known = table.get(k)
            if known is None:
                known = evaluate(req)
                remember(k, known)
            return known

        return accepts

    def evaluate(self, req: Request) -> bool:
        if not self.reads_metadata:
            return run_all(self.programs, req)
        saved = req.meta
        # This block's metadata alone: none where the block has no metadata plugin.
        req.meta = None if self.collect is None else {}
        try:
            for provide in self.collect or ():
                provide(req)
            return run_all(self.programs, req)
        finally:
            req.meta = saved


def _no_key(req: Request) -> None:
    return None


def _tuple_key(parts: list[Callable[[Request], Any]]) -> Callable[[Request], tuple[Any, ...]]:
    """The key of several parts: spelled out for two and three (a generator costs a microsecond)."""
    if len(parts) == 2:
        a, b = parts
        return lambda req: (a(req), b(req))
    if len(parts) == 3:
        a, b, c = parts
        return lambda req: (a(req), b(req), c(req))
    return lambda req: tuple([k(req) for k in parts])


__all__ = ["MEMO_LIMIT", "ViewCondition"]
