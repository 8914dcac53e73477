"""The labeling app in Debian's chromium (driven by playwright) against the services as real
uvicorn processes; axe-core (tests/browser/node_modules) checks each page's accessibility."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.local_services import LocalServices
from tests.support.browser import chromium, offline_page
from tests.support.emulators import unavailable
from tests.support.stack import running_services

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "labeling"
AXE_SCRIPT = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
# The model the scoring service follows: the classification project the tests label and train.
APP_PROJECT = "shapes-app"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium with axe-core at hand (skipped without it, failed on CI)."""
    if not AXE_SCRIPT.exists():
        unavailable(f"{AXE_SCRIPT} is missing; run `npm ci` in tests/browser (make test does)")
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def app_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    # Every prediction is captured for review, so the review queue fills with real ones.
    env = {"VISIONDOCK_SCORING_POLL_SECONDS": "0.5", "VISIONDOCK_SCORING_CAPTURE_RATE": "1.0",
           "VISIONDOCK_TRAINING_LAUNCHER": "local"}
    with running_services(tmp_path_factory.mktemp("labeling-home"), scoring_model=APP_PROJECT, env=env) as local:
        yield local


def open_page(browser: Any, base_url: str, outside: list[str]) -> Any:
    """A page that may reach the annotation service only; anything else is refused and recorded."""
    return offline_page(browser, base_url, outside, height=860)


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical accessibility violations axe-core finds in the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE_SCRIPT))
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result if v["impact"] in ("serious", "critical")]


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
