"""Local emulator servers for the Azure storage backends' tests.

Azurite stands in for Blob Storage and @vercel/cosmosdb-server for Cosmos DB; both are
npm packages declared in tests/emulators/package.json (`npm install` there). Each server
runs as a child process in its own process group on a free port of 127.0.0.1, and
`stop()` ends the whole group. On Linux the child also gets SIGTERM if the test process
dies without cleaning up, so no server outlives its test run.

Without node or the packages the Azure tests are skipped, except on CI (`CI=true`),
where they must run and so fail instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from cli.local_services import free_port

EMULATORS_DIR = Path(__file__).resolve().parent.parent / "emulators"
BIN_DIR = EMULATORS_DIR / "node_modules" / ".bin"
HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0

# Azurite's well-known development account.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
# The Cosmos DB emulator's well-known key; cosmosdb-server accepts any key.
COSMOS_EMULATOR_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)


class EmulatorUnavailableError(RuntimeError):
    """node or an emulator package is not installed."""


def running_on_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip a test that needs an emulator, or fail it on CI, where every test must run."""
    if running_on_ci():
        pytest.fail(f"{reason}. CI=true: the Azure backend tests must run, not be skipped", pytrace=False)
    pytest.skip(reason)


def find_emulator(name: str) -> tuple[str, Path]:
    """The node executable and the emulator's script in tests/emulators/node_modules/.bin."""
    node = shutil.which("node")
    if node is None:
        raise EmulatorUnavailableError("node is not installed; the Azure emulator tests need Node.js 20+")
    script = BIN_DIR / name
    if not script.exists():
        raise EmulatorUnavailableError(f"{script} is missing; run `npm install` in tests/emulators")
    return node, script


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask Linux for SIGTERM when the test process dies.
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class EmulatorProcess:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def log_tail(self, max_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """End the server and everything it started (its process group)."""
        if self.process.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, STOP_TIMEOUT_S)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue


def _wait_until_listening(server: EmulatorProcess, deadline: float) -> None:
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            status = server.process.returncode
            raise RuntimeError(f"{server.name} exited ({status}) while starting:\n{server.log_tail()}")
        try:
            with socket.create_connection((HOST, server.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(
        f"{server.name} did not accept connections within {START_TIMEOUT_S:.0f} s:\n{server.log_tail()}"
    )


def start_emulator(name: str, args: list[str], port: int, workdir: Path) -> EmulatorProcess:
    """Start `name` from node_modules/.bin with `args` and wait until it listens on `port`."""
    node, script = find_emulator(name)
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [node, str(script), *args],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, ended as a whole by stop()
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    server = EmulatorProcess(name=name, process=process, port=port, log_path=log_path)
    try:
        _wait_until_listening(server, time.monotonic() + START_TIMEOUT_S)
    except BaseException:
        server.stop()
        raise
    return server


def _start_on_free_port(name: str, make_args: Callable[[int], list[str]], workdir: Path) -> EmulatorProcess:
    # Another process may take the free port before the server binds it: try a few ports.
    attempts = 3
    for attempt in range(attempts):
        port = free_port(HOST)
        try:
            return start_emulator(name, make_args(port), port, workdir)
        except RuntimeError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class AzuriteBlobServer:
    server: EmulatorProcess

    @property
    def blob_endpoint(self) -> str:
        return f"http://{HOST}:{self.server.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )

    def stop(self) -> None:
        self.server.stop()


@dataclass(frozen=True)
class CosmosDbServer:
    server: EmulatorProcess
    key: str = COSMOS_EMULATOR_KEY

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.server.port}"

    def stop(self) -> None:
        self.server.stop()


def start_azurite_blob(workdir: Path) -> AzuriteBlobServer:
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)

    def args(port: int) -> list[str]:
        return [
            "--blobHost", HOST, "--blobPort", str(port), "--location", str(data_dir),
            "--skipApiVersionCheck", "--disableTelemetry", "--silent",
        ]

    return AzuriteBlobServer(_start_on_free_port("azurite-blob", args, workdir))


def start_cosmosdb_server(workdir: Path) -> CosmosDbServer:
    # Plain HTTP: about ten times faster per call than its self-signed HTTPS, and no TLS
    # verification to switch off. The store then needs endpoint discovery off.
    def args(port: int) -> list[str]:
        return ["--host", HOST, "--port", str(port), "--no-ssl"]

    return CosmosDbServer(_start_on_free_port("cosmosdb-server", args, workdir))
