"""The model repository in process: how every route's model is resolved, readiness by the
rule for a first install, the memory budget, discovery, the GPU requirement and the pruned
cache, with the real registry app served in this process (no uvicorn)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from services.scoring.model import Device
from services.scoring.repository import ModelRepository
from services.scoring.settings import ScoringSettings
from visiondock.clients import RegistryClient
from visiondock.errors import NotFound, Unavailable

from . import tiny_models
from .conftest import register

Repository = Callable[..., Any]  # repository(**settings) -> context manager of a loaded ModelRepository


@pytest.fixture
def repository(registry_in_process: RegistryClient, tmp_path: Path) -> Repository:
    @contextmanager
    def loaded(**overrides: Any) -> Iterator[ModelRepository]:
        settings = ScoringSettings(home=tmp_path / "scoring", log_format="text", log_level="WARNING",
                                   scoring_intra_op_threads=1, **overrides)
        repo = ModelRepository(settings, None if settings.scoring_model_path else registry_in_process,
                               device=Device(expect_gpu=settings.scoring_require_gpu))
        repo.load_at_start()
        yield repo

    return loaded


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return tiny_models.classifier(tmp_path / "colours.onnx")


def serving(repo: ModelRepository, *args: Any, **kwargs: Any) -> Any:
    return asyncio.run(repo.serving(repo.resolve(*args, **kwargs)))


def test_every_way_of_naming_a_model_resolves_through_one_place(repository: Repository,
                                                                registry_in_process: RegistryClient,
                                                                model_file: Path) -> None:
    registry = registry_in_process
    v1 = register(registry, "flowers", model_file, alias="production")
    v2 = register(registry, "flowers", model_file, alias="staging")
    register(registry, "shelf", tiny_models.detector(model_file.with_name("shelf.onnx")), alias="production",
             task="detection")
    with repository(scoring_models="flowers,shelf", scoring_secondary_alias="staging") as repo:
        assert repo.default_name() == "flowers" and repo.names() == ["flowers", "shelf"]
        assert repo.resolve().target.key == "flowers@production"
        assert repo.resolve("shelf").target.key == "shelf@production"
        assert repo.resolve(alias="staging").target.key == "flowers@staging"
        assert repo.resolve("flowers", version=v2).target.key == "flowers@staging"
        assert serving(repo, "flowers", version=v1).version == v1
        with pytest.raises(NotFound, match=r"does not serve model 'faces'; it serves: flowers, shelf"):
            repo.resolve("faces")
        with pytest.raises(NotFound, match=r"does not serve 'canary'; it serves production, staging"):
            repo.resolve(alias="canary")
        with pytest.raises(NotFound, match=rf"version 9 of 'flowers' is not served here; served: {v1}, {v2}"):
            repo.resolve("flowers", version=9)
        # `GET /v1/models` lists each name once; the second alias is the default model's, in `slots`.
        assert [m["name"] for m in repo.status()["models"]] == ["flowers", "shelf"]
        assert set(repo.default_status()["slots"]) == {"production", "staging"}


def test_a_model_whose_alias_does_not_exist_yet_is_ready_and_loads_when_it_appears(
        repository: Repository, registry_in_process: RegistryClient, model_file: Path) -> None:
    with repository(scoring_model="colours", scoring_secondary_alias="staging") as repo:
        assert repo.not_ready_because() == []  # nothing that exists waits to be loaded
        with pytest.raises(Unavailable, match="no alias 'production' of model 'colours' yet") as refused:
            serving(repo)
        assert refused.value.code == "model_not_loaded" and refused.value.retry_after
        assert repo.resolve().status()["state"] == "missing"
        version = register(registry_in_process, "colours", model_file, alias="production")
        repo.refresh()  # what the next poll does: no restart
        assert serving(repo).version == version and repo.not_ready_because() == []
        # The second alias still does not exist: it never holds readiness back.
        assert repo.resolve(alias="staging").status()["state"] == "missing"


def test_a_model_that_exists_but_cannot_load_keeps_the_service_unready(repository: Repository,
                                                                        registry_in_process: RegistryClient,
                                                                        tmp_path: Path, model_file: Path) -> None:
    register(registry_in_process, "colours", tiny_models.not_a_model(tmp_path / "broken.onnx"), alias="production")
    with repository(scoring_model="colours") as repo:
        [why] = repo.not_ready_because()
        assert why.startswith("colours@production: ModelLoadError: ONNX Runtime cannot load")
        status = repo.resolve().status()
        assert (status["state"], status["ready"]) == ("failed", False)
        register(registry_in_process, "colours", model_file, alias="production")
        repo.refresh()
        assert repo.not_ready_because() == []


def test_nothing_configured_is_not_ready_and_says_what_to_set(repository: Repository) -> None:
    with repository() as repo:
        assert repo.not_ready_because() == ["no model configured: set VISIONDOCK_SCORING_MODEL, "
                                            "VISIONDOCK_SCORING_MODELS or VISIONDOCK_SCORING_MODEL_PATH"]
        with pytest.raises(Unavailable, match="no model configured"):
            repo.resolve()


def test_discovery_serves_each_model_with_the_alias_and_is_ready_before_any(
        repository: Repository, registry_in_process: RegistryClient, model_file: Path) -> None:
    with repository(scoring_models="*@production") as repo:
        assert repo.not_ready_because() == [] and repo.names() == []
        with pytest.raises(Unavailable, match="no registry model has the alias production"):
            repo.resolve()
        register(registry_in_process, "shelf", model_file, alias="production")
        register(registry_in_process, "flowers", model_file, alias="production")
        assert repo.discover() == ["flowers", "shelf"]
        assert repo.default_name() == "flowers" and serving(repo, "shelf").name == "shelf"
        assert repo.discover() == []


def test_the_memory_budget_unloads_the_least_recently_used_never_the_default(
        repository: Repository, registry_in_process: RegistryClient, model_file: Path) -> None:
    for name in ("flowers", "shelf", "tags"):
        register(registry_in_process, name, model_file, alias="production")
    with repository(scoring_models="flowers,shelf,tags", scoring_max_loaded_models=2) as repo:
        def states() -> dict[str, str]:
            return {m["name"]: m["state"] for m in repo.status()["models"]}

        assert states() == {"flowers": "loaded", "shelf": "loaded", "tags": "unloaded"}
        assert repo.not_ready_because() == []  # unloaded by the budget: it does not hold readiness back
        serving(repo, "tags")
        assert states() == {"flowers": "loaded", "shelf": "unloaded", "tags": "loaded"}
        serving(repo, "shelf")
        assert states() == {"flowers": "loaded", "shelf": "loaded", "tags": "unloaded"}
        assert repo.status()["models"][2]["recently_used_rank"] == 1


def test_a_model_required_on_a_gpu_that_got_the_cpu_keeps_the_service_unready(
        repository: Repository, model_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    # ONNX Runtime's CPU build here: the session cannot get CUDA, whatever the settings expect.
    with caplog.at_level(logging.ERROR, logger="services.scoring.served_model"), \
            repository(scoring_model_path=model_file, scoring_require_gpu=True) as repo:
        [why] = repo.not_ready_because()
        assert "runs on CPUExecutionProvider, not CUDAExecutionProvider (VISIONDOCK_SCORING_REQUIRE_GPU" in why
        assert repo.device.known and repo.device.gpu is False
        status = repo.resolve().status()
        assert (status["state"], status["ready"]) == ("loaded", False)
    [line] = [r.getMessage() for r in caplog.records if "VISIONDOCK_SCORING_REQUIRE_GPU" in r.getMessage()]
    assert "runs on CPUExecutionProvider" in line and "not ready" in line
    with repository(scoring_model_path=model_file) as repo:  # a CPU allowed: ready
        assert repo.not_ready_because() == []


def test_the_cache_keeps_what_is_served_and_the_last_few_files(repository: Repository,
                                                               registry_in_process: RegistryClient,
                                                               model_file: Path) -> None:
    with repository(scoring_model="colours", scoring_cache_keep_files=1, scoring_variant="fp32") as repo:
        for gain in (8, 9, 10, 11, 12):
            version = register(registry_in_process, "colours",
                               tiny_models.classifier(model_file.with_name(f"v{gain}.onnx"), gain=gain),
                               alias="production")
            repo.refresh()
            assert serving(repo).version == version
        kept = sorted(p.name.split("-")[0] for p in repo.cache.root.glob("colours/*.onnx"))
        assert kept == [str(version - 1), str(version)]  # the one served and the last other one
