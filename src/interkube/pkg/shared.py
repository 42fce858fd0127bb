"""Objects shared under a typed key: one per process (Services) or per server block.

Plugins share statistics that outlive a reload, HTTP endpoints, the cluster registry. Each kind
of shared object is declared once, beside its type, so that a key cannot be spelled two ways
and a lookup returns the declared type.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Kind(Generic[T]):
    """A kind of object that plugins share, declared once beside its type::

        MERGE_STATS = Kind("merge statistics", MergeStats)
        stats = ctx.services.shared.get_or_create(MERGE_STATS, cfg.zone, MergeStats)
    """

    __slots__ = ("name", "type")

    def __init__(self, name: str, type_: type[T]) -> None:
        self.name = name
        self.type = type_

    def __repr__(self) -> str:
        return f"<Kind {self.name}>"


class SharedObjects:
    """Objects shared under (kind, key): one per process (Services) or per server block."""

    def __init__(self) -> None:
        self._objects: dict[tuple[Kind[Any], Hashable], object] = {}

    def get(self, kind: Kind[T], key: Hashable = None) -> T | None:
        obj = self._objects.get((kind, key))
        if obj is None:
            return None
        assert isinstance(obj, kind.type)
        return obj

    def get_or_create(self, kind: Kind[T], key: Hashable, factory: Callable[[], T]) -> T:
        """The object for (kind, key), created by ``factory`` on first use."""
        obj = self.get(kind, key)
        if obj is None:
            obj = factory()
            assert isinstance(obj, kind.type)
            self._objects[(kind, key)] = obj
        return obj

    def put(self, kind: Kind[T], key: Hashable, obj: T) -> None:
        self._objects[(kind, key)] = obj

    def discard(self, kind: Kind[T], key: Hashable, obj: T) -> None:
        """Forget ``obj`` if it is still the one shared under (kind, key)."""
        if self._objects.get((kind, key)) is obj:
            del self._objects[(kind, key)]


__all__ = ["Kind", "SharedObjects"]
