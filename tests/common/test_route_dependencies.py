"""Every dependency of every route runs on the event loop.

FastAPI runs a plain `def` dependency in its thread pool: a thread hand-off per
dependency per request, which under load took a quarter of the scoring event loop's
time for lookups that never block. Dependencies are `async def` (or objects whose
`__call__` is); blocking work belongs in the route, sent off the loop explicitly.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from services.annotation.app import create_app as create_annotation
from services.registry.app import create_app as create_registry
from services.scoring.app import create_app as create_scoring
from services.scoring.settings import ScoringSettings
from tests.scoring import tiny_models
from visiondock.settings import Settings


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # an included router, kept whole by FastAPI
            yield from _api_routes(route.original_router.routes)


def _dependencies(app: FastAPI) -> Iterator[tuple[str, Any]]:
    for route in _api_routes(app.routes):
        stack = list(route.dependant.dependencies)
        while stack:
            dependency = stack.pop()
            stack.extend(dependency.dependencies)
            yield f"{','.join(sorted(route.methods))} {route.path}", dependency.call


def _runs_on_the_loop(call: Any) -> bool:
    if inspect.iscoroutinefunction(call):
        return True
    return not inspect.isfunction(call) and inspect.iscoroutinefunction(type(call).__call__)


@pytest.mark.parametrize("service", ["annotation", "registry", "scoring"])
def test_no_route_dependency_runs_in_the_thread_pool(service: str, tmp_path: Path) -> None:
    common = {"home": tmp_path, "log_format": "text", "log_level": "WARNING"}
    if service == "scoring":
        model = tiny_models.classifier(tmp_path / "model.onnx")
        app = create_scoring(ScoringSettings(scoring_model_path=model, **common))
    else:
        app = (create_annotation if service == "annotation" else create_registry)(Settings(**common))
    found = list(_dependencies(app))
    assert len(found) > 20  # the walk reaches the routes' dependencies
    synchronous = sorted({f"{route}: {getattr(call, '__qualname__', call)}" for route, call in found
                          if not _runs_on_the_loop(call)})
    assert not synchronous, "plain `def` dependencies (FastAPI runs them in its thread pool):\n" + \
        "\n".join(synchronous)
