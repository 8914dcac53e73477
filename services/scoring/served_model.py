"""One served model: a target of the repository and the ONNX Runtime session serving it now.

A check asks the follower where the target points; when that is somewhere new, the loader
builds the new session (`loader.py`: the variant policy picks the file, the artifact cache
provides it) and warms it up beside the old one, then it is swapped in by one reference assignment:
requests already holding the old model finish on it, new ones get the new one, none fails.

If the registry cannot be reached, the last model keeps serving and the status says so;
a process that starts during an outage serves the file remembered in the cache. A target
whose alias (or model, or pinned version) does not exist yet is `missing`: it is loaded
at the first poll that finds it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from visiondock.clients import RegistryClient, ServiceError, ServiceUnavailableError
from visiondock.errors import Unavailable

from .artifact_cache import ArtifactCache
from .follower import AliasFollower, ModelMissing, PollLoop
from .loader import SessionLoader
from .metrics import ScoringMetrics
from .model import CUDA, Device, LoadedModel, ModelLoadError
from .settings import ScoringSettings
from .targets import ServedTarget
from .variant_policy import VariantPolicy

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5

# The states a served model is in (`status()["state"]`).
LOADED = "loaded"  # a session serves it (perhaps an older version, when the last check failed)
LOADING = "loading"  # not checked yet
MISSING = "missing"  # the registry has no such alias, model or version yet
FAILED = "failed"  # it exists but could not be loaded, or the registry could not be asked
UNLOADED = "unloaded"  # by the memory budget; the next request loads it again


class ServedModel:
    def __init__(self, target: ServedTarget, *, settings: ScoringSettings, registry: RegistryClient | None,
                 cache: ArtifactCache, policy: VariantPolicy, device: Device, label: str,
                 metrics: ScoringMetrics | None = None) -> None:
        self.target = target
        self.settings = settings
        self.cache = cache
        # Metrics and the poll thread are named by `label`: the alias for the default model's targets,
        # `<model>@<alias>` for the others.
        self.label = label
        self.metrics = metrics
        self.follower = AliasFollower(registry, target) if registry is not None and target.path is None else None
        self.loader = SessionLoader(target, settings=settings, registry=registry, cache=cache, policy=policy,
                                    device=device)
        self.current: LoadedModel | None = None
        self.error: str | None = None
        self.variant_note: str | None = None
        self._state = LOADING
        self._lock = threading.Lock()  # one check or unload at a time
        self._poll = PollLoop(self.refresh, settings.scoring_poll_seconds, name=f"model-follower-{label}")

    # -- facts ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The name requests address it by: the target's, or for a file the name its model card gives."""
        if self.target.name:
            return self.target.name
        if self.current is not None:
            return self.current.name
        assert self.target.path is not None
        return self.target.path.stem

    @property
    def state(self) -> str:
        return LOADED if self.current is not None else self._state

    @property
    def file(self) -> Path | None:
        """The file the session serving it now was loaded from."""
        return self.current.path if self.current is not None else None

    def not_ready_because(self) -> str | None:
        """Why this model keeps the service from being ready, or None. A model that does not exist yet,
        or that the memory budget unloaded, does not; one that exists and is not loaded does; so does
        one on the CPU where VISIONDOCK_SCORING_REQUIRE_GPU asks for a GPU."""
        state = self.state
        if state == LOADED:
            assert self.current is not None
            if self.settings.scoring_require_gpu and not self.current.on_gpu:
                return f"{self.target.describe()} runs on {self.current.provider}, not {CUDA} " \
                       "(VISIONDOCK_SCORING_REQUIRE_GPU is set)"
            return None
        if state in (MISSING, UNLOADED):
            return None
        return f"{self.target.describe()}: {self.error or 'loading'}"

    def loaded_model(self) -> LoadedModel:
        """The session serving it now; 503 saying why when there is none."""
        model = self.current
        if model is None:
            why = {UNLOADED: "unloaded to stay within the memory budget"}.get(self._state, self.error or "loading")
            raise Unavailable(f"no model loaded yet ({self.target.describe()}): {why}",
                              retry_after=RETRY_AFTER_SECONDS, code="model_not_loaded")
        return model

    def status(self) -> dict[str, Any]:
        follower = self.follower
        return {
            "slot": self.target.answer_alias,
            "serving": self.target.describe(),
            "model": self.current.describe() if self.current else None,
            "state": self.state,
            "ready": self.state == LOADED and self.not_ready_because() is None,
            "variant_requested": self.settings.scoring_variant,
            "variant_note": self.variant_note,
            "registry_reachable": follower.reachable if follower else None,
            "error": self.error,
            "last_check": follower.last_check if follower else None,
            "last_success": follower.last_success if follower else None,
        }

    # -- the poll thread -----------------------------------------------------------------------
    def start(self) -> None:
        if self.follower is not None:  # a file never changes under a running service
            self._poll.start()

    def poke(self) -> None:
        self._poll.poke()

    def stop(self) -> None:
        self._poll.stop()

    # -- the memory budget (the repository decides) ---------------------------------------------
    def defer(self) -> None:
        """Leave it unloaded until a request asks for it (the budget is full at start)."""
        with self._lock:
            if self.current is None:
                self._state = UNLOADED

    def unload(self) -> None:
        """Drop the session (requests holding it finish on it); `reload()` brings it back."""
        with self._lock:
            self.current, self._state = None, UNLOADED
            if self.follower is not None:
                self.follower.forget()
            if self.metrics is not None:
                self.metrics.show_model(self.label, None)
        log.info("unloaded %s to stay within the memory budget", self.target.describe())

    def reload(self) -> bool:
        """Load again after `unload()` or `defer()` (from the verified disk cache when the file is there)."""
        with self._lock:
            if self._state == UNLOADED:
                self._state = LOADING
        return self.refresh()

    # -- one check -----------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Load what the target points at if that is not what is served. True when it swapped."""
        with self._lock:
            if self.current is None and self._state == UNLOADED:
                return False
            try:
                loaded = self._load_file() if self.target.path is not None else self._load_from_registry()
            except ModelMissing as exc:
                self._failed(str(exc), state=MISSING)
                return False
            except ServiceError as exc:
                self._failed(str(exc), state=FAILED)
                if self.current is None and isinstance(exc, ServiceUnavailableError):
                    return self._swap(self.loader.from_remembered())
                return False
            except Exception as exc:  # a broken model file must not take the service down
                self._failed(f"{type(exc).__name__}: {exc}", state=FAILED)
                if not isinstance(exc, ModelLoadError):
                    log.exception("cannot load %s", self.target.describe())
                return False
            self.error = None
            if self.metrics is not None and self.follower is not None:
                self.metrics.registry_up.labels(slot=self.label).set(1)
                if self.follower.last_success is not None:
                    self.metrics.last_check.labels(slot=self.label).set(self.follower.last_success)
            return self._swap(loaded)

    def _failed(self, message: str, *, state: str) -> None:
        self.error = message
        self._state = state
        log.warning("cannot load %s: %s", self.target.describe(), message)
        if self.metrics is not None:
            self.metrics.check_errors.labels(slot=self.label).inc()
            if self.follower is not None and self.follower.reachable is not None:
                self.metrics.registry_up.labels(slot=self.label).set(1 if self.follower.reachable else 0)

    def _swap(self, loaded: LoadedModel | None) -> bool:
        if loaded is None:
            return False
        previous, self.current = self.current, loaded
        # `previous` is released when the last request still holding it finishes.
        log.info("%s serves %s version %d (%s, %s); was %s", self.label, loaded.name, loaded.version,
                 loaded.identity.variant, loaded.provider, previous.version if previous else "none")
        if self.settings.scoring_require_gpu and not loaded.on_gpu:
            log.error("%s version %d runs on %s: ONNX Runtime did not create the %s session this service needs "
                      "(VISIONDOCK_SCORING_REQUIRE_GPU is set; see ONNX Runtime's error above, e.g. CUDA libraries "
                      "that do not match its build); not ready", loaded.name, loaded.version, loaded.provider, CUDA)
        if self.metrics is not None:
            self.metrics.swaps.labels(slot=self.label).inc()
            self.metrics.show_model(self.label, {
                "model": loaded.name, "version": str(loaded.version), "variant": loaded.identity.variant,
                "provider": loaded.provider, "sha256": loaded.identity.sha256[:12]})
        self.cache.prune()
        return True

    # -- loading ---------------------------------------------------------------------------------
    def _load_file(self) -> LoadedModel | None:
        return None if self.current is not None else self.loader.from_file()

    def _load_from_registry(self) -> LoadedModel | None:
        assert self.follower is not None
        version_doc = self.follower.check()
        if version_doc is None:  # the alias has not moved
            return None
        choice = self.loader.choose(version_doc)
        self.variant_note = choice.note
        if choice.note:
            log.warning("%s: %s", self.target.describe(), choice.note)
        current = self.current
        if (current is not None and current.version == int(version_doc["version"])
                and current.identity.sha256 == choice.artifact["sha256"]):
            self.follower.settle()
            return None
        loaded = self.loader.from_version(version_doc, choice)
        self.follower.settle()  # only once loaded: a failed load is retried on the next check
        return loaded
