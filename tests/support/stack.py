"""The three HTTP services as real uvicorn processes on free ports (cli.local_services), for the tests
that need them: one shared set per session (the `services` fixture in tests/conftest.py), or a
set of a test module's own where it needs other settings or stops a service."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from cli.local_services import LocalServices
from visiondock.settings import LOCAL_DEV_API_KEY

# The model the shared set's scoring service follows (its production alias).
SERVED_MODEL = "e2e-shapes"
SHARED_ENV = {"VISIONDOCK_SCORING_POLL_SECONDS": "0.5", "VISIONDOCK_LOG_FORMAT": "json"}


@contextmanager
def running_services(home: Path, *, scoring_model: str = "", env: Mapping[str, str] | None = None,
                     ) -> Iterator[LocalServices]:
    """Start annotation, registry and scoring under `home`, all accepting and presenting the local key."""
    with LocalServices.on_free_ports(home, scoring_model=scoring_model, extra_env={
            "VISIONDOCK_API_KEYS": LOCAL_DEV_API_KEY, "VISIONDOCK_API_KEY": LOCAL_DEV_API_KEY, **(env or {})}) as local:
        yield local
