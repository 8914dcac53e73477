"""One permission table: every route declares its roles and scope, a service with an undeclared route
does not start, docs/security.md shows the table the code declares, and every route of every
service's OpenAPI document (and the app's registry proxy) refuses keys of the wrong role and keys
scoped elsewhere, on real service processes."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from cli.local_services import LocalServices
from cli.permissions import END, START, permission_table
from cli.permissions import main as permissions_main
from services.annotation.app import create_app as annotation_app
from services.registry.app import create_app as registry_app
from services.scoring.app import create_app as scoring_app
from services.scoring.settings import ScoringSettings
from tests.scoring import tiny_models
from visiondock.auth import ROLES, new_key
from visiondock.permissions import Permission, UndeclaredRouteError, service_permissions
from visiondock.settings import Settings
from visiondock.web import create_service_app, require_role

ROOT = Path(__file__).resolve().parents[2]
PROJECT = MODEL = "flowers"
OTHER = "secret"
# Keys by name: each role for everything and scoped to another project and model; flowers-scoped ones.
KEY_SPECS = [(f"{role}-all", role, "*") for role in ("predict", "label", "train")] + \
    [(f"{role}-other", role, "elsewhere") for role in ROLES] + \
    [(f"{role}-flowers", role, PROJECT) for role in ("predict", "label", "train")] + [("admin", "admin", "*")]
KEYS = {name: new_key(name, [role], [scope]) for name, role, scope in KEY_SPECS}


def headers(name: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[name][0]}


def _jpeg(colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), colour).save(buffer, "JPEG")
    return buffer.getvalue()


# -- the declarations hold at start ---------------------------------------------------------
def _service(tmp_path: Path, router: APIRouter, **extra: Any) -> FastAPI:
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING")
    return create_service_app(service="test", settings=settings, description="", routers=[router], **extra)


def test_a_route_that_declares_nothing_stops_the_service(tmp_path: Path) -> None:
    router = APIRouter(prefix="/v1")

    @router.get("/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    with pytest.raises(UndeclaredRouteError, match="GET /v1/forgotten: declares no role"):
        _service(tmp_path, router)
    # A route added after the factory built the app (as the labeling app's pages are) stops its start.
    app = _service(tmp_path, APIRouter())
    app.add_api_route("/v1/late", forgotten)
    with pytest.raises(UndeclaredRouteError, match="/v1/late"), TestClient(app):
        pass
    # Open only where the service says so, by path.
    assert any(p.path == "/v1/late" and p.open for p in service_permissions(_open(tmp_path, forgotten)))


def _open(tmp_path: Path, endpoint: Any) -> FastAPI:
    app = _service(tmp_path, APIRouter(), open_paths=("/v1/late",))
    app.add_api_route("/v1/late", endpoint)
    return app


def test_a_route_scoped_by_a_path_that_names_nothing_stops_the_service(tmp_path: Path) -> None:
    # The hole this closes: a run's route under a router scoped by `{model}`, which its path does not have.
    router = APIRouter(prefix="/v1", dependencies=[Depends(require_role("train"))])

    @router.post("/runs")
    async def create_run() -> dict[str, str]:
        return {}

    with pytest.raises(UndeclaredRouteError, match="POST /v1/runs: scoped by its path, but the path names no"):
        _service(tmp_path, router)


def test_the_security_doc_shows_the_table_the_code_declares() -> None:
    document = (ROOT / "docs" / "security.md").read_text()
    assert START in document and END in document
    assert permission_table() in document
    assert permissions_main(["--check", str(ROOT / "docs" / "security.md")]) == 0


def test_every_service_route_has_a_declaration_and_the_open_ones_are_few(tmp_path: Path) -> None:
    common = {"home": tmp_path, "log_format": "text", "log_level": "WARNING"}
    apps = {"annotation": annotation_app(Settings(**common)), "registry": registry_app(Settings(**common)),
            "scoring": scoring_app(ScoringSettings(**common))}
    for service, app in apps.items():
        table = service_permissions(app)
        opened = sorted({p.path for p in table if p.open})
        shared = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/docs-assets"}
        extra = set(opened) - shared
        assert len(extra) <= 5, (service, extra)
        # Nothing under /v1 is open but the scoring service's list of served models.
        assert {p for p in extra if p.startswith("/v1/")} <= {"/v1/models"}, (service, extra)
        # Every route of the OpenAPI document is in the table.
        documented = {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}
        assert documented <= {(p.method, p.path) for p in table}, service


# -- every route, every wrong key, on real processes ----------------------------------------
@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("permissions")
    env = {"VISIONDOCK_API_KEYS": "", "VISIONDOCK_API_KEY_ENTRIES": "\n".join(e for _, e in KEYS.values()),
           "VISIONDOCK_API_KEY": KEYS["admin"][0], "VISIONDOCK_SCORING_POLL_SECONDS": "0.5",
           "VISIONDOCK_LOG_FORMAT": "json"}
    with LocalServices.on_free_ports(root / "home", scoring_model=MODEL, extra_env=env) as local:
        admin = headers("admin")
        with httpx.Client(base_url=local.url("annotation"), headers=admin, timeout=30) as annotation, \
                httpx.Client(base_url=local.url("registry"), headers=admin, timeout=30) as registry:
            for project in (PROJECT, OTHER):
                assert annotation.post("/v1/projects", json={"id": project, "type": "multiclass",
                                                             "tags": ["rose", "tulip"]}).status_code == 201
            upload = annotation.post(f"/v1/projects/{PROJECT}/images", files=[("files", ("a.jpg", _jpeg()))],
                                     data={"tags": "rose"})
            image_id = upload.json()["results"][0]["image"]["id"]
            capture = {"model": MODEL, "version": 1, "task": "multiclass", "uncertainty": 0.5,
                       "prediction": {"label": "rose", "probability": 0.5}}
            item = annotation.put(f"/v1/projects/{PROJECT}/review-items/cap-1",
                                  files={"image": ("c.jpg", _jpeg((10, 10, 200)), "image/jpeg")},
                                  data={"capture": json.dumps(capture)})
            assert item.status_code == 201, item.text
            onnx = tiny_models.classifier(root / "model.onnx", model_name=MODEL)
            metadata = json.dumps({"task": "multiclass", "labels": ["red", "green", "blue"], "project_id": PROJECT})
            registered = registry.post(f"/v1/models/{MODEL}/versions", data={"metadata": metadata},
                                       files={"model": ("model.onnx", onnx.read_bytes())})
            assert registered.status_code == 201, registered.text
            assert registry.put(f"/v1/models/{MODEL}/aliases/production", json={"version": 1}).status_code == 200
            run = registry.post("/v1/runs", json={"model": MODEL, "project_id": PROJECT}).json()
            documents = {service: httpx.get(local.url(service) + "/openapi.json").json()
                         for service in ("annotation", "registry", "scoring")}
            yield {"local": local, "image_id": image_id, "run_id": run["id"], "documents": documents,
                   "onnx": onnx.read_bytes()}


def _tables(tmp_path: Path) -> dict[str, dict[tuple[str, str], Permission]]:
    common = {"home": tmp_path, "log_format": "text", "log_level": "WARNING"}
    apps = {"annotation": annotation_app(Settings(**common)), "registry": registry_app(Settings(**common)),
            "scoring": scoring_app(ScoringSettings(**common))}
    return {service: {(p.method, p.path): p for p in service_permissions(app)} for service, app in apps.items()}


def _fill(path: str, stack: dict[str, Any]) -> str:
    values = {"project_id": PROJECT, "model": MODEL, "name": MODEL, "run_id": stack["run_id"],
              "alias": "production", "version": "1", "image_id": stack["image_id"], "item_id": "cap-1",
              "tag": "rose", "filename": "model.onnx"}
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], path)


# Required query parameters and bodies that name what they touch (a body-scoped route reads them).
QUERIES = {"a": "1", "b": "1", "format": "folder"}


def _body(method: str, path: str, stack: dict[str, Any], named: str = PROJECT) -> dict[str, Any]:
    if method in ("GET", "DELETE"):
        return {}
    if path == "/v1/projects":
        return {"json": {"id": named, "type": "multiclass"}}
    if path == "/v1/runs":
        return {"json": {"model": MODEL, "project_id": named}}
    if path.endswith("/versions") and method == "POST":
        metadata = {"task": "multiclass", "labels": ["red", "green", "blue"], "project_id": named}
        return {"data": {"metadata": json.dumps(metadata)}, "files": {"model": ("model.onnx", stack["onnx"])}}
    return {"json": {}}


def _refusals(table: dict[tuple[str, str], Permission], method: str, path: str) -> list[str]:
    """The keys this route must refuse: roles it does not give, and keys scoped elsewhere."""
    permission = table[(method, path)]
    if permission.open:
        return []
    refused = [f"{role}-all" for role in ("predict", "label", "train") if role not in permission.roles()]
    scope = permission.requirement.scope  # type: ignore[union-attr]
    if scope.describe(path) != "nothing" and not scope.delegated:
        refused += [f"{role}-other" for role in permission.roles()]
    return refused


@pytest.mark.e2e
def test_every_route_refuses_the_wrong_role_and_the_wrong_scope(stack: dict[str, Any], tmp_path: Path) -> None:
    tables = _tables(tmp_path)
    local: LocalServices = stack["local"]
    wrong: list[str] = []
    walked = 0
    for service, document in stack["documents"].items():
        with httpx.Client(base_url=local.url(service), timeout=30) as client:
            for path, item in document["paths"].items():
                for method in (m.upper() for m in item):
                    url = _fill(path, stack)
                    for name in _refusals(tables[service], method, path):
                        answer = client.request(method, url, params=QUERIES, headers=headers(name),
                                                **_body(method, path, stack))
                        walked += 1
                        if answer.status_code != 403:
                            wrong.append(f"{service} {method} {url} with {name}: {answer.status_code} "
                                         f"{answer.text[:120]}")
    assert walked > 300
    assert not wrong, "\n".join(wrong)


@pytest.mark.e2e
def test_keys_scoped_to_one_project_cannot_reach_another_through_bodies(stack: dict[str, Any]) -> None:
    local: LocalServices = stack["local"]
    with httpx.Client(base_url=local.url("registry"), timeout=30) as registry:
        for method, path in (("POST", "/v1/runs"), ("POST", f"/v1/models/{MODEL}/versions")):
            answer = registry.request(method, path, headers=headers("train-flowers"),
                                      **_body(method, path, stack, named=OTHER))
            assert answer.status_code == 403 and OTHER in answer.json()["detail"], answer.text
    with httpx.Client(base_url=local.url("annotation"), timeout=30) as annotation:
        answer = annotation.post("/v1/projects", headers=headers("label-flowers"), **_body("POST", "/v1/projects",
                                                                                          stack, named=OTHER))
        assert answer.status_code == 403


@pytest.mark.e2e
def test_the_apps_registry_proxy_passes_the_registrys_refusals_on(stack: dict[str, Any], tmp_path: Path) -> None:
    registry_table = _tables(tmp_path)["registry"]
    local: LocalServices = stack["local"]
    wrong: list[str] = []
    with httpx.Client(base_url=local.url("annotation"), timeout=30) as annotation:
        for (method, path), _ in registry_table.items():
            if not path.startswith(("/v1/runs", "/v1/models")):
                continue
            url = "/app/registry" + _fill(path, stack)
            for name in _refusals(registry_table, method, path):
                answer = annotation.request(method, url, params=QUERIES, headers=headers(name),
                                            **_body(method, path, stack))
                if answer.status_code != 403:
                    wrong.append(f"{method} {url} with {name}: {answer.status_code} {answer.text[:120]}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.e2e
@pytest.mark.parametrize("path", ["runs/..%2F..%2Freadyz", "runs/..%2F..%2Fopenapi.json",
                                  "models/%2E%2E/%2E%2E/metrics",
                                  "runs/.%2F..%2F..%2Fdashboard", "models/x%5C..%5C..%5Creadyz", "runs//x"])
def test_the_registry_proxy_reaches_only_runs_and_models(stack: dict[str, Any], path: str) -> None:
    local: LocalServices = stack["local"]
    answer = httpx.get(local.url("annotation") + "/app/registry/v1/" + path, headers=headers("admin"))
    assert answer.status_code == 404 and "runs and models" in answer.json()["detail"], answer.text


@pytest.mark.e2e
def test_refused_calls_changed_nothing_and_allowed_reads_are_not_refused(stack: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    local: LocalServices = stack["local"]
    admin = headers("admin")
    assert httpx.get(local.url("annotation") + f"/v1/projects/{PROJECT}/stats", headers=admin).json()[
        "image_count"] == 1
    assert httpx.get(local.url("registry") + f"/v1/models/{MODEL}/aliases/production", headers=admin).json()[
        "version"] == 1
    assert [v["version"] for v in httpx.get(local.url("registry") + f"/v1/models/{MODEL}/versions",
                                            headers=admin).json()["data"]] == [1]
    # The table is no stricter than the code: each role it gives a GET route is let through.
    tables = _tables(tmp_path)
    wrong = []
    for service, document in stack["documents"].items():
        for path, item in document["paths"].items():
            if "get" not in item:
                continue
            permission = tables[service][("GET", path)]
            everything = "everything" in permission.scope()
            for role in permission.roles():
                name = "admin" if role == "admin" else f"{role}-{'all' if everything else 'flowers'}"
                answer = httpx.get(local.url(service) + _fill(path, stack), params=QUERIES, headers=headers(name),
                                   timeout=30)
                if answer.status_code in (401, 403):
                    wrong.append(f"{service} GET {path} with {name}: {answer.status_code} {answer.text[:100]}")
    assert not wrong, "\n".join(wrong)
