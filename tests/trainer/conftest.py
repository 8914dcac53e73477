"""The trainer's `training` tests run it against the services as real uvicorn processes (the
session's shared set, tests/conftest.py), each test in its own project, with a feature cache of
its own that shares only the exported frozen backbones (exporting them takes seconds; they never
change). Its unit tests need none of this."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from visiondock.clients import AnnotationClient


@pytest.fixture(scope="session")
def shared_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("frozen-backbones")


@pytest.fixture
def cache_dir(tmp_path: Path, shared_models: Path) -> Path:
    root = tmp_path / "feature-cache"
    root.mkdir()
    (root / "models").symlink_to(shared_models, target_is_directory=True)
    return root


def project_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def upload_tagged(annotation: AnnotationClient, project: str, items: Sequence[tuple[str, bytes]], *,
                  split: str | None = None) -> list[dict[str, Any]]:
    """Upload (tag, JPEG) pairs, each labeled with its tag; returns the created images."""
    created = []
    for tag in dict.fromkeys(tag for tag, _ in items):
        files = [(f"{tag}-{i}.jpg", data) for i, (t, data) in enumerate(items) if t == tag]
        answer = annotation.upload_images(project, files, tags=[tag], split=split)
        created += [r["image"] for r in answer["results"] if r["status"] == "created"]
    return created


def upload_unlabeled(annotation: AnnotationClient, project: str, files: Sequence[bytes]) -> list[dict[str, Any]]:
    answer = annotation.upload_images(project, [(f"image-{i}.jpg", data) for i, data in enumerate(files)])
    return [r["image"] for r in answer["results"] if r["status"] == "created"]
