"""Runs the HTTP services as local uvicorn processes on one machine.

The one launcher of `visiondock up`, `visiondock demo`, the tests that need real processes
and the benchmarks: `LocalServices` starts the three services with the embedded storage
under one home directory; `ServiceProcess` is any one of them (or any module serving HTTP
that takes `--host` and `--port`), so a test or a benchmark can start one more with its own
settings beside a running set.

Unless VISIONDOCK_RUN_KEY_SECRET (or its file) is set, each `LocalServices` makes a run key secret of
its own and gives it to the registry and the annotation service only: the registry signs the key of
each trainer it launches with it, the annotation service checks it (the scoring service needs none).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from visiondock.settings import DEFAULT_PORTS

SERVICES = ("annotation", "registry", "scoring")
# The services that issue (registry) and accept (annotation) the keys of launched trainers.
RUN_KEY_SERVICES = ("annotation", "registry")
RUN_KEY_SETTINGS = ("VISIONDOCK_RUN_KEY_SECRET", "VISIONDOCK_RUN_KEY_SECRET_FILE")
SERVE_EVERY_PRODUCTION_MODEL = "*@production"  # VISIONDOCK_SCORING_MODELS of `visiondock up` without --model
# How often a starting process is probed: start -> ready is measured with it (bench/scoring.py).
PROBE_INTERVAL_SECONDS = 0.02


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LaunchError(RuntimeError):
    pass


@dataclass
class ServiceProcess:
    """One `python -m <module> --host H --port P` process, its output appended to `log_path`."""

    name: str
    url: str
    log_path: Path
    popen: subprocess.Popen[bytes]
    started: float = field(default_factory=time.perf_counter)  # perf_counter() when it was spawned
    _terminating: bool = field(default=False, init=False)

    @classmethod
    def spawn(cls, module: str, *, name: str, port: int, env: Mapping[str, str], log_dir: Path,
              host: str = "127.0.0.1", args: Sequence[str] = (), cwd: Path | None = None) -> ServiceProcess:
        """Start the process without waiting for it (see `wait_ready`)."""
        if _port_in_use(host, port):
            raise LaunchError(f"port {port} for the {name} service is taken; stop what uses it or choose "
                              f"another port (--{name}-port)")
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{name}.log"
        with log_path.open("ab") as log_file:
            started = time.perf_counter()
            # A session of its own: stopping it reaches the workers uvicorn or ONNX Runtime may start.
            popen = subprocess.Popen([sys.executable, "-m", module, *args, "--host", host, "--port", str(port)],
                                     env=dict(env), cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return cls(name, f"http://{host}:{port}", log_path, popen, started)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exited(self) -> bool:
        return self.popen.poll() is not None

    def answers(self, probe: str = "/healthz") -> bool:
        """Whether `probe` answers 200 now; raises LaunchError (with the log's tail) if the process died."""
        if self.exited():
            raise LaunchError(f"the {self.name} service exited with code {self.popen.returncode}:\n"
                              f"{_tail(self.log_path)}")
        try:
            return httpx.get(self.url + probe, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, *, probe: str = "/healthz", timeout: float = 60.0) -> None:
        """Wait until `probe` answers 200 (`/healthz`: live; `/readyz`: ready to work)."""
        wait_all([self], probe=probe, timeout=timeout)

    def memory_bytes(self) -> tuple[int, int]:
        """(resident now, peak resident) in bytes, from /proc; zeros where it cannot be read."""
        values = dict.fromkeys(("VmRSS", "VmHWM"), 0)
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in values:
                    values[key] = int(rest.split()[0]) * 1024
        return values["VmRSS"], values["VmHWM"]

    def terminate(self) -> None:
        """SIGTERM, once: uvicorn drains in-flight requests on the first, but quits at once on a second."""
        if not self._terminating and self.popen.poll() is None:
            self._terminating = True
            _signal_group(self.popen, signal.SIGTERM)

    def stop(self, *, grace: float = 10.0) -> None:
        """Terminate, then SIGKILL if it is still there after `grace` seconds."""
        self.terminate()
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(self.popen, signal.SIGKILL)
            self.popen.wait()


def wait_all(processes: Sequence[ServiceProcess], *, probe: str = "/healthz", timeout: float = 60.0) -> None:
    """Wait until every process answers `probe`; on failure stop them all and raise LaunchError."""
    deadline = time.monotonic() + timeout
    pending = list(processes)
    try:
        while pending:
            pending = [process for process in pending if not process.answers(probe)]
            if pending and time.monotonic() > deadline:
                names = ", ".join(process.name for process in pending)
                logs = ", ".join(str(process.log_path) for process in pending)
                raise LaunchError(f"{names} did not answer {probe} within {timeout:.0f} s; see {logs}")
            if pending:
                time.sleep(PROBE_INTERVAL_SECONDS)
    except LaunchError:
        for process in processes:
            process.stop()
        raise


@dataclass
class LocalServices:
    """Annotation, registry and scoring on this machine, with their data under `home`."""

    home: Path
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    scoring_model: str = ""
    scoring_models: str = ""  # VISIONDOCK_SCORING_MODELS, e.g. `*@production`: every model with that alias
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    # This set's own run key secret, used when none is configured.
    run_key_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48), repr=False)

    @classmethod
    def on_free_ports(cls, home: Path, *, scoring_model: str = "",
                      extra_env: Mapping[str, str] | None = None) -> LocalServices:
        return cls(home=home, ports={name: free_port() for name in SERVICES}, scoring_model=scoring_model,
                   extra_env=dict(extra_env or {}))

    def url(self, service: str) -> str:
        return f"http://{self.host}:{self.ports[service]}"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    def environment(self, service: str | None = None) -> dict[str, str]:
        """The settings of `service` (None: what every service shares, without the run key secret)."""
        # One scoring worker on one machine, unless asked: several split the refresh that a promotion sends
        # (only one worker hears it; the others follow at their next poll), and share the cores with the
        # other services anyway.
        env = {"VISIONDOCK_SCORING_WORKERS": "1", **os.environ, **self.extra_env}
        if service in RUN_KEY_SERVICES:
            if not any(env.get(name) for name in RUN_KEY_SETTINGS):
                env["VISIONDOCK_RUN_KEY_SECRET"] = self.run_key_secret
        else:
            for name in RUN_KEY_SETTINGS:
                env.pop(name, None)
        env.update({
            "VISIONDOCK_HOME": str(self.home),
            "VISIONDOCK_ANNOTATION_URL": self.url("annotation"),
            "VISIONDOCK_REGISTRY_URL": self.url("registry"),
            "VISIONDOCK_SCORING_URL": self.url("scoring"),
            "VISIONDOCK_SCORING_MODEL": self.scoring_model,
        })
        if self.scoring_models:
            env["VISIONDOCK_SCORING_MODELS"] = self.scoring_models
        return env

    def start(self, *, timeout: float = 60.0) -> None:
        """Start every service and wait until each answers its liveness probe."""
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            for service in SERVICES:
                self.processes[service] = ServiceProcess.spawn(
                    f"services.{service}", name=service, host=self.host, port=self.ports[service],
                    env=self.environment(service), log_dir=self.log_dir)
        except LaunchError:
            self.stop()
            raise
        try:
            wait_all(list(self.processes.values()), timeout=timeout)
        except LaunchError:
            self.processes.clear()
            raise

    @contextmanager
    def another(self, service: str, name: str, *, env: Mapping[str, str] | None = None,
                probe: str = "/healthz", timeout: float = 60.0) -> Iterator[ServiceProcess]:
        """One more process of `service` beside these, on a free port, with these settings and `env` on top."""
        process = ServiceProcess.spawn(f"services.{service}", name=name, host=self.host, port=free_port(self.host),
                                       env={**self.environment(service), **(env or {})}, log_dir=self.log_dir)
        try:
            process.wait_ready(probe=probe, timeout=timeout)
            yield process
        finally:
            process.stop()

    def first_exited(self) -> str | None:
        for service, process in self.processes.items():
            if process.exited():
                return service
        return None

    def stop(self, *, grace: float = 10.0) -> None:
        """Stop every service: SIGTERM to all first, so they drain side by side, then wait for each."""
        for process in self.processes.values():
            process.terminate()
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            process.stop(grace=max(0.1, deadline - time.monotonic()))
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
