"""Named keys with roles and scopes: every route needs the role it declares, a scoped key
touches only its projects and models, and refusals come before any body is read."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from cli.main import main as cli_main
from services.annotation.app import create_app as annotation_app
from services.registry.app import create_app as registry_app
from services.scoring.app import create_app as scoring_app
from services.scoring.settings import ScoringSettings
from tests.scoring import tiny_models
from visiondock.auth import KeyFormatError, KeyRing, RoleRequirement, RunKeys, new_key, parse_entry, split_entries
from visiondock.errors import Forbidden, NotAuthenticated
from visiondock.serve import serve
from visiondock.settings import LOCAL_DEV_API_KEY, Settings
from visiondock.web import keyring_of, require_role

KEYS: dict[str, tuple[str, str]] = {
    name: new_key(name, roles, scopes)
    for name, roles, scopes in [
        ("labeler", ["label"], ["*"]),
        ("flowers-labeler", ["label"], ["flowers"]),
        ("trainer", ["train"], ["*"]),
        ("scorer", ["predict"], ["*"]),
        ("birds-scorer", ["predict"], ["birds"]),
        ("flowers-trainer", ["train"], ["flowers"]),
        ("operator", ["admin"], ["*"]),
    ]
}
RUN_KEY_SECRET = "run-key-secret-for-the-tests-0123456789abcdef"


def key(name: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[name][0]}


def _settings(home: Path, cls: type[Settings] = Settings, **extra: Any) -> Any:
    # Entries only, no plain keys: what a production deployment configures.
    return cls(home=home, api_keys="", api_key_entries="\n".join(entry for _, entry in KEYS.values()),
               log_format="json", log_level="INFO", **{"run_key_secret": RUN_KEY_SECRET, **extra})


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def annotation(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(annotation_app(_settings(tmp_path))) as client:
        yield client


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(registry_app(_settings(tmp_path))) as client:
        yield client


# -- the key format -------------------------------------------------------------------
def test_a_new_key_parses_back_to_its_name_roles_and_scopes() -> None:
    secret, entry = new_key("search-skill", ["predict"], ["flowers", "birds"])
    digest, principal = parse_entry(entry)
    assert secret not in entry and len(digest) == 64
    assert principal.name == "search-skill" and principal.roles == {"predict"}
    assert principal.scopes == {"flowers", "birds"} and not principal.unscoped
    ring = KeyRing.from_sources(entries=[entry])
    assert ring.identify(secret) == principal and ring.identify(secret + "x") is None


@pytest.mark.parametrize(("entry", "message"), [
    ("only:three:parts", "got 3 parts"),
    ("bad name:predict:*:" + "0" * 64, "key name"),
    ("ok:superuser:*:" + "0" * 64, "roles must be"),
    ("ok:predict::" + "0" * 64, "scope"),
    ("ok:predict:*:not-a-hash", "SHA-256"),
])
def test_malformed_entries_say_what_is_wrong(entry: str, message: str) -> None:
    with pytest.raises(KeyFormatError, match=message):
        parse_entry(entry)


def test_entries_split_on_semicolons_and_lines_and_ignore_comments() -> None:
    assert split_entries("a:predict:*:x; b:label:*:y\n# a comment\n\nc:train:*:z # trailing") == [
        "a:predict:*:x", "b:label:*:y", "c:train:*:z"]


def test_key_file_is_read_and_a_broken_one_refuses_to_start(tmp_path: Path) -> None:
    secret, entry = new_key("from-file", ["admin"])
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# mounted from a Kubernetes Secret\n{entry}\n")
    ring = keyring_of(Settings(home=tmp_path, api_keys="", api_keys_file=keys_file))
    identified = ring.identify(secret)
    assert identified is not None and identified.name == "from-file"
    keys_file.write_text("from-file:admin:*\n")
    with pytest.raises(KeyFormatError):
        annotation_app(Settings(home=tmp_path, api_keys="", api_keys_file=keys_file))


def test_cli_prints_a_key_and_its_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["key", "new", "ci-trainer", "--role", "train", "--scope", "flowers"]) == 0
    lines = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    _, principal = parse_entry(lines["entry"].strip())
    assert KeyRing.from_sources(entries=[lines["entry"]]).identify(lines["key"].strip()) == principal
    assert principal.name == "ci-trainer" and principal.roles == {"train"} and principal.scopes == {"flowers"}


# -- roles on every service -----------------------------------------------------------
def test_annotation_roles_and_scopes(annotation: TestClient) -> None:
    body = {"id": "flowers", "type": "multiclass", "tags": ["rose"]}
    assert annotation.post("/v1/projects", json=body, headers=key("scorer")).status_code == 403
    assert annotation.post("/v1/projects", json=body, headers=key("trainer")).status_code == 403
    assert annotation.post("/v1/projects", json=body, headers=key("flowers-labeler")).status_code == 201
    refused = annotation.post("/v1/projects", json={"id": "birds", "type": "multiclass"},
                              headers=key("flowers-labeler"))
    assert refused.status_code == 403 and "flowers-labeler" in refused.json()["detail"]
    assert refused.json()["code"] == "forbidden"
    assert annotation.post("/v1/projects", json={"id": "birds", "type": "multiclass"},
                           headers=key("labeler")).status_code == 201
    upload = annotation.post("/v1/projects/flowers/images", files=[("files", ("a.jpg", _jpeg(), "image/jpeg"))],
                             data={"tags": "rose"}, headers=key("flowers-labeler"))
    assert upload.status_code == 200, upload.text
    # The trainer reads labeled images but cannot change them.
    assert annotation.get("/v1/projects/flowers/images", headers=key("trainer")).status_code == 200
    assert annotation.post("/v1/projects/flowers/tags", json={"name": "tulip"},
                           headers=key("trainer")).status_code == 403
    # A scoped key sees only its own projects.
    assert annotation.get("/v1/projects/birds", headers=key("flowers-labeler")).status_code == 403
    assert annotation.get("/v1/projects", headers=key("flowers-labeler")).status_code == 403
    assert annotation.get("/v1/projects", headers=key("labeler")).status_code == 200
    assert annotation.get("/v1/projects/birds/review-items", headers=key("trainer")).status_code == 403


def test_registry_roles(registry: TestClient, tmp_path: Path) -> None:
    model = tiny_models.classifier(tmp_path / "m.onnx", model_name="birds")
    metadata = json.dumps({"task": "multiclass", "labels": ["red", "green", "blue"]})

    def register(who: str) -> int:
        return registry.post("/v1/models/birds/versions", files={"model": ("model.onnx", model.read_bytes())},
                             data={"metadata": metadata}, headers=key(who)).status_code

    assert register("scorer") == 403 and register("labeler") == 403
    assert register("trainer") == 201
    assert registry.get("/v1/models/birds/versions/1", headers=key("birds-scorer")).status_code == 200
    # Moving an alias deploys: admin only.
    assert registry.put("/v1/models/birds/aliases/production", json={"version": 1},
                        headers=key("trainer")).status_code == 403
    assert registry.put("/v1/models/birds/aliases/production", json={"version": 1},
                        headers=key("operator")).status_code == 200
    assert registry.get("/v1/models", headers=key("birds-scorer")).status_code == 403
    run = registry.post("/v1/runs", json={"model": "birds"}, headers=key("trainer")).json()
    assert registry.get(f"/v1/runs/{run['id']}", headers=key("birds-scorer")).status_code == 200
    assert registry.patch(f"/v1/runs/{run['id']}", json={"status": "running"},
                          headers=key("scorer")).status_code == 403


def test_a_scoped_train_key_cannot_train_on_or_register_into_another_project(registry: TestClient,
                                                                            tmp_path: Path) -> None:
    # The trainer reads the run's project with its own key: a key scoped to flowers must not aim it elsewhere.
    for body in ({"model": "flowers", "project_id": "secret"}, {"model": "secret", "project_id": "flowers"}):
        refused = registry.post("/v1/runs", json=body, headers=key("flowers-trainer"))
        assert refused.status_code == 403 and "secret" in refused.json()["detail"], refused.text
    assert registry.post("/v1/runs", json={"model": "flowers", "project_id": "flowers"},
                         headers=key("flowers-trainer")).status_code == 201
    # A version's project decides where the scoring service captures its predictions.
    model = tiny_models.classifier(tmp_path / "m.onnx", model_name="flowers")

    def register(project: str) -> Any:
        metadata = json.dumps({"task": "multiclass", "labels": ["red", "green", "blue"], "project_id": project})
        return registry.post("/v1/models/flowers/versions", files={"model": ("model.onnx", model.read_bytes())},
                             data={"metadata": metadata}, headers=key("flowers-trainer"))

    assert register("secret").status_code == 403
    assert registry.get("/v1/models/flowers/versions", headers=key("operator")).status_code == 404
    assert register("flowers").status_code == 201


def test_train_keys_keep_versions_and_export_snapshots(annotation: TestClient, registry: TestClient,
                                                      tmp_path: Path) -> None:
    model = tiny_models.classifier(tmp_path / "m.onnx", model_name="birds")
    metadata = json.dumps({"task": "multiclass", "labels": ["red", "green", "blue"]})
    registry.post("/v1/models/birds/versions", files={"model": ("model.onnx", model.read_bytes())},
                  data={"metadata": metadata}, headers=key("trainer"))
    # Deleting a version is an operator's decision, as moving an alias is.
    assert registry.delete("/v1/models/birds/versions/1", headers=key("trainer")).status_code == 403
    assert registry.get("/v1/models/birds/versions/1", headers=key("operator")).status_code == 200
    assert registry.delete("/v1/models/birds/versions/1", headers=key("operator")).status_code == 204
    # A dataset snapshot export reads: train keys may, as they may export with GET.
    annotation.post("/v1/projects", json={"id": "flowers", "type": "multiclass", "tags": ["rose"]},
                    headers=key("labeler"))
    upload = annotation.post("/v1/projects/flowers/images", files=[("files", ("a.jpg", _jpeg(), "image/jpeg"))],
                             data={"tags": "rose"}, headers=key("labeler")).json()
    image_id = upload["results"][0]["image"]["id"]
    exported = annotation.post("/v1/projects/flowers/export", json={"format": "folder", "image_ids": [image_id]},
                               headers=key("trainer"))
    assert exported.status_code == 200 and exported.headers["X-Image-Count"] == "1", exported.text
    assert annotation.post("/v1/projects/flowers/export", json={"format": "folder", "image_ids": [image_id]},
                           headers=key("scorer")).status_code == 403


def test_metrics_need_a_key_for_everything(tmp_path: Path) -> None:
    # The scoring service counts answers by model and label (people's names for a face model).
    model = tiny_models.classifier(tmp_path / "m.onnx", model_name="birds")
    settings = _settings(tmp_path, ScoringSettings, scoring_model_path=model, scoring_model="birds")
    with TestClient(scoring_app(settings)) as client:
        client.post("/v1/predict", content=_jpeg(), headers={"Content-Type": "image/jpeg", **key("birds-scorer")})
        refused = client.get("/metrics", headers=key("birds-scorer"))
        assert refused.status_code == 403 and "red" not in refused.text
        assert client.get("/metrics", headers=key("scorer")).status_code == 200
        # The readiness details name the served model's labels too: the same rule.
        assert "model" not in client.get("/readyz", headers=key("birds-scorer")).json()
        assert client.get("/readyz", headers=key("scorer")).json()["model"]["labels"] == ["red", "green", "blue"]


def test_a_run_key_trains_its_own_run_on_its_own_project_and_model_only(tmp_path: Path) -> None:
    keys = RunKeys(RUN_KEY_SECRET.encode())
    with TestClient(annotation_app(_settings(tmp_path / "a"))) as annotation, \
            TestClient(registry_app(_settings(tmp_path / "r"))) as registry:
        for project in ("flowers", "secret"):
            annotation.post("/v1/projects", json={"id": project, "type": "multiclass"}, headers=key("operator"))
        run = registry.post("/v1/runs", json={"model": "flowers"}, headers=key("operator")).json()
        other = registry.post("/v1/runs", json={"model": "flowers"}, headers=key("operator")).json()
        run_key = {"X-API-Key": keys.issue(run_id=run["id"], project="flowers", model="flowers",
                                           expires_at=time.time() + 600)}
        assert annotation.get("/v1/projects/flowers/images", headers=run_key).status_code == 200
        assert annotation.get("/v1/projects/secret/images", headers=run_key).status_code == 403
        assert annotation.post("/v1/projects/flowers/tags", json={"name": "x"}, headers=run_key).status_code == 403
        assert registry.patch(f"/v1/runs/{run['id']}", json={"status": "running"}, headers=run_key).status_code == 200
        assert registry.patch(f"/v1/runs/{other['id']}", json={"status": "running"},
                              headers=run_key).status_code == 403
        started = registry.post("/v1/runs", json={"model": "flowers", "launch": {"on": "local"}}, headers=run_key)
        assert started.status_code == 403  # a run's key cannot start more runs (nor renew itself)
        assert registry.get("/v1/runs", headers=run_key).status_code == 403
        # Expired, forged or signed with another secret: not a key at all.
        for bad in (keys.issue(run_id=run["id"], project="flowers", model="flowers", expires_at=1),
                    run_key["X-API-Key"][:-2] + "xx",
                    RunKeys(b"another-secret-" * 3).issue(run_id=run["id"], project="secret", model="secret",
                                                          expires_at=4102444800)):
            assert annotation.get("/v1/projects/flowers", headers={"X-API-Key": bad}).status_code == 401
    # A service without the secret accepts no run key.
    with TestClient(annotation_app(_settings(tmp_path / "a", run_key_secret=None))) as annotation:
        assert annotation.get("/v1/projects/flowers", headers=run_key).status_code == 401


def test_a_short_run_key_secret_stops_the_service(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 32 characters"):
        annotation_app(_settings(tmp_path, run_key_secret="too-short"))


def test_scoring_roles_and_the_azure_search_header(tmp_path: Path) -> None:
    model = tiny_models.classifier(tmp_path / "m.onnx", model_name="birds")
    settings = _settings(tmp_path, ScoringSettings, scoring_model_path=model, scoring_model="birds")
    skill = {"values": [{"recordId": "1", "data": {"image": {"data": __import__("base64").b64encode(_jpeg())
                                                             .decode()}}}]}
    with TestClient(scoring_app(settings)) as client:
        jpeg = {"content": _jpeg(), "headers": {"Content-Type": "image/jpeg"}}
        for who, status in [("scorer", 200), ("birds-scorer", 200), ("labeler", 403), ("trainer", 403)]:
            response = client.post("/v1/predict", content=jpeg["content"],
                                   headers={**jpeg["headers"], **key(who)})
            assert response.status_code == status, (who, response.text)
        azure = {"Ocp-Apim-Subscription-Key": KEYS["scorer"][0]}
        assert client.post("/v1/skills/classify", json=skill, headers=azure).status_code == 200
        refused = client.post("/v1/predict", content=jpeg["content"], headers={**jpeg["headers"], **azure})
        assert refused.status_code == 401 and "X-API-Key" in refused.json()["detail"]
        assert client.post("/v1/model/refresh", headers=key("scorer")).status_code == 403
        assert client.post("/v1/model/refresh", headers=key("trainer")).status_code == 200
        assert client.get("/v2/models/birds", headers=key("birds-scorer")).status_code == 200


def test_the_access_log_names_the_key(annotation: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="visiondock.access"):
        annotation.get("/v1/projects", headers=key("labeler"))
    lines = [r for r in caplog.records if r.name == "visiondock.access" and getattr(r, "path", "") == "/v1/projects"]
    assert lines and lines[-1].key == "labeler"
    assert all(KEYS["labeler"][0] not in r.getMessage() for r in caplog.records)


# -- the built-in development key ------------------------------------------------------
def test_the_development_key_is_refused_with_azure_backends(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, blob_backend="azure",
                        azure_storage_connection_string="UseDevelopmentStorage=true")
    with pytest.raises(ValueError, match="local development key is refused with Azure"):
        keyring_of(settings)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
def test_the_development_key_is_refused_off_loopback(tmp_path: Path, host: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONDOCK_HOME", str(tmp_path))
    monkeypatch.setenv("VISIONDOCK_API_KEYS", LOCAL_DEV_API_KEY)
    with pytest.raises(SystemExit) as exited:
        serve("annotation", annotation_app, ["--host", host, "--port", "1"])
    assert exited.value.code == 2


# -- refused before reading ------------------------------------------------------------
def _call(app: FastAPI, method: str, path: str, headers: dict[str, str], body_chunks: int) -> tuple[int, dict, int]:
    """Drive the ASGI app directly and count how many body chunks it asked for."""
    asked = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": b"x" * 65536, "more_body": asked < body_chunks}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()], "app": app,
             "client": ("127.0.0.1", 1), "server": ("testserver", 80), "scheme": "http", "http_version": "1.1",
             "root_path": "", "state": {}}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body), asked


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": KEYS["scorer"][0]}])
def test_uploads_without_the_right_key_are_refused_unread(tmp_path: Path, headers: dict[str, str]) -> None:
    app = annotation_app(_settings(tmp_path))
    status, answer, asked = _call(app, "POST", "/v1/projects/flowers/images",
                                  {**headers, "content-type": "multipart/form-data; boundary=x"}, body_chunks=1000)
    assert status in (401, 403) and answer["code"] in ("unauthorized", "forbidden")
    assert asked == 0


def test_a_streamed_body_over_the_route_limit_stops_early(tmp_path: Path) -> None:
    app = annotation_app(_settings(tmp_path))
    # A project JSON without Content-Length, streamed: refused at the first chunk past 1 MiB.
    status, answer, asked = _call(app, "POST", "/v1/projects",
                                  {**key("labeler"), "content-type": "application/json"}, body_chunks=1000)
    assert status == 413 and "limit" in answer["detail"]
    assert asked == 17
    status, answer, asked = _call(app, "POST", "/v1/projects",
                                  {**key("labeler"), "content-type": "application/json",
                                   "content-length": str(2 * 1024 * 1024)}, body_chunks=1000)
    assert status == 413 and asked == 0


def test_a_route_checks_its_key_once_behind_the_guard_and_itself_without(
        annotation: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    checks: list[str] = []
    authorize = RoleRequirement.authorize

    def counted(self: RoleRequirement, *args: Any) -> Any:
        checks.append("checked")
        return authorize(self, *args)

    monkeypatch.setattr(RoleRequirement, "authorize", counted)
    assert annotation.get("/v1/projects", headers=key("labeler")).status_code == 200
    assert checks == ["checked"]  # by the request guard; the route's dependency trusts it

    bare = FastAPI()  # no request guard: the dependency alone protects the route
    bare.state.keyring = KeyRing.from_sources(entries=[entry for _, entry in KEYS.values()])

    @bare.get("/secret", dependencies=[Depends(require_role("train"))])
    async def secret() -> dict[str, str]:
        return {"ok": "yes"}

    with TestClient(bare) as client:
        checks.clear()
        assert client.get("/secret", headers=key("trainer")).status_code == 200
        assert checks == ["checked"]
        for headers in (key("labeler"), {"X-API-Key": "nope"}, {}):
            with pytest.raises((NotAuthenticated, Forbidden)):  # no error handlers either: raised as is
                client.get("/secret", headers=headers)
