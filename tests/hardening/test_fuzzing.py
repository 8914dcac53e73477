"""Schemathesis against each service as a real uvicorn process: examples, coverage, fuzzing and
stateful sequences along the OpenAPI links, with a key. Every answer must be no server error,
a status the operation documents, with the documented content type and schema.

Bounded for CI (`VISIONDOCK_FUZZ_EXAMPLES` per operation, default 12; about a minute per service
on two busy cores) and seeded, so a run is repeatable; `VISIONDOCK_FUZZ_SEED` explores others.
`make test` runs it; `make test-fast` leaves it out (marker `fuzz`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.local_services import LocalServices
from tests.scoring import tiny_models
from tests.support.stack import running_services
from visiondock.settings import LOCAL_DEV_API_KEY

pytestmark = pytest.mark.fuzz

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
EXAMPLES = os.environ.get("VISIONDOCK_FUZZ_EXAMPLES", "12")
SEED = os.environ.get("VISIONDOCK_FUZZ_SEED", "1")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    home = tmp_path_factory.mktemp("fuzz")
    model = tiny_models.classifier(home / "colours.onnx", model_name="colours", model_version="3")
    # The scoring service serves a file (ready at once); no capture, so fuzzed predictions stay in scoring.
    with running_services(home, env={"VISIONDOCK_SCORING_MODEL_PATH": str(model), "VISIONDOCK_LOG_LEVEL": "ERROR",
                                     "VISIONDOCK_SCORING_SKILL_FETCH_URLS": "false"}) as services:
        yield services


@pytest.mark.parametrize("service", ["annotation", "registry", "scoring"])
def test_schemathesis_finds_nothing(stack: LocalServices, service: str, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    command = [str(st), "run", f"{stack.url(service)}/openapi.json", "--header", f"X-API-Key: {LOCAL_DEV_API_KEY}",
               "--checks", CHECKS, "--max-examples", EXAMPLES, "--seed", SEED, "--generation-database", "none",
               # One worker: CPython 3.11's ast.parse is not safe across the threads hypothesis would use.
               "--workers", "1", "--request-timeout", "30", "--no-color", "--report", "junit",
               "--report-dir", str(tmp_path)]
    # In a scratch directory: schemathesis keeps a cache of what it found where it runs.
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path)
    output = run.stdout + run.stderr
    summary = output[output.rfind("SUMMARY"):] if "SUMMARY" in output else output[-3000:]
    assert run.returncode == 0, f"schemathesis against {service} found problems:\n{output[-12000:]}"
    assert "passed" in summary and "Stateful" in summary, summary
