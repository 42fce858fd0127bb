"""Pre-encoded answers that know what they were built from, so a change drops only those it touches.

:class:`~interkube.server.answers.TemplateTable` serves hosts and file, whose data changes
whole (a reloaded file), so a new table per data generation is right there. A cluster's data
changes one object at a time, many times a second under churn; a new table per event would
mean rebuilding every answer all the time. :class:`DependentTemplateTable` keeps, with each
template, the dependency keys of the lookups that built it (see :mod:`interkube.kube.index`),
and :meth:`DependentTemplateTable.invalidate` removes exactly the templates whose keys a change
reports. A relist or a reloaded snapshot is still a new generation and a new table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from interkube.dns.wire import RCODE_SERVFAIL, Query, error_response, template_for
from interkube.kube.index import DepKey
from interkube.server.answers import PASS, Generation, TemplateTable


class DependentTemplateTable(TemplateTable):
    """key -> template, with each template's dependency keys and the reverse map."""

    __slots__ = ("_deps", "_by_dep", "invalidated")

    def __init__(self, capacity: int = 100_000) -> None:
        super().__init__(capacity)
        self._deps: dict[bytes, tuple[DepKey, ...]] = {}
        self._by_dep: dict[DepKey, set[bytes]] = {}
        #: Templates removed because their data changed (for metrics and benchmarks).
        self.invalidated = 0

    def put(self, key: bytes, value: object, deps: Iterable[DepKey] = ()) -> None:
        m = self._map
        if key not in m and len(m) >= self.capacity:
            self._drop(next(iter(m)))
        m[key] = value
        deps = tuple(deps)
        self._deps[key] = deps
        by_dep = self._by_dep
        for dep in deps:
            keys = by_dep.get(dep)
            if keys is None:
                by_dep[dep] = {key}
            else:
                keys.add(key)

    def _drop(self, key: bytes) -> bool:
        if self._map.pop(key, None) is None:
            return False
        by_dep = self._by_dep
        for dep in self._deps.pop(key, ()):
            keys = by_dep.get(dep)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del by_dep[dep]
        return True

    def invalidate(self, changed: Iterable[DepKey]) -> int:
        """Drop every template built from a lookup of one of the ``changed`` keys."""
        dropped = 0
        for dep in changed:
            keys = self._by_dep.pop(dep, None)
            if keys:
                for key in keys:
                    dropped += self._drop(key)
        self.invalidated += dropped
        return dropped

    def dependents(self, dep: DepKey) -> int:
        """How many templates depend on ``dep`` (for tests)."""
        return len(self._by_dep.get(dep, ()))


class DependentGeneration(Generation):  # type: ignore[type-arg]
    """A generation (one index) whose table drops answers by dependency."""

    __slots__ = ()

    def __init__(self, data: object, capacity: int = 100_000) -> None:
        self.data = data
        self.templates: DependentTemplateTable = DependentTemplateTable(capacity)  # type: ignore[assignment]

    def build(self, query: Query, build: Callable[[set[DepKey]], bytes | None]) -> object:
        """Build the answer to ``query`` (``build`` adds what it read to the set it is given)
        and keep it as a template with those dependencies; PASS when ``build`` gives None.

        Called on a miss only, so that a hit costs one dict lookup and no closure."""
        deps: set[DepKey] = set()
        response = build(deps)
        tpl = PASS if response is None else template_for(response, query)
        self.templates.put(query.key, tpl, deps)
        return tpl


class _ServFail:
    """Stands in for a template where there is no data to answer from: SERVFAIL, built per
    query from its own bytes (nothing to keep)."""

    @staticmethod
    def render(query: Query) -> bytes:
        return error_response(query.wire, RCODE_SERVFAIL, query)


SERVFAIL = _ServFail()
