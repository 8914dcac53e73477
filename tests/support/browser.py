"""Debian's chromium driven by playwright, for the tests that look at pages."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from tests.support.emulators import unavailable

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium (skipped without chromium or playwright, failed on CI)."""
    executable = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    if executable is None:
        unavailable("chromium is not installed (make test installs it: apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def offline_page(browser: Any, url: str, outside: list[str], *, height: int = 900) -> Any:
    """A page that may reach only the server of `url` (and its own blob: URLs); any other request is
    refused and recorded in `outside`, so a test shows the page needs nothing from elsewhere."""
    server = urlsplit(url).netloc
    page = browser.new_page(viewport={"width": 1280, "height": height})

    def only_the_server(route: Any) -> None:
        if urlsplit(route.request.url).netloc == server or route.request.url.startswith("blob:"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_server)
    return page
