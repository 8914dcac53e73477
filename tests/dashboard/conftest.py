"""The dashboard in headless Chromium against the registry as a real process, with versions the
trainer made in this session (tiny generated photos, quick mode)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cli.local_services import LocalServices
from services.trainer.job import run_training
from services.trainer.options import TrainingOptions
from tests.support.browser import chromium
from tests.support.stack import running_services
from tests.trainer.conftest import upload_tagged
from tests.trainer.generated import shape_images
from visiondock.clients import AnnotationClient, RegistryClient
from visiondock.settings import LOCAL_DEV_API_KEY

MODEL = "dash-shapes"
SHAPES = ("circle", "square", "triangle")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts" / "dashboard"


@dataclass
class Trained:
    services: LocalServices
    registry: RegistryClient
    versions: list[dict[str, Any]]

    @property
    def url(self) -> str:
        return f"{self.services.url('registry')}/dashboard"


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """Two versions of a shapes model: the second learned from more images, three of them mislabeled."""
    home = tmp_path_factory.mktemp("dashboard-home")
    # The scoring service serves `production` and captures every prediction (the drift panel's data).
    env = {"VISIONDOCK_LOG_LEVEL": "WARNING", "VISIONDOCK_SCORING_CAPTURE_RATE": "1",
           "VISIONDOCK_SCORING_POLL_SECONDS": "0.5", "VISIONDOCK_SCORING_DRIFT_WINDOW": "100"}
    with running_services(home, scoring_model=MODEL, env=env) as services, \
            AnnotationClient(services.url("annotation"), LOCAL_DEV_API_KEY) as annotation, \
            RegistryClient(services.url("registry"), LOCAL_DEV_API_KEY) as registry:
        annotation.create_project(MODEL, "multiclass", tags=SHAPES)
        images = upload_tagged(annotation, MODEL, shape_images(SHAPES, 6, seed=21))
        cache = home / "feature-cache"
        first = run_training(TrainingOptions(project=MODEL, cache_dir=cache, progress=False), annotation, registry)
        registry.set_alias(MODEL, "production", first.version, reason="first model")
        # Wrong labels on a few photos: the second version scores worse on some classes, better on none.
        circles = [i["id"] for i in images if i["tags"] == ["circle"]]
        for image_id in circles[:3]:
            annotation.set_image_tags(MODEL, image_id, ["square"])
        upload_tagged(annotation, MODEL, shape_images(SHAPES, 3, seed=22))
        second = run_training(TrainingOptions(project=MODEL, cache_dir=cache, progress=False), annotation, registry)
        registry.set_alias(MODEL, "staging", second.version)
        versions = [registry.get_version(MODEL, first.version), registry.get_version(MODEL, second.version)]
        yield Trained(services=services, registry=registry, versions=versions)


# Per module: playwright's sync API runs an event loop in this thread while it is open, which
# would break later tests that call asyncio.run().
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go: tests/artifacts/dashboard (git-ignored), like the other page tests'."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
