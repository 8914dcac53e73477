"""The three HTTP services as real uvicorn processes on free ports, for the tests that need them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from cli.launcher import SERVICES, LocalServices, free_port
from visiondock.settings import LOCAL_DEV_API_KEY


@contextmanager
def running_services(home: Path, *, scoring_model: str = "", env: Mapping[str, str] | None = None,
                     ) -> Iterator[LocalServices]:
    """Start annotation, registry and scoring under `home`, all accepting and presenting the local key."""
    services = LocalServices(
        home=home, ports={name: free_port() for name in SERVICES}, scoring_model=scoring_model,
        extra_env={"VISIONDOCK_API_KEYS": LOCAL_DEV_API_KEY, "VISIONDOCK_API_KEY": LOCAL_DEV_API_KEY, **(env or {})})
    services.start()
    try:
        yield services
    finally:
        services.stop()
