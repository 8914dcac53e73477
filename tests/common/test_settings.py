from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from visiondock.settings import LOCAL_DEV_API_KEY, Settings, available_cpus
from visiondock.web import keyring_of


def test_defaults_are_embedded_and_local(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("VISIONDOCK_HOME", str(tmp_path))
    settings = Settings()
    assert settings.blob_backend == "local" and settings.document_backend == "sqlite"
    assert settings.resolved_blob_root == tmp_path / "blobs"
    assert settings.resolved_sqlite_path == tmp_path / "documents.sqlite3"
    assert settings.uses_local_key


def test_api_keys_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONDOCK_API_KEYS", "first-key, second-key,")
    assert Settings().api_keys == ["first-key", "second-key"]


def test_production_refuses_the_local_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONDOCK_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="VISIONDOCK_API_KEY must be set"):
        Settings()
    monkeypatch.setenv("VISIONDOCK_API_KEY", "a-real-key")
    # A process that accepts no keys (a trainer, the command line) may run so; a service may not start.
    problem = Settings().accepted_keys_problem()
    assert problem is not None and "real keys in production" in problem
    with pytest.raises(ValueError, match="real keys in production"):
        keyring_of(Settings())
    monkeypatch.setenv("VISIONDOCK_API_KEYS", "a-real-key")
    assert Settings().api_keys == ["a-real-key"] and Settings().accepted_keys_problem() is None
    assert LOCAL_DEV_API_KEY not in Settings().api_keys


def test_azure_backends_need_their_connection_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONDOCK_BLOB_BACKEND", "azure")
    with pytest.raises(ValidationError, match="AZURE_STORAGE_CONNECTION_STRING"):
        Settings()
    monkeypatch.delenv("VISIONDOCK_BLOB_BACKEND")
    monkeypatch.setenv("VISIONDOCK_DOCUMENT_BACKEND", "cosmos")
    with pytest.raises(ValidationError, match="COSMOS_ENDPOINT"):
        Settings()


@pytest.mark.parametrize(("cpu_max", "limit"), [("max 100000", None), ("150000 100000", 2), ("50000 100000", 1),
                                                ("400000 100000", 4), ("garbled", None)])
def test_available_cpus_follow_a_pods_cpu_limit(tmp_path: Path, cpu_max: str, limit: int | None) -> None:
    affinity = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text(cpu_max + "\n")
    assert available_cpus(quota) == (affinity if limit is None else min(affinity, limit))
    assert available_cpus(tmp_path / "no-cgroup-v2") == affinity

