"""Tiny models for every task, and scoring apps serving them in-process (TestClient)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.registry.app import create_app as create_registry_app
from services.scoring.app import create_app
from services.scoring.settings import ScoringSettings
from visiondock.clients import RegistryClient
from visiondock.settings import LOCAL_DEV_API_KEY, Settings

from . import tiny_models

AUTH = {"X-API-Key": LOCAL_DEV_API_KEY}


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "multiclass": tiny_models.classifier(root / "multiclass.onnx", thresholds={"uncertain": 0.6},
                                             model_name="colours", model_version="3"),
        "multilabel": tiny_models.classifier(root / "multilabel.onnx", task="multilabel",
                                             thresholds={"red": 0.6, "green": 0.6, "blue": 0.6}),
        "detection": tiny_models.detector(root / "detection.onnx"),
        "face": tiny_models.classifier(root / "face.onnx", task="face", thresholds={"unknown": 0.6},
                                       extra={"face_margin": 0.2}),
    }


AppFactory = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture
def serve(tmp_path: Path) -> AppFactory:
    """`with serve(model_path, **settings) as client:` a scoring app on that file."""

    @contextmanager
    def running(path: Path, **overrides: Any) -> Iterator[TestClient]:
        settings = ScoringSettings(home=tmp_path, scoring_model_path=path, log_format="text", log_level="WARNING",
                                   **overrides)
        with TestClient(create_app(settings), headers=AUTH) as client:
            yield client

    return running


@pytest.fixture
def registry_in_process(tmp_path: Path) -> Iterator[RegistryClient]:
    """A client of the real registry app, served in this process (no uvicorn), with its own storage."""
    settings = Settings(home=tmp_path / "registry-home", log_format="text", log_level="WARNING")
    with TestClient(create_registry_app(settings)) as http:
        yield RegistryClient("http://testserver", LOCAL_DEV_API_KEY, http=http, retries=1)


def register(registry: RegistryClient, model: str, path: Path, *, alias: str | None = None,
             variants: dict[str, Path] | None = None, task: str = "multiclass") -> int:
    """Register `path` as the next version of `model` (moving `alias` to it); its number."""
    version = int(registry.register_version(model, path, {"task": task, "labels": tiny_models.COLOURS,
                                                           "project_id": model}, variants=variants)["version"])
    if alias:
        registry.set_alias(model, alias, version)
    return version
