"""Follows a model alias in the registry and keeps the newest version loaded.

A background thread re-reads the alias every few seconds. When it points somewhere
new, the new file is downloaded (or taken from the local cache after its checksum is
verified), loaded and warmed up beside the old one, and only then swapped in: requests
never see a half-loaded model. If the registry cannot be reached, the last model keeps
serving and the failure is reported in `/readyz`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

from visiondock.clients import RegistryClient, ServiceError

from .model import LoadedModel
from .settings import ScoringSettings

log = logging.getLogger(__name__)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class ModelWatcher:
    def __init__(self, settings: ScoringSettings, registry: RegistryClient) -> None:
        self.settings = settings
        self.registry = registry
        self.current: LoadedModel | None = None
        self.last_check: float | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refresh_lock = threading.Lock()

    @property
    def target(self) -> str:
        pinned = self.settings.scoring_version
        return f"{self.settings.scoring_model}@{pinned if pinned else self.settings.scoring_alias}"

    def status(self) -> dict[str, Any]:
        return {
            "model": self.current.describe() if self.current else None,
            "serving": self.target,
            "last_check": self.last_check,
            "registry_error": self.last_error,
        }

    def _resolve(self) -> dict[str, Any]:
        model = self.settings.scoring_model
        if self.settings.scoring_version:
            return self.registry.get_version(model, self.settings.scoring_version)
        return self.registry.get_alias(model, self.settings.scoring_alias)["model_version"]

    def _fetch(self, model: str, version: int, sha256: str) -> Path:
        cache = self.settings.resolved_cache_dir / model
        path = cache / f"{version}-{sha256[:16]}.onnx"
        if path.exists() and file_sha256(path) == sha256:
            return path
        self.registry.download_artifact(model, version, path)
        actual = file_sha256(path)
        if actual != sha256:
            path.unlink(missing_ok=True)
            raise ServiceError(f"downloaded {model} version {version} has checksum {actual[:12]}…, the registry "
                               f"says {sha256[:12]}…; not loading it")
        return path

    def refresh(self) -> bool:
        """Load the version the alias points at if it is not loaded yet. True when it swapped."""
        if not self.settings.scoring_model:
            self.last_error = "no model configured: set VISIONDOCK_SCORING_MODEL"
            return False
        with self._refresh_lock:
            self.last_check = time.time()
            try:
                version_doc = self._resolve()
                version, sha256 = int(version_doc["version"]), version_doc["artifact"]["sha256"]
                if self.current and self.current.version == version and self.current.sha256 == sha256:
                    self.last_error = None
                    return False
                path = self._fetch(self.settings.scoring_model, version, sha256)
                loaded = LoadedModel(path, name=self.settings.scoring_model, version=version, sha256=sha256,
                                     intra_op_threads=self.settings.scoring_intra_op_threads)
                loaded.warm_up()
            except ServiceError as exc:
                self.last_error = str(exc)
                log.warning("cannot load %s: %s", self.target, exc)
                return False
            except Exception as exc:  # a broken model file must not take the service down
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("cannot load %s", self.target)
                return False
            previous, self.current = self.current, loaded
            self.last_error = None
            log.info("serving %s version %d (was %s)", loaded.name, loaded.version,
                     previous.version if previous else "none")
            return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.settings.scoring_poll_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
