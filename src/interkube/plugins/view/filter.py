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
    """Whether a query is for the view's block (``__call__``)."""

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
            parts = tuple(k for k in keys if k is not None)
            self.key = lambda req: tuple(k(req) for k in parts)

    def __call__(self, req: Request) -> bool:
        key = self.key
        if key is None:
            return self.evaluate(req)
        k = key(req)
        known = self.memo.table.get(k)
        if known is None:
            known = self.evaluate(req)
            self.memo.remember(k, known)
        return known

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


__all__ = ["MEMO_LIMIT", "ViewCondition"]
