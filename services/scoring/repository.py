"""The model repository: every model this process serves, by name, and the one way to find one.

Its targets come from the settings (`targets.py`), in order; the first is the default
model (of `/v1/predict`, `/v1/aliases/{alias}/...`, `GET /v1/model`). `*@ALIAS` rules add
a target for each registry model carrying the alias, at start and at every poll, so a
model promoted later is served without a restart; with only rules, the first model found
is the default.

`resolve()` is how every route finds its model: the default, a model by name, the default
model at another alias, or a model by the version it serves (the Open Inference
Protocol's `/versions/{v}`). A name it does not serve is a 404 naming those it does.

The memory budget is a policy inside it: at most `scoring_max_loaded_models` sessions
stay loaded. Using a model marks it most recently used; loading one past the budget
unloads the least recently used, never the default model, so `/v1/predict` and readiness
do not depend on traffic to other models. An unloaded model is loaded again on its next
request, from the disk cache once its checksum matches the registry's.

Readiness: ready when every model that exists for the targets is loaded (and warmed). A
target whose alias, model or version does not exist yet does not hold readiness back,
answers 503 naming what is missing, and is loaded at the first poll that finds it; one
that exists and cannot be loaded does hold it back, so a rollout of a broken model stops.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from visiondock.clients import RegistryClient, ServiceError
from visiondock.errors import NotFound, Unavailable

from .artifact_cache import ArtifactCache
from .follower import AliasDiscovery, PollLoop
from .metrics import ScoringMetrics
from .model import Device, LoadedModel
from .served_model import RETRY_AFTER_SECONDS, ServedModel
from .settings import ScoringSettings
from .targets import ServedTarget
from .variant_policy import VariantPolicy

log = logging.getLogger(__name__)
NOT_CONFIGURED = ("no model configured: set VISIONDOCK_SCORING_MODEL, VISIONDOCK_SCORING_MODELS or "
                  "VISIONDOCK_SCORING_MODEL_PATH")


class ModelRepository:
    def __init__(self, settings: ScoringSettings, registry: RegistryClient | None, *, device: Device,
                 metrics: ScoringMetrics | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.device = device
        self.metrics = metrics
        self.budget = settings.scoring_max_loaded_models
        self.cache = ArtifactCache(settings.resolved_cache_dir, keep_files=settings.scoring_cache_keep_files,
                                   max_bytes=int(settings.scoring_cache_max_gb * 1e9), in_use=self.files_in_use)
        self.policy = VariantPolicy(settings.scoring_variant, device=device,
                                    batch_size=lambda variant, gpu: settings.resolved_max_batch_size(
                                        variant=variant, gpu=gpu))
        plan = settings.target_plan
        self.discovery = (AliasDiscovery(registry, plan.discover_aliases)
                          if plan.discover_aliases and registry is not None else None)
        self._lock = threading.Lock()
        self._loading = threading.Lock()  # one load at a time, so two never unload each other's room
        # Replaced whole under the lock, so readers iterate a consistent tuple without it.
        self._models: tuple[ServedModel, ...] = ()
        self._used: OrderedDict[str, None] = OrderedDict()  # target keys, least recently used first
        # Metrics name the targets of the settings' default model by their alias alone, as before there
        # were several models.
        self._plan_default = plan.targets[0].name if plan.targets else None
        for target in plan.targets:
            self._add(target)
        self._discovery_poll = PollLoop(self.discover, settings.scoring_poll_seconds, name="model-discovery")
        self._started = False

    def _add(self, target: ServedTarget) -> ServedModel:
        label = (target.answer_alias if target.name == self._plan_default
                 else f"{target.name}@{target.answer_alias}")
        served = ServedModel(target, settings=self.settings, registry=self.registry, cache=self.cache,
                             policy=self.policy, device=self.device, label=label, metrics=self.metrics)
        with self._lock:
            self._models = (*self._models, served)
            self._used[target.key] = None
        return served

    # -- which model ---------------------------------------------------------------------------
    def default(self) -> ServedModel | None:
        models = self._models
        return models[0] if models else None

    def names(self) -> list[str]:
        """Each served name once, in order."""
        return list(dict.fromkeys(m.name for m in self._models))

    def by_name(self) -> list[ServedModel]:
        """The model each name addresses (its first target; another alias of it is not listed)."""
        first: dict[str, ServedModel] = {}
        for served in self._models:
            first.setdefault(served.name, served)
        return list(first.values())

    def resolve(self, name: str | None = None, *, alias: str | None = None,
                version: int | None = None) -> ServedModel:
        """The served model a request names: the default (no name), `name`, `name` at `alias` (the
        default model's when no name), or the target of `name` serving `version`. 404 when this service
        does not serve it, naming what it serves; 503 when no default model exists yet."""
        models = self._models
        if name is None:
            if not models:
                raise self._nothing_yet()
            name = models[0].name
        named = [m for m in models if m.name == name]
        if not named:
            served = ", ".join(self.names()) or "no model yet"
            raise NotFound(f"this service does not serve model {name!r}; it serves: {served}",
                           code="model_not_served")
        if alias is not None:
            for candidate in named:
                if candidate.target.answer_alias == alias:
                    return candidate
            raise NotFound(f"this service does not serve {alias!r}; it serves "
                           f"{', '.join(m.target.answer_alias for m in named)}", code="alias_not_served")
        if version is not None:
            for candidate in named:
                current = candidate.current
                if (current.version if current is not None else candidate.target.version) == version:
                    return candidate
            versions = [str(m.current.version) for m in named if m.current is not None]
            raise NotFound(f"version {version} of {name!r} is not served here; served: "
                           f"{', '.join(versions) or 'none loaded'}", code="version_not_served")
        return named[0]

    def _nothing_yet(self) -> Unavailable:
        if self.discovery is None:
            return Unavailable(NOT_CONFIGURED, code="model_not_loaded")
        aliases = " or ".join(self.discovery.aliases)
        return Unavailable(f"no model to serve yet: no registry model has the alias {aliases}",
                           retry_after=RETRY_AFTER_SECONDS, code="model_not_loaded")

    def default_name(self) -> str | None:
        """The default model's name (what a request without a model name uses), once there is one."""
        models = self._models
        return models[0].name if models else None

    async def serving(self, served: ServedModel) -> LoadedModel:
        """Its session, marked most recently used and loaded again if the budget had unloaded it; 503
        saying why when it has none."""
        if self.budget:
            with self._lock:
                self._used.move_to_end(served.target.key)
            if served.current is None:
                await run_in_threadpool(self._load_within_budget, served)
        return served.loaded_model()

    # -- the memory budget ---------------------------------------------------------------------
    def loaded(self) -> list[ServedModel]:
        return [m for m in self._models if m.current is not None]

    def files_in_use(self) -> list[Path]:
        return [path for m in self._models if (path := m.file) is not None]

    def _load_within_budget(self, served: ServedModel) -> None:
        with self._loading:
            if served.current is not None:  # a concurrent request loaded it meanwhile
                return
            # Unload first, so the budget holds while the new session is built.
            self._evict(room_for=1, keep=served)
            served.reload()
            self._evict(room_for=0, keep=served)

    def _evict(self, *, room_for: int, keep: ServedModel) -> None:
        default = self.default()
        with self._lock:
            order = list(self._used)
        by_key = {m.target.key: m for m in self._models}
        for key in order:
            if len(self.loaded()) + room_for <= self.budget:
                return
            served = by_key[key]
            if served is keep or served is default or served.current is None:
                continue
            served.unload()
            if self.metrics is not None:
                self.metrics.unloads.inc()

    def _within_budget(self, served: ServedModel) -> bool:
        return not self.budget or served is self.default() or len(self.loaded()) < self.budget

    def load_at_start(self) -> None:
        """Load the models in order while the budget allows (the rest wait for their first request),
        and those the registry's aliases add."""
        for served in self._models:
            if self._within_budget(served):
                served.refresh()
            else:
                served.defer()
        self.discover()

    def refresh(self) -> None:
        """Check every target now, and look for newly aliased models (the refresh endpoint)."""
        for served in self._models:
            served.refresh()
        self.discover()

    # -- discovery -----------------------------------------------------------------------------
    def discover(self) -> list[str]:
        """Serve every registry model that has a discovered alias and is not served yet; the new names."""
        if self.discovery is None:
            return []
        try:
            found = self.discovery.find()
        except ServiceError as exc:
            log.warning("cannot list the registry's models: %s", exc)
            return []
        known = set(self.names())
        added = []
        for target in found:
            if target.name in known:
                continue
            served = self._add(target)
            added.append(target.name)
            log.info("serving %s, discovered in the registry", target.describe())
            if self._within_budget(served):
                served.refresh()
            else:
                served.defer()
            if self._started:
                served.start()
        return added

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._started = True
        for served in self._models:
            served.start()
        if self.discovery is not None:
            self._discovery_poll.start()

    def stop(self) -> None:
        self._discovery_poll.stop()
        for served in self._models:
            served.stop()

    # -- readiness and status ------------------------------------------------------------------
    def not_ready_because(self) -> list[str]:
        """Why the service is not ready (nothing: ready). See the module docstring for the rule."""
        if not self._models and self.discovery is None:
            return [NOT_CONFIGURED]
        reasons = [why for m in self._models if (why := m.not_ready_because())]
        if self.discovery is not None and not self.discovery.listed:
            reasons.append("the registry's models have not been listed yet (to find those with the alias "
                           f"{' or '.join(self.discovery.aliases)})")
        return reasons

    def status(self) -> dict[str, Any]:
        """What GET /v1/models says (each model by name, as `visible` lets the caller see it)."""
        return self.listing(lambda _: True)

    def listing(self, visible: Any) -> dict[str, Any]:
        with self._lock:
            recency = {key: rank for rank, key in enumerate(reversed(self._used))}
        default = self.default_name()
        shown = [m for m in self.by_name() if visible(m.name)]
        return {
            "primary": default if default is None or visible(default) else None,
            "max_loaded_models": self.budget or None,
            "loaded": len([m for m in shown if m.current is not None]),
            "discovering": [f"*@{alias}" for alias in (self.discovery.aliases if self.discovery else ())],
            "models": [{"name": m.name, **m.status(), "primary": m.name == default,
                        "recently_used_rank": recency.get(m.target.key)} for m in shown],
        }

    def default_status(self) -> dict[str, Any]:
        """The default model's status, with each alias it is served at (`slots`)."""
        default = self.default()
        if default is None:
            why = self._nothing_yet().message
            return {"slot": "", "serving": "", "model": None, "state": "missing", "ready": False,
                    "registry_reachable": None, "error": why, "slots": {}}
        return {**default.status(), "slots": {m.target.answer_alias: m.status() for m in self._models
                                              if m.name == default.name}}
