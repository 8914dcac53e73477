"""The page code of the labeling app and the dashboard: the one shared module (visiondock/pages/common.js)
served by both services from the same file, the labeler's store checked by Node's test runner
(tests/js), and the JavaScript linted and format-checked by Biome (tests/browser/package.json)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.annotation.app import create_app as create_annotation_app
from services.registry.app import create_app as create_registry_app
from tests.support.emulators import unavailable
from visiondock.pages import PAGES
from visiondock.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BIOME = ROOT / "tests" / "browser" / "node_modules" / ".bin" / "biome"


def test_both_services_serve_the_one_common_module(tmp_path: Path) -> None:
    common = (PAGES / "common.js").read_bytes()
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING")
    with TestClient(create_annotation_app(settings)) as annotation, \
            TestClient(create_registry_app(settings)) as registry:
        for client, path in ((annotation, "/app/common"), (registry, "/dashboard/common")):
            served = client.get(f"{path}/common.js")  # no key: page code holds no data
            assert served.status_code == 200 and served.content == common
            assert served.headers["content-type"].startswith("text/javascript")
            assert served.headers["cache-control"] == "no-cache"
            for missing in ("nothing.js", "__init__.py", "..%2F__init__.py", ".hidden.js"):
                assert client.get(f"{path}/{missing}").status_code == 404, missing
        # Neither page carries its own copy of what the module provides.
        assert "/app/common/common.js" in annotation.get("/app/static/api.js").text
        dashboard = registry.get("/dashboard/assets/dashboard.js").text
        assert "/dashboard/common/common.js" in dashboard
        for copy in ("function h(", "class ApiError", "function api(", "visiondock.apiKey", "const percent"):
            assert copy not in dashboard and copy not in annotation.get("/app/static/ui.js").text


@pytest.mark.processes
def test_the_labeler_store_and_the_common_module_pass_their_node_tests() -> None:
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed; the page code's unit tests need Node.js 20+")
    run = subprocess.run([node, "--test", "tests/js/"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout


@pytest.mark.processes
def test_the_page_code_is_linted_and_formatted() -> None:
    if not BIOME.exists():
        unavailable(f"{BIOME} is missing; run `npm ci` in tests/browser (make test and make check do)")
    run = subprocess.run([str(BIOME), "check", "--no-errors-on-unmatched", "."], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
