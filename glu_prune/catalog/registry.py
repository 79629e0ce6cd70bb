"""One small generic registry: named things in registration order, one error for a bad name.

Every registry of the package (models, benchmarks, benchmark sets, importance methods) is a
:class:`Registry`, so an unknown name always reads ``unknown {kind} 'name'; known: a, b``
and is always an :class:`UnknownName`.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping, ValuesView
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")
_MISSING: Any = object()


class UnknownName(KeyError, ValueError):
    """A name no registry entry has.

    Both a ``KeyError`` (what a lookup by name raises) and a ``ValueError`` (what a bad
    argument raises), so every existing ``except`` of either still catches it.
    """

    def __str__(self) -> str:
        # KeyError's own __str__ would print the message in quotes
        return str(self.args[0]) if self.args else ""


def unknown_name(kind: str, name: object, known: Iterable[str]) -> UnknownName:
    """The one message for a name of ``kind`` that is not among ``known``."""
    return UnknownName(f"unknown {kind} {name!r}; known: {', '.join(known)}")


class Registry(Mapping[str, T], Generic[T]):
    """Named items in registration order; a read-only mapping once filled.

    ``kind`` names what it holds ("model", "benchmark set", ...) for the error message.
    """

    def __init__(self, kind: str, items: Iterable[tuple[str, T]] = ()) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        for name, item in items:
            self.register(name, item)

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, item: T) -> T: ...

    def register(self, name: str, item: Any = _MISSING) -> Any:
        """Add ``item`` as ``name``; without ``item``, a decorator that adds what it decorates.

        A name registers once: a second registration is a ``ValueError`` naming it.
        """
        if item is _MISSING:
            def deco(fn: T) -> T:
                return self.register(name, fn)
            return deco
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def get(self, name: str, default: Any = _MISSING) -> T:  # type: ignore[override]
        """The item registered as ``name``; ``UnknownName`` listing the known names, unless a
        ``default`` is given (then that, as ``dict.get``)."""
        try:
            return self._items[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name is unknown too
            if default is not _MISSING:
                return default
            raise unknown_name(self.kind, name, self._items) from None

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._items
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        """The registered names in registration order."""
        return list(self._items)

    def items(self) -> ItemsView[str, T]:  # a read-only view of the dict
        """``(name, item)`` pairs in registration order."""
        return self._items.items()

    def values(self) -> ValuesView[T]:
        """The items in registration order."""
        return self._items.values()

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"
