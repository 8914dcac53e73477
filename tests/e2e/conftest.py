"""The three HTTP services as real uvicorn processes on free ports, shared by the e2e tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from visiondock.clients import AnnotationClient, RegistryClient, ScoringClient
from visiondock.launcher import SERVICES, LocalServices, free_port
from visiondock.settings import LOCAL_DEV_API_KEY

E2E_MODEL = "e2e-shapes"


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    home: Path = tmp_path_factory.mktemp("visiondock-home")
    local = LocalServices(
        home=home,
        ports={name: free_port() for name in SERVICES},
        scoring_model=E2E_MODEL,
        extra_env={"VISIONDOCK_SCORING_POLL_SECONDS": "0.5", "VISIONDOCK_API_KEYS": LOCAL_DEV_API_KEY,
                   "VISIONDOCK_API_KEY": LOCAL_DEV_API_KEY, "VISIONDOCK_LOG_FORMAT": "json"},
    )
    local.start()
    yield local
    local.stop()


@pytest.fixture(scope="session")
def annotation(services: LocalServices) -> Iterator[AnnotationClient]:
    with AnnotationClient(services.url("annotation"), LOCAL_DEV_API_KEY) as client:
        yield client


@pytest.fixture(scope="session")
def registry(services: LocalServices) -> Iterator[RegistryClient]:
    with RegistryClient(services.url("registry"), LOCAL_DEV_API_KEY) as client:
        yield client


@pytest.fixture(scope="session")
def scoring(services: LocalServices) -> Iterator[ScoringClient]:
    with ScoringClient(services.url("scoring"), LOCAL_DEV_API_KEY) as client:
        yield client
