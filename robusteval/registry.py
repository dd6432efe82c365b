"""A small decorated registry: behaviour registers itself, data lives in its entry.

Every pluggable thing (transforms, suites, models, dataset layouts, scan backends) is one
``@REGISTRY.register(...)`` decorated function plus metadata; lookups never branch on names.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from robusteval.errors import UnknownName

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry(Generic[F]):
    """One registered callable with its metadata (free-form, kept as data)."""

    name: str
    fn: F
    meta: dict[str, Any] = field(default_factory=dict)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


class Registry(Generic[F]):
    """Name → :class:`Entry`. ``kind`` names the thing in errors (``"transform"``)."""

    def __init__(self, kind: str, *, list_command: str | None = None) -> None:
        self.kind = kind
        self.list_command = list_command
        self._entries: dict[str, Entry[F]] = {}

    def register(self, name: str | None = None, **meta: Any) -> Callable[[F], F]:
        """Decorator: register ``fn`` under ``name`` (default: the function's name)."""

        def deco(fn: F) -> F:
            key = name or fn.__name__
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} registered twice")
            self._entries[key] = Entry(key, fn, dict(meta))
            return fn

        return deco

    def get(self, name: str) -> Entry[F]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(self._unknown_message(name)) from None

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=3)
        msg = f"unknown {self.kind} {name!r}"
        if close:
            msg += f"; did you mean {', '.join(close)}?"
        if self.list_command:
            msg += f" — type `{self.list_command}` to see them all"
        return msg

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[F]]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)


def import_modules(modules: list[str]) -> None:
    """Import each module so its ``@register`` decorators run; a module that does not exist (a
    stage not built or not installed) is skipped, but an import error inside one is raised."""
    import importlib

    for mod in modules:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:
            if err.name != mod:
                raise
