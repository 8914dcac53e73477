"""`python -m services.<name>`: serve one service app under uvicorn.

With several workers, each worker process listens on its own socket bound to the same
port with SO_REUSEPORT, and the kernel spreads new connections over them. uvicorn's own
workers share one socket instead, and whichever wakes first accepts: under `make
bench-variants` the keep-alive connections of one load generator nearly all went to one of
two workers, which then served fewer images/s than one worker; with a socket each, two
workers served more (the figures: docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from visiondock.settings import DEFAULT_PORTS

log = logging.getLogger("visiondock.serve")
RESTART_PAUSE_SECONDS = 1.0  # between restarts of a worker that keeps failing


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (`localhost` or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def settings_error(exc: ValidationError) -> str:
    """A settings error as the variables a person sets: `VISIONDOCK_SCORING_VARIANT: Input should be ...`."""
    lines = [f"VISIONDOCK_{'_'.join(map(str, error['loc'])).upper()}: {error['msg']}" for error in exc.errors()]
    return "invalid setting(s):\n  " + "\n  ".join(lines)


def serve(service: str, create_app: Callable[[], FastAPI], argv: list[str] | None = None, *,
          workers: int | Callable[[], int] = 1) -> None:
    """Serve `create_app()`; `workers`: how many processes, or what says so once the settings are read."""
    parser = argparse.ArgumentParser(prog=f"python -m services.{service}",
                                     description=f"Serve the VisionDock {service} API.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORTS[service])
    args = parser.parse_args(argv)
    try:
        app = create_app()
        workers = workers() if callable(workers) else workers
    except ValidationError as exc:
        parser.exit(2, f"error: {settings_error(exc)}\n")
    if app.state.settings.uses_local_key and not is_loopback(args.host):
        parser.exit(2, f"error: refusing to listen on {args.host} with the built-in local development key; set "
                       "VISIONDOCK_API_KEYS or VISIONDOCK_API_KEY_ENTRIES (see docs/security.md)\n")
    # Logging is configured by the app from settings; uvicorn must not install its own.
    options = {"host": args.host, "port": args.port, "log_config": None, "access_log": False,
               "timeout_graceful_shutdown": 10}
    if workers > 1:
        # Each worker builds its own app: uvicorn imports the factory by name.
        pool = WorkerPool(f"{create_app.__module__}:{create_app.__name__}", workers, options)
        try:
            pool.check_port()
        except OSError as exc:
            parser.exit(1, f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}\n")
        pool.run()
    else:
        uvicorn.run(app, **options)


def listening_socket(host: str, port: int, *, listen: bool = True, shared: bool = True) -> socket.socket:
    """A socket on host:port; `shared`: one that other processes of this user may also bind
    (SO_REUSEPORT). An unshared bind fails while any process listens on the port."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host.strip("[]"), port))
        if listen:
            sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _run_worker(factory: str, options: dict[str, Any], parent: int) -> None:
    """One worker process: its own socket on the shared port, and uvicorn serving the app on it."""
    def watch_parent() -> None:
        # A supervisor killed outright (SIGKILL) cannot stop its workers: they stop themselves.
        while os.getppid() == parent:
            time.sleep(1.0)
        signal.raise_signal(signal.SIGTERM)

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    sock = listening_socket(options["host"], options["port"])
    # A second SIGTERM (the supervisor forwards the one its process group also got) is harmless:
    # uvicorn only cuts the graceful shutdown short on a second SIGINT.
    uvicorn.Server(uvicorn.Config(factory, factory=True, **options)).run(sockets=[sock])


class WorkerPool:
    """Starts `count` worker processes, restarts one that dies, and on SIGTERM or SIGINT passes
    SIGTERM on to every worker (each drains its requests) and waits for them."""

    def __init__(self, factory: str, count: int, options: dict[str, Any]) -> None:
        self.factory, self.count, self.options = factory, count, options
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[BaseProcess] = []
        self.stopping = threading.Event()

    def _start(self) -> BaseProcess:
        worker = self.context.Process(target=_run_worker, args=(self.factory, self.options, os.getpid()),
                                      name="visiondock-worker")
        worker.start()
        return worker

    def _stop(self, sig: int, frame: FrameType | None) -> None:
        self.stopping.set()

    def check_port(self) -> None:
        """OSError when the port is taken: said at once, not in a loop of dying workers.

        The bind is unshared (and not listening, so no connection waits on it): a shared one
        would succeed beside another server of this user that listens with SO_REUSEPORT, and
        the two would silently split the traffic.
        """
        listening_socket(self.options["host"], self.options["port"], listen=False, shared=False).close()

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT (`check_port` first says whether the port is free)."""
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.workers = [self._start() for _ in range(self.count)]
            log.info("serving on %s:%s with %d worker processes", self.options["host"], self.options["port"],
                     self.count)
            while not self.stopping.wait(0.5):
                for index, worker in enumerate(self.workers):
                    if not worker.is_alive() and not self.stopping.is_set():
                        log.warning("worker process %s exited with code %s; starting another", worker.pid,
                                    worker.exitcode)
                        time.sleep(RESTART_PAUSE_SECONDS)
                        self.workers[index] = self._start()
        finally:
            for worker in self.workers:
                if worker.is_alive() and worker.pid is not None:
                    os.kill(worker.pid, signal.SIGTERM)
            deadline = time.monotonic() + float(self.options.get("timeout_graceful_shutdown", 10)) + 5
            for worker in self.workers:
                worker.join(max(0.0, deadline - time.monotonic()))
                if worker.is_alive():
                    worker.kill()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
