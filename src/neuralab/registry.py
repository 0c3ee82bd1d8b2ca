"""Name-to-factory registries for everything a user can type on the command line.

Models, activations, losses, optimizers, schedulers and recipes all resolve through
`Registry.get`, whose error lists the valid names, and `neuralab list` prints them.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Entry:
    """A registered factory and the one-line description `neuralab list` shows."""

    name: str
    factory: Callable[..., Any]
    description: str


class Registry:
    """A named collection of factories, filled by the `register` decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, description: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Return a decorator that registers its target under `name`."""

        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            text = description
            if not text and factory.__doc__:
                text = factory.__doc__.strip().splitlines()[0]
            self._entries[name] = Entry(name, factory, text)
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        """Return the factory registered as `name`; a ValueError lists the valid names."""
        try:
            return self._entries[name].factory
        except KeyError:
            valid = ", ".join(sorted(self._entries))
            raise ValueError(f"unknown {self.kind} {name!r}; valid names: {valid}") from None

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the factory registered as `name` with the given arguments."""
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda entry: entry.name))

    def __contains__(self, name: object) -> bool:
        return name in self._entries
