"""Settings of the scoring service (VISIONDOCK_SCORING_*), on top of the shared ones."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from visiondock.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from visiondock.settings import Settings


class ScoringSettings(Settings):
    scoring_model: str = Field(default="", description="The registry model to serve.")
    scoring_alias: str = "production"
    scoring_version: int | None = Field(default=None, description="Pin a version instead of following the alias.")
    scoring_poll_seconds: float = Field(default=10.0, gt=0, description="How often to re-read the alias.")
    scoring_cache_dir: Path | None = None  # downloaded model files; defaults to <home>/model-cache
    scoring_intra_op_threads: int = Field(default=0, ge=0, description="ONNX Runtime threads; 0 = its default.")
    scoring_max_body_bytes: int = DEFAULT_MAX_BYTES
    scoring_max_pixels: int = DEFAULT_MAX_PIXELS
    scoring_top_k: int = Field(default=5, ge=1)

    @property
    def resolved_cache_dir(self) -> Path:
        return self.scoring_cache_dir or self.home / "model-cache"
