"""Warmed ONNX Runtime sessions for one served target: from its local file, from a registry
version (the variant policy picks the file, the artifact cache provides it), or from the file
the cache remembers serving when the registry cannot be reached."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from visiondock.clients import RegistryClient
from visiondock.modelcard import PRECISION_KEY
from visiondock.vocabulary import FP32

from .artifact_cache import ArtifactCache, file_sha256
from .model import Device, LoadedModel, ModelIdentity, ModelLoadError, session_options
from .settings import ScoringSettings
from .targets import ServedTarget
from .variant_policy import VariantChoice, VariantPolicy

log = logging.getLogger(__name__)


class SessionLoader:
    def __init__(self, target: ServedTarget, *, settings: ScoringSettings, registry: RegistryClient | None,
                 cache: ArtifactCache, policy: VariantPolicy, device: Device) -> None:
        self.target = target
        self.settings = settings
        self.registry = registry
        self.cache = cache
        self.policy = policy
        self.device = device

    def _open(self, path: Path, identity: ModelIdentity) -> LoadedModel:
        """A session on `path`; the device learns where sessions run from it."""
        loaded = LoadedModel(path, identity, options=session_options(self.settings, gpu=self.device.gpu))
        self.device.observe(loaded)
        return loaded

    def _warmed(self, loaded: LoadedModel) -> LoadedModel:
        loaded.max_batch = self.settings.resolved_max_batch_size(variant=loaded.identity.variant, gpu=loaded.on_gpu)
        loaded.warm_up()
        return loaded

    # -- a local file ----------------------------------------------------------------------------
    def from_file(self) -> LoadedModel:
        path = self.target.path
        assert path is not None
        if not path.is_file():
            raise ModelLoadError(f"VISIONDOCK_SCORING_MODEL_PATH {path} is not a file")
        loaded = self._open(path, ModelIdentity(path.stem, 0, file_sha256(path), self.target.answer_alias,
                                                source="file"))
        # The file's model and version from its card, when the trainer wrote it, and from the trainer's
        # stamp which variant it is (INT8, fp16; none: fp32).
        card, version = loaded.card, loaded.card.model_version
        loaded.identity = ModelIdentity(
            card.model_name or path.stem, int(version) if version.isdigit() else 0, loaded.identity.sha256,
            self.target.answer_alias, source="file",
            variant=loaded.session.get_modelmeta().custom_metadata_map.get(PRECISION_KEY, FP32))
        return self._warmed(loaded)

    # -- a registry version ------------------------------------------------------------------------
    def _identity(self, version_doc: dict[str, Any], variant: str, artifact: dict[str, Any]) -> ModelIdentity:
        return ModelIdentity(self.target.name, int(version_doc["version"]), artifact["sha256"],
                             self.target.answer_alias, variant=variant, project_id=version_doc.get("project_id"),
                             baseline=(version_doc.get("metrics") or {}).get("prediction_baseline"))

    def _open_version_file(self, version_doc: dict[str, Any], variant: str, artifact: dict[str, Any]
                           ) -> LoadedModel:
        registry, name, version = self.registry, self.target.name, int(version_doc["version"])
        assert registry is not None

        def download(path: Path) -> None:
            registry.download_artifact(name, version, path, variant=None if variant == FP32 else variant)

        path = self.cache.fetch(name, version, variant, artifact, download)
        return self._open(path, self._identity(version_doc, variant, artifact))

    def choose(self, version_doc: dict[str, Any]) -> VariantChoice:
        """Which file of the version to serve (its session too, when choosing loaded it)."""
        return self.policy.choose(version_doc, lambda variant, artifact: self._open_version_file(
            version_doc, variant, artifact))

    def from_version(self, version_doc: dict[str, Any], choice: VariantChoice) -> LoadedModel:
        """The chosen file of the version, loaded and warmed, and remembered for a registry outage."""
        loaded = self._warmed(choice.session or self._open_version_file(version_doc, choice.variant,
                                                                        choice.artifact))
        self.cache.remember(self.target.name, self._record_name, loaded.path, {
            "version": loaded.version, "variant": choice.variant, "sha256": choice.artifact["sha256"],
            "project_id": version_doc.get("project_id"),
            "baseline": (version_doc.get("metrics") or {}).get("prediction_baseline")})
        return loaded

    # -- through a registry outage -------------------------------------------------------------
    @property
    def _record_name(self) -> str:
        return f"{self.target.answer_alias}-{self.settings.scoring_variant}"

    def from_remembered(self) -> LoadedModel | None:
        """The file this target served last, while its checksum verifies (None when there is none)."""
        remembered = self.cache.recall(self.target.name, self._record_name)
        if remembered is None:
            return None
        record = remembered.record
        try:
            identity = ModelIdentity(self.target.name, int(record["version"]), record["sha256"],
                                     self.target.answer_alias, variant=record["variant"],
                                     project_id=record.get("project_id"), source="cache",
                                     baseline=record.get("baseline"))
            loaded = self._warmed(self._open(remembered.path, identity))
        except (KeyError, ValueError, TypeError, ModelLoadError) as exc:
            log.info("no usable cached model for %s: %s", self.target.describe(), exc)
            return None
        log.warning("the registry is unreachable; serving the cached %s version %d", self.target.name,
                    loaded.version)
        return loaded
