"""Follows a model alias in the registry and keeps the version it points at loaded.

A background thread re-reads the alias every `scoring_poll_seconds`, sending the last
ETag so an unchanged alias costs a 304; `poke()` (the refresh endpoint) checks at once.
When the alias points somewhere new, the file is downloaded (or taken from the local
cache once its SHA-256 matches the registry's), loaded and warmed up beside the old
session, and only then swapped in by one reference assignment: requests already
holding the old model finish on it, new ones get the new one, none fails.

If the registry cannot be reached, the last model keeps serving and `/readyz` and the
metrics say so. A process that starts while the registry is down serves the version
it served last (remembered next to the cache), once its checksum verifies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from visiondock.clients import RegistryClient, ServiceError, ServiceUnavailableError
from visiondock.modelcard import PRECISION_KEY
from visiondock.vocabulary import AUTO, FP16, FP32, INT8

from .metrics import ScoringMetrics
from .model import LoadedModel, ModelIdentity, ModelLoadError, on_gpu, session_options
from .settings import ScoringSettings

log = logging.getLogger(__name__)
# How notes and logs name a variant.
_SPOKEN = {INT8: "INT8", FP16: "fp16"}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class ModelWatcher:
    """Serves one slot: an alias of a registry model, a pinned version, or a local file."""

    def __init__(self, settings: ScoringSettings, registry: RegistryClient | None, *, slot: str,
                 alias: str | None = None, version: int | None = None, path: Path | None = None,
                 metrics: ScoringMetrics | None = None, model: str | None = None, label: str | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.slot = slot
        self._model_name = model or settings.scoring_model
        # Metrics and the thread are named by `label`: `<model>@<alias>` where one process serves many models.
        self.label = label or slot
        # Unloaded to keep within the memory budget: the poll leaves it so, a request loads it again.
        self.unloaded = False
        self.alias = alias
        self.version = version
        self.path = path
        self.metrics = metrics
        self.current: LoadedModel | None = None
        self.last_check: float | None = None
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.registry_reachable: bool | None = None
        self.variant_note: str | None = None
        # (fp32 sha256, variant sha256) → the file `auto` serves on this device, and why not the variant
        # (`_faster_here`).
        self._trials: dict[tuple[str, str], tuple[str, str | None]] = {}
        self._etag: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._refresh_lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def target(self) -> str:
        if self.path is not None:
            return str(self.path)
        return f"{self.model_name}@{self.version if self.version else self.alias}"

    def status(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "serving": self.target,
            "model": self.current.describe() if self.current else None,
            "state": self.state,
            "variant_requested": self.settings.scoring_variant,
            "variant_note": self.variant_note,
            "registry_reachable": self.registry_reachable,
            "error": self.last_error,
            "last_check": self.last_check,
            "last_success": self.last_success,
        }

    @property
    def state(self) -> str:
        if self.current is not None:
            return "loaded"
        return "unloaded" if self.unloaded else ("failed" if self.last_error else "loading")

    # -- memory budget ----------------------------------------------------------------
    def unload(self) -> None:
        """Drop the session (requests holding it finish on it); `reload()` or a request brings it back."""
        with self._refresh_lock:
            self.unloaded, self.current, self._etag = True, None, None
            if self.metrics is not None:
                self.metrics.show_model(self.label, None)
        log.info("unloaded %s to stay within the memory budget", self.target)

    def reload(self) -> bool:
        """Load again after `unload()` (from the SHA-256-verified disk cache when the file is there)."""
        self.unloaded = False
        return self.refresh()

    # -- one check -------------------------------------------------------------------
    def refresh(self) -> bool:
        """Load what the slot points at if it is not loaded yet. True when it swapped."""
        with self._refresh_lock:
            if self.unloaded:
                return False
            self.last_check = time.time()
            try:
                loaded = self._load_file() if self.path is not None else self._load_from_registry()
            except ServiceError as exc:
                self._failed(str(exc), reachable=not isinstance(exc, ServiceUnavailableError))
                if self.current is None and isinstance(exc, ServiceUnavailableError):
                    return self._swap(self._load_remembered())
                return False
            except Exception as exc:  # a broken model file must not take the service down
                self._failed(f"{type(exc).__name__}: {exc}", reachable=self.registry_reachable)
                if not isinstance(exc, ModelLoadError):
                    log.exception("cannot load %s", self.target)
                return False
            self.last_success = time.time()
            self.last_error = None
            if self.metrics is not None:
                self.metrics.last_check.labels(slot=self.label).set(self.last_success)
            return self._swap(loaded)

    def _failed(self, message: str, *, reachable: bool | None) -> None:
        self.last_error = message
        self.registry_reachable = reachable
        log.warning("cannot load %s: %s", self.target, message)
        if self.metrics is not None:
            self.metrics.check_errors.labels(slot=self.label).inc()
            if self.path is None and reachable is not None:
                self.metrics.registry_up.labels(slot=self.label).set(1 if reachable else 0)

    def _swap(self, loaded: LoadedModel | None) -> bool:
        if loaded is None:
            return False
        previous, self.current = self.current, loaded
        # `previous` is released when the last request still holding it finishes.
        log.info("slot %s serves %s version %d (%s, %s); was %s", self.label, loaded.name, loaded.version,
                 loaded.identity.variant, loaded.provider, previous.version if previous else "none")
        if self.metrics is not None:
            self.metrics.swaps.labels(slot=self.label).inc()
            self.metrics.show_model(self.label, {
                "model": loaded.name, "version": str(loaded.version), "variant": loaded.identity.variant,
                "provider": loaded.provider, "sha256": loaded.identity.sha256[:12]})
        return True

    def _load(self, path: Path, identity: ModelIdentity, *, session: LoadedModel | None = None) -> LoadedModel:
        """`session`: the file already loaded (by the variant trial), to serve as `identity`."""
        loaded = session or LoadedModel(path, identity, options=session_options(self.settings))
        loaded.identity = identity
        if identity.source == "file":
            loaded.identity = self._file_identity(loaded)
        loaded.max_batch = self.settings.resolved_max_batch_size(variant=loaded.identity.variant, gpu=on_gpu())
        loaded.warm_up()
        return loaded

    @staticmethod
    def _file_identity(loaded: LoadedModel) -> ModelIdentity:
        """A file's model and version from its card, when the trainer wrote it, and from the trainer's
        stamp which variant it is (INT8, fp16; none: fp32)."""
        identity, version = loaded.identity, loaded.card.model_version
        return ModelIdentity(loaded.card.model_name or identity.name, int(version) if version.isdigit() else 0,
                             identity.sha256, identity.slot,
                             variant=loaded.session.get_modelmeta().custom_metadata_map.get(PRECISION_KEY, FP32),
                             source="file")

    def _load_file(self) -> LoadedModel | None:
        assert self.path is not None
        if self.current is not None:
            return None
        if not self.path.is_file():
            raise ModelLoadError(f"VISIONDOCK_SCORING_MODEL_PATH {self.path} is not a file")
        return self._load(self.path, ModelIdentity(self.path.stem, 0, file_sha256(self.path), self.slot,
                                                   source="file"))

    def _load_from_registry(self) -> LoadedModel | None:
        if not self.model_name:
            raise ModelLoadError("no model configured: set VISIONDOCK_SCORING_MODEL (or "
                                 "VISIONDOCK_SCORING_MODEL_PATH)")
        assert self.registry is not None
        if self.version:
            if self.current is not None:  # a pinned version never changes: nothing to ask
                return None
            version_doc, etag = self.registry.get_version(self.model_name, self.version), None
        else:
            assert self.alias is not None
            resolved, etag = self.registry.get_alias_if_changed(self.model_name, self.alias, self._etag)
            self.registry_reachable = True
            if self.metrics is not None:
                self.metrics.registry_up.labels(slot=self.label).set(1)
            if resolved is None:  # 304: the alias has not moved
                return None
            version_doc = resolved["model_version"]
        self.registry_reachable = True
        variant, artifact, trial = self._choose_artifact(version_doc)
        current = self.current
        if (current is not None and current.version == int(version_doc["version"])
                and current.identity.sha256 == artifact["sha256"]):
            self._etag = etag
            return None
        path, session = trial or (self._fetch(int(version_doc["version"]), artifact["sha256"], variant), None)
        identity = ModelIdentity(self.model_name, int(version_doc["version"]), artifact["sha256"], self.slot,
                                 variant=variant, project_id=version_doc.get("project_id"),
                                 baseline=(version_doc.get("metrics") or {}).get("prediction_baseline"))
        loaded = self._load(path, identity, session=session)
        self._etag = etag  # only once loaded: a failed load is retried on the next check
        self._remember(version_doc, variant, artifact["sha256"], path)
        return loaded

    def _choose_artifact(self, version_doc: dict[str, Any]
                         ) -> tuple[str, dict[str, Any], tuple[Path, LoadedModel] | None]:
        """The variant to serve, its artifact, and its file already loaded where choosing it loaded it."""
        wanted = self.settings.scoring_variant
        self.variant_note = None
        if wanted == AUTO:
            # The variant made for this kind of device: INT8 on a CPU (on most at about twice fp32's speed),
            # fp16 on a GPU (tensor cores; ONNX Runtime's CUDA INT8 kernels are not fast). Either answers
            # like fp32, as the trainer registers it only then; `_faster_here` checks that it is faster.
            gpu = on_gpu()
            candidate = FP16 if gpu else INT8
            variant = (version_doc.get("variants") or {}).get(candidate)
            if not variant:
                return FP32, version_doc["artifact"], None
            return self._faster_here(version_doc, candidate, variant, gpu=gpu)
        if wanted != FP32:
            variant = (version_doc.get("variants") or {}).get(wanted)
            if variant:
                return wanted, variant, None
            self.variant_note = (f"version {version_doc['version']} has no {wanted!r} variant; serving the fp32 "
                                 "file")
            log.warning("%s: %s", self.target, self.variant_note)
        return FP32, version_doc["artifact"], None

    def _faster_here(self, version_doc: dict[str, Any], candidate: str, variant: dict[str, Any], *, gpu: bool
                     ) -> tuple[str, dict[str, Any], tuple[Path, LoadedModel] | None]:
        """`auto`: the `candidate` variant's file (INT8 on a CPU, fp16 on a GPU) unless the fp32 file runs
        faster on this device.

        A variant is faster on most devices, but not on all: on a 16-core Intel Xeon VM, ONNX Runtime ran
        EfficientNet-Lite0's INT8 file at 14.8 ms an image against 11.2 for fp32 (one thread), while a
        2-core AMD EPYC ran it 2.4 times faster. So each file is timed once here, one after the other
        (never both in memory), on a batch of the size it would be served in. The answer is kept for the
        life of the process; the variant's session, when it wins, is the one served.
        """
        fp32 = version_doc["artifact"]
        version = int(version_doc["version"])
        key = (fp32["sha256"], variant["sha256"])
        device = "GPU" if gpu else "CPU"
        winner: tuple[Path, LoadedModel] | None = None
        if key not in self._trials:
            seconds: dict[str, float] = {}
            for name, artifact in ((FP32, fp32), (candidate, variant)):
                path = self._fetch(version, artifact["sha256"], name)
                trial = LoadedModel(path, ModelIdentity(self.model_name, version, artifact["sha256"], self.slot,
                                                        variant=name), options=session_options(self.settings))
                batch = self.settings.resolved_max_batch_size(variant=name, gpu=gpu)
                seconds[name] = trial.seconds_per_image(batch=batch)
                winner = (path, trial) if name == candidate else None  # the fp32 session goes before the other loads
                del trial
            timed = (f"{_SPOKEN[candidate]} {1000 * seconds[candidate]:.3g} ms an image, "
                     f"fp32 {1000 * seconds[FP32]:.3g} ms")
            if seconds[candidate] < seconds[FP32]:
                self._trials[key] = (candidate, None)
            else:
                winner = None
                self._trials[key] = (FP32, f"version {version}'s {_SPOKEN[candidate]} variant is not faster on this "
                                           f"{device} ({timed}); serving the fp32 file")
            log.info("%s version %d on this %s: %s; serving %s", self.model_name, version, device, timed,
                     self._trials[key][0])
        chosen, self.variant_note = self._trials[key]
        return (candidate, variant, winner) if chosen == candidate else (FP32, fp32, None)

    def _fetch(self, version: int, sha256: str, variant: str) -> Path:
        assert self.registry is not None
        path = self.settings.resolved_cache_dir / self.model_name / f"{version}-{variant}-{sha256[:16]}.onnx"
        if path.exists() and file_sha256(path) == sha256:
            return path
        if variant == FP32:
            self.registry.download_artifact(self.model_name, version, path)
        else:
            self.registry.download_artifact(self.model_name, version, path, variant=variant)
        actual = file_sha256(path)
        if actual != sha256:
            path.unlink(missing_ok=True)
            raise ModelLoadError(f"downloaded {self.model_name} version {version} ({variant}) has checksum "
                                 f"{actual[:12]}…, the registry says {sha256[:12]}…; not loading it")
        return path

    # -- serving through a registry outage -------------------------------------------
    @property
    def _memory_path(self) -> Path:
        wanted = self.settings.scoring_variant
        return self.settings.resolved_cache_dir / self.model_name / f"serving-{self.slot}-{wanted}.json"

    def _remember(self, version_doc: dict[str, Any], variant: str, sha256: str, path: Path) -> None:
        record = {"version": int(version_doc["version"]), "variant": variant, "sha256": sha256,
                  "file": path.name, "project_id": version_doc.get("project_id"), "saved_at": time.time(),
                  "baseline": (version_doc.get("metrics") or {}).get("prediction_baseline")}
        try:
            partial = self._memory_path.with_suffix(".partial")
            partial.write_text(json.dumps(record))
            partial.replace(self._memory_path)
        except OSError as exc:
            log.warning("cannot remember the served version in %s: %s", self._memory_path, exc)

    def _load_remembered(self) -> LoadedModel | None:
        try:
            record = json.loads(self._memory_path.read_text())
            path = self._memory_path.parent / record["file"]
            if file_sha256(path) != record["sha256"]:
                log.warning("cached %s does not match its checksum; not serving it", path)
                return None
            identity = ModelIdentity(self.model_name, int(record["version"]), record["sha256"], self.slot,
                                     variant=record["variant"], project_id=record.get("project_id"),
                                     source="cache", baseline=record.get("baseline"))
            loaded = self._load(path, identity)
        except (OSError, ValueError, KeyError, ModelLoadError) as exc:
            log.info("no usable cached model for %s: %s", self.target, exc)
            return None
        log.warning("the registry is unreachable; serving the cached %s version %d", self.model_name,
                    loaded.version)
        return loaded

    # -- the polling thread ----------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"model-watcher-{self.label}", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Check now instead of at the next poll (an alias-change notification)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.scoring_poll_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=5)
