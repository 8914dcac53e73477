"""Following the registry: where a served model's alias points, which registry models carry
a discovered alias (`*@ALIAS`), and the thread that asks again every poll.

An alias is read with the ETag of the version last served, so an alias that has not
moved costs the registry a 304. The ETag is kept only once that version is served
(`settle`): a version that failed to load is asked for again at the next poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from visiondock.clients import RegistryClient, ServiceError, ServiceUnavailableError

from .targets import ServedTarget

log = logging.getLogger(__name__)
Clock = Callable[[], float]


class ModelMissing(Exception):
    """The registry answered 404: the model, its alias or the pinned version does not exist yet."""


class AliasFollower:
    """Reads the version a target's alias (or pinned version) names, when it changed."""

    def __init__(self, registry: RegistryClient, target: ServedTarget, *, clock: Clock = time.time) -> None:
        self.registry = registry
        self.target = target
        self.clock = clock
        self.reachable: bool | None = None  # None: not asked yet
        self.last_check: float | None = None
        self.last_success: float | None = None
        self._settled_etag: str | None = None
        self._pending_etag: str | None = None
        self._settled = False

    def check(self) -> dict[str, Any] | None:
        """The version document when it may differ from the version settled last; None when it cannot
        (the alias answered 304, or the pinned version is served). Raises ModelMissing when the registry
        has no such model, alias or version, and ServiceError when it cannot answer."""
        asked = self.last_check = self.clock()
        target = self.target
        document: dict[str, Any] | None
        try:
            if target.version:
                if self._settled:  # a pinned version never changes: nothing to ask
                    return None
                document = self.registry.get_version(target.name, target.version)
                etag = None
            else:
                assert target.alias is not None
                resolved, etag = self.registry.get_alias_if_changed(target.name, target.alias, self._settled_etag)
                document = None if resolved is None else resolved["model_version"]
        except ServiceError as exc:
            self.reachable = not isinstance(exc, ServiceUnavailableError)
            if exc.is_not_found:
                raise ModelMissing(self._missing_message()) from exc
            raise
        self.reachable = True
        self.last_success = asked
        self._pending_etag = etag
        return document

    def _missing_message(self) -> str:
        target = self.target
        if target.version:
            return f"the registry has no version {target.version} of model {target.name!r}"
        return (f"the registry has no alias {target.alias!r} of model {target.name!r} yet; it is loaded as soon "
                "as the alias is set")

    def settle(self) -> None:
        """The version of the last check is served: later checks are conditional on its ETag."""
        self._settled_etag, self._settled = self._pending_etag, True

    def forget(self) -> None:
        """Nothing is served any more (unloaded): the next check answers the version again."""
        self._settled_etag, self._pending_etag, self._settled = None, None, False


class AliasDiscovery:
    """Which registry models carry one of the `*@ALIAS` aliases: a target for each."""

    def __init__(self, registry: RegistryClient, aliases: tuple[str, ...]) -> None:
        self.registry = registry
        self.aliases = aliases
        self.listed = False  # whether the registry's model list was read at least once

    def find(self) -> list[ServedTarget]:
        """Every model with a discovered alias (the first alias listed that it has), by name; ServiceError
        when the registry cannot list them."""
        models = self.registry.list_models()
        self.listed = True
        found = []
        for model in sorted(models, key=lambda m: m["name"]):
            alias = next((a for a in self.aliases if a in (model.get("aliases") or {})), None)
            if alias is not None:
                found.append(ServedTarget(model["name"], alias))
        return found


class PollLoop:
    """Calls `tick` every `interval` seconds on a thread of its own; `poke()` calls it at once."""

    def __init__(self, tick: Callable[[], object], interval: float, *, name: str) -> None:
        self.tick = tick
        self.interval = interval
        self.name = name
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Check now instead of at the next poll (an alias-change notification)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.tick()
            except Exception:  # the next poll tries again; the loop must outlive any one failure
                log.exception("%s: a poll failed", self.name)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
