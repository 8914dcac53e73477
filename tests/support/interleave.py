"""A document store that lets a test run one operation in the middle of another, at a chosen write
or read: deterministic interleavings of two requests, on a real store (SQLite or Cosmos DB)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from visiondock.storage import DocumentStore


class Interleaved:
    """`store`, but the first call of `method` on `collection` after `at(...)` first runs `then`
    (which may use this store: it is not interrupted again)."""

    def __init__(self, store: DocumentStore) -> None:
        self.store = store
        self._hook: tuple[str, str, Callable[[], Any]] | None = None
        self.fired = False

    def at(self, method: str, collection: str, then: Callable[[], Any]) -> None:
        self._hook = (method, collection, then)
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.store, name)
        if self._hook is None or name != self._hook[0]:
            return attribute

        def hooked(collection: str, *args: Any, **kwargs: Any) -> Any:
            if self._hook is not None and collection == self._hook[1]:
                then = self._hook[2]
                self._hook = None
                self.fired = True
                then()
            return attribute(collection, *args, **kwargs)

        return hooked
