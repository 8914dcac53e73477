"""The three HTTP services as real uvicorn processes on free ports, shared by the e2e tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cli.launcher import LocalServices
from tests.support.stack import running_services
from visiondock.clients import AnnotationClient, RegistryClient, ScoringClient
from visiondock.settings import LOCAL_DEV_API_KEY

E2E_MODEL = "e2e-shapes"


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    with running_services(tmp_path_factory.mktemp("visiondock-home"), scoring_model=E2E_MODEL,
                          env={"VISIONDOCK_SCORING_POLL_SECONDS": "0.5", "VISIONDOCK_LOG_FORMAT": "json"}) as local:
        yield local


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
