"""A name -> entry table, one per axis a user chooses on the command line (spaces, strategies,
pruners, teachers, baselines, datasets).

Why one small class: the CLI's ``choices`` and the tests' parametrisation read ``names()``, so a new
entry is one ``add`` call (or decorator) and nothing else lists the choices by hand; an unknown
name is the same one-line error on every axis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from defect_nas.core.errors import DefectNasError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by name, in the order they were added (the CLI lists them in that order)."""

    def __init__(self, axis: str, flag: str, loader: Callable[[], None] | None = None) -> None:
        self.axis, self.flag = axis, flag
        self._entries: dict[str, T] = {}
        self._loader, self._loaded = loader, loader is None

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.axis} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda entry: self.add(name, entry)

    def _load(self) -> None:
        if not self._loaded:  # built-ins register on import; lazily, so that import order has no cycles
            self._loaded = True
            self._loader()

    def get(self, name: str) -> T:
        self._load()
        if name not in self._entries:
            raise DefectNasError(f"unknown {self.axis} {name!r}: choose {self.flag} {', '.join(self._entries)}")
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        self._load()
        return tuple(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        self._load()
        return iter(dict(self._entries).items())

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries
