"""`python -m services.<name>`: serve one service app under uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from visiondock.settings import DEFAULT_PORTS


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (`localhost` or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(service: str, create_app: Callable[[], FastAPI], argv: list[str] | None = None, *, workers: int = 1) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m services.{service}",
                                     description=f"Serve the VisionDock {service} API.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORTS[service])
    args = parser.parse_args(argv)
    app = create_app()
    if app.state.settings.uses_local_key and not is_loopback(args.host):
        parser.exit(2, f"error: refusing to listen on {args.host} with the built-in local development key; set "
                       "VISIONDOCK_API_KEYS or VISIONDOCK_API_KEY_ENTRIES (see docs/security.md)\n")
    # Logging is configured by the app from settings; uvicorn must not install its own.
    options = {"host": args.host, "port": args.port, "log_config": None, "access_log": False,
               "timeout_graceful_shutdown": 10}
    if workers > 1:
        # Worker processes share the port; each builds its own app (uvicorn imports the factory by name).
        uvicorn.run(f"{create_app.__module__}:{create_app.__name__}", factory=True, workers=workers, **options)
    else:
        uvicorn.run(app, **options)
