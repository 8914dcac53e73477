"""The models one scoring process serves by name (VISIONDOCK_SCORING_MODELS), within a memory budget.

Each model has its own watcher following its alias (or pinned version). At most
`scoring_max_loaded_models` sessions stay in memory: using a model marks it most
recently used, and loading one past the budget unloads the least recently used. The
primary model (the first) is never unloaded, so `/v1/predict` and readiness do not
depend on traffic to other models. An unloaded model is loaded again on its next
request, from the disk cache once the file's SHA-256 matches the registry's.

`*@ALIAS` discovers: every registry model that has the alias is served, and the list
is re-read at each poll, so a model promoted after the service started is served
without a restart (`visiondock up` relies on it).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

from starlette.concurrency import run_in_threadpool

from visiondock.clients import RegistryClient, ServiceError
from visiondock.errors import NotFound

from .metrics import ScoringMetrics
from .settings import ModelTarget, ScoringSettings
from .watcher import ModelWatcher

log = logging.getLogger(__name__)


class ServedModels:
    def __init__(self, settings: ScoringSettings, registry: RegistryClient | None, *,
                 primary: ModelWatcher | None, metrics: ScoringMetrics | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.budget = settings.scoring_max_loaded_models
        targets = settings.model_targets
        self.discover_aliases = [t.alias for t in targets if t.discover]
        self._lock = threading.Lock()
        self._loading = threading.Lock()  # one load at a time, so two never unload each other's room
        self._watchers: dict[str, ModelWatcher] = {}
        self._used: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self.pinned: str | None = None
        if primary is not None and primary.model_name:
            self._add(primary.model_name, primary)
        for target in targets:
            if not target.discover and target.name not in self._watchers:
                self._add(target.name, self._watcher_for(target))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False

    def _watcher_for(self, target: ModelTarget) -> ModelWatcher:
        return ModelWatcher(self.settings, self.registry, slot=target.slot, model=target.name,
                            alias=None if target.version else target.alias, version=target.version,
                            metrics=self.metrics, label=f"{target.name}@{target.slot}")

    def _add(self, name: str, watcher: ModelWatcher) -> None:
        with self._lock:
            self._watchers[name] = watcher
            self._used[name] = None
            if self.pinned is None:
                self.pinned = name

    # -- which model -------------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self._watchers)

    def watchers(self) -> list[ModelWatcher]:
        return list(self._watchers.values())

    def first(self) -> ModelWatcher | None:
        return self._watchers.get(self.pinned) if self.pinned else None

    def get(self, name: str) -> ModelWatcher:
        watcher = self._watchers.get(name)
        if watcher is None:
            served = ", ".join(self._watchers) or "no model yet"
            raise NotFound(f"this service does not serve model {name!r}; it serves: {served}",
                           code="model_not_served")
        return watcher

    async def use(self, name: str) -> ModelWatcher:
        """The model's watcher, loaded (again) if the budget had unloaded it, marked most recently used."""
        watcher = self.get(name)
        with self._lock:
            self._used.move_to_end(name)
        if watcher.unloaded:
            await run_in_threadpool(self._load, name)
        return watcher

    # -- the memory budget -------------------------------------------------------------
    def loaded(self) -> list[str]:
        # A copy first: the discovery thread may add a model meanwhile.
        return [name for name, watcher in list(self._watchers.items()) if watcher.current is not None]

    def _load(self, name: str) -> None:
        with self._loading:
            watcher = self._watchers[name]
            if not watcher.unloaded:  # a concurrent request loaded it meanwhile
                return
            # Unload first, so the budget holds while the new session is built.
            self._evict(room_for=1, keep=name)
            watcher.reload()
            self._evict(room_for=0, keep=name)

    def _evict(self, *, room_for: int, keep: str | None = None) -> None:
        if not self.budget:
            return
        with self._lock:
            order = [n for n in self._used if n not in (self.pinned, keep)]
        for name in order:
            if len(self.loaded()) + room_for <= self.budget:
                return
            watcher = self._watchers[name]
            if watcher.current is not None:
                watcher.unload()
                if self.metrics is not None:
                    self.metrics.unloads.inc()

    def load_at_start(self) -> None:
        """Load the models in order while the budget allows; the rest wait for their first request."""
        for name, watcher in list(self._watchers.items()):
            if self.budget and name != self.pinned and len(self.loaded()) >= self.budget:
                watcher.unloaded = True
            else:
                watcher.refresh()

    # -- discovery ---------------------------------------------------------------------
    def discover(self) -> list[str]:
        """Serve every registry model that has a discovered alias and is not served yet; the new names."""
        if not self.discover_aliases or self.registry is None:
            return []
        try:
            models = self.registry.list_models()
        except ServiceError as exc:
            log.warning("cannot list the registry's models: %s", exc)
            return []
        added = []
        for model in sorted(models, key=lambda m: m["name"]):
            alias = next((a for a in self.discover_aliases if a in (model.get("aliases") or {})), None)
            if alias is None or model["name"] in self._watchers:
                continue
            watcher = self._watcher_for(ModelTarget(model["name"], alias))
            self._add(model["name"], watcher)
            added.append(model["name"])
            log.info("serving %s@%s, discovered in the registry", model["name"], alias)
            if self.budget and len(self.loaded()) >= self.budget and model["name"] != self.pinned:
                watcher.unloaded = True
            else:
                watcher.refresh()
            if self._started:
                watcher.start()
        return added

    def start(self) -> None:
        self._started = True
        if self.discover_aliases:
            self._thread = threading.Thread(target=self._run, name="model-discovery", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.scoring_poll_seconds):
            self.discover()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- what GET /v1/models says ------------------------------------------------------
    def status(self) -> dict[str, Any]:
        with self._lock:
            recency = {name: rank for rank, name in enumerate(reversed(self._used))}
        return {
            "primary": self.pinned,
            "max_loaded_models": self.budget or None,
            "loaded": len(self.loaded()),
            "discovering": [f"*@{alias}" for alias in self.discover_aliases],
            "models": [{"name": name, **watcher.status(), "primary": name == self.pinned,
                        "recently_used_rank": recency.get(name)}
                       for name, watcher in list(self._watchers.items())],
        }
