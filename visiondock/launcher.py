"""Runs the three HTTP services as local uvicorn processes on one machine.

Used by `visiondock up`, `visiondock demo` and the end-to-end tests: every service is
a real process serving HTTP, with the embedded storage under one home directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from visiondock.settings import DEFAULT_PORTS

SERVICES = ("annotation", "registry", "scoring")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LaunchError(RuntimeError):
    pass


@dataclass
class LocalServices:
    home: Path
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    scoring_model: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://{self.host}:{self.ports[service]}"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    def environment(self) -> dict[str, str]:
        env = {**os.environ, **self.extra_env}
        env.update({
            "VISIONDOCK_HOME": str(self.home),
            "VISIONDOCK_ANNOTATION_URL": self.url("annotation"),
            "VISIONDOCK_REGISTRY_URL": self.url("registry"),
            "VISIONDOCK_SCORING_URL": self.url("scoring"),
            "VISIONDOCK_SCORING_MODEL": self.scoring_model,
        })
        return env

    def start(self, *, timeout: float = 60.0) -> None:
        """Start every service and wait until each answers its liveness probe."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        for service in SERVICES:
            port = self.ports[service]
            if _port_in_use(self.host, port):
                self.stop()
                raise LaunchError(f"port {port} for the {service} service is taken; stop what uses it or choose "
                                  f"another port (--{service}-port)")
            log_file = (self.log_dir / f"{service}.log").open("ab")
            self.processes[service] = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}", "--host", self.host, "--port", str(port)],
                env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )
            log_file.close()
        self.wait_live(timeout=timeout)

    def wait_live(self, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(SERVICES)
        while pending:
            for service in sorted(pending):
                self.check_running(service)
                try:
                    if httpx.get(self.url(service) + "/healthz", timeout=1.0).status_code == 200:
                        pending.discard(service)
                except httpx.HTTPError:
                    pass
            if pending and time.monotonic() > deadline:
                self.stop()
                raise LaunchError(f"{', '.join(sorted(pending))} did not start within {timeout:.0f} s; "
                                  f"see the logs in {self.log_dir}")
            if pending:
                time.sleep(0.2)

    def check_running(self, service: str) -> None:
        process = self.processes.get(service)
        if process is not None and process.poll() is not None:
            tail = _tail(self.log_dir / f"{service}.log")
            self.stop()
            raise LaunchError(f"the {service} service exited with code {process.returncode}:\n{tail}")

    def first_exited(self) -> str | None:
        for service, process in self.processes.items():
            if process.poll() is not None:
                return service
        return None

    def stop(self, *, grace: float = 10.0) -> None:
        """SIGTERM every service (uvicorn drains in-flight requests), SIGKILL what is left after `grace`."""
        for process in self.processes.values():
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        self.processes.clear()

    def __enter__(self) -> LocalServices:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, sig)


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
