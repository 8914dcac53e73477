"""The API docs of every service render in a real browser that may reach nothing but the service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.local_services import SERVICES, LocalServices
from tests.support.browser import chromium, offline_page

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def _open_offline(browser: Any, url: str, outside: list[str], errors: list[str]) -> Any:
    """A page whose requests to anywhere but the service are refused and recorded."""
    page = offline_page(browser, url, outside)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page


@pytest.mark.parametrize("service", SERVICES)
def test_swagger_ui_and_redoc_render_every_operation_without_internet(services: LocalServices, browser: Any,
                                                                       service: str) -> None:
    base = services.url(service)
    spec = httpx.get(f"{base}/openapi.json").json()
    # Swagger UI shows an operation once under each of its tags.
    operations = sum(len(operation.get("tags") or ["default"]) for methods in spec["paths"].values()
                     for method, operation in methods.items() if method in ("get", "put", "post", "patch", "delete"))
    ARTIFACTS.mkdir(exist_ok=True)
    outside: list[str] = []
    errors: list[str] = []

    page = _open_offline(browser, f"{base}/docs", outside, errors)
    page.goto(f"{base}/docs")
    page.wait_for_selector(".opblock", timeout=20_000)
    assert page.locator(".opblock").count() == operations
    assert page.locator(".info .title").inner_text().startswith(f"VisionDock {service}")
    page.screenshot(path=str(ARTIFACTS / f"docs-{service}.png"))
    page.close()

    page = _open_offline(browser, f"{base}/redoc", outside, errors)
    page.goto(f"{base}/redoc")
    page.wait_for_selector("[data-section-id^='operation/'], [id^='operation/']", state="attached", timeout=20_000)
    assert page.locator("h1").first.inner_text().startswith(f"VisionDock {service}")
    page.screenshot(path=str(ARTIFACTS / f"redoc-{service}.png"))
    page.close()

    assert outside == [], f"the docs pages asked for outside resources: {outside}"
    assert errors == [], f"the docs pages failed: {errors[:3]}"
