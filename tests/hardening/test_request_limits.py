"""Limits applied before work is done: file counts before buffering, v2 tensors checked before
conversion and run in batches of MAX_BATCH_SIZE, deeply nested JSON refused with a 400 on every
service (and in form fields with a 422), while what was stored before the limit still reads."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from services.annotation.app import create_app as annotation_app
from services.annotation.images import MAX_FILES_PER_UPLOAD
from services.registry.app import create_app as registry_app
from services.registry.runs import RUNS
from tests.scoring.conftest import AppFactory
from tests.scoring.tiny_models import SIZE
from visiondock.limits import MAX_JSON_DEPTH, loads_bounded
from visiondock.settings import LOCAL_DEV_API_KEY, Settings
from visiondock.storage import Stores
from visiondock.web import http_status

AUTH = {"X-API-Key": LOCAL_DEV_API_KEY}


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def test_loads_bounded_refuses_deep_json_with_a_400() -> None:
    assert loads_bounded(_nested(MAX_JSON_DEPTH - 1)) is not None
    for depth in (MAX_JSON_DEPTH + 1, 100_000):
        with pytest.raises(Exception, match="nests") as caught:
            loads_bounded(_nested(depth))
        assert http_status(caught.value) == 400  # type: ignore[arg-type]


@pytest.mark.parametrize("depth", [200, 100_000])
def test_every_scoring_json_route_refuses_deep_json(serve: AppFactory, models: dict[str, Path], depth: int) -> None:
    deep = _nested(depth)
    with serve(models["multiclass"]) as client:
        for path in ("/v1/predict", "/v1/predict/batch", "/v1/skills/classify", "/v1/render",
                     "/v2/models/colours/infer"):
            response = client.post(path, content=deep, headers={"Content-Type": "application/json"})
            assert response.status_code == 400, (path, response.text)
            # v2 refuses the shallower one as not an infer request before looking deeper.
            assert "nest" in response.json()["detail"] or (depth < 1000 and path.startswith("/v2")), path


def test_deep_json_in_form_fields_is_refused_as_invalid(tmp_path: Path) -> None:
    # Form fields holding JSON are validated by FastAPI (`Json[...]`), whose parser stops at its own
    # depth limit without recursing in Python: a 422 naming the field, like any invalid form JSON.
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING")
    with TestClient(registry_app(settings), headers=AUTH) as client:
        response = client.post("/v1/models/m/versions", files={"model": ("model.onnx", b"onnx")},
                               data={"metadata": _nested(100_000)})
    assert response.status_code == 422, response.text
    assert "metadata" in response.json()["detail"] and "recursion limit" in response.json()["detail"]


def _nested_value(depth: int) -> dict:
    value: dict = {"loss": 0.1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_deep_json_bodies_are_refused_on_the_registry_and_annotation_services(tmp_path: Path) -> None:
    # A run's metrics nested 300 deep used to be stored, and then no answer listing the run could be
    # written: GET /v1/runs answered 500 for everyone.
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING")
    with TestClient(registry_app(settings), headers=AUTH) as registry:
        run = registry.post("/v1/runs", json={"model": "m"}).json()
        for depth in (MAX_JSON_DEPTH + 1, 300):
            refused = registry.patch(f"/v1/runs/{run['id']}", json={"status": "running",
                                                                     "metrics": _nested_value(depth)})
            assert refused.status_code == 400 and refused.json()["code"] == "too_deep", refused.text
        assert registry.get(f"/v1/runs/{run['id']}").json()["metrics"] == {}
        assert registry.get("/v1/runs").status_code == 200
        refused = registry.post("/v1/runs", json={"model": "m", "params": _nested_value(100)})
        assert refused.status_code == 400
        assert registry.patch(f"/v1/runs/{run['id']}", json={"metrics": _nested_value(MAX_JSON_DEPTH - 2)}
                              ).status_code == 200
    with TestClient(annotation_app(settings), headers=AUTH) as annotation:
        refused = annotation.post("/v1/projects", json={"id": "p", "type": "multiclass", "tags": _nested_value(100)})
        assert refused.status_code == 400 and refused.json()["code"] == "too_deep"


def test_runs_stored_before_the_limit_still_read(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING")
    with TestClient(registry_app(settings), headers=AUTH) as registry:
        run = registry.post("/v1/runs", json={"model": "m"}).json()
        stores = Stores(settings)
        try:  # as an older registry stored it
            doc = stores.documents.get(RUNS, run["id"], partition_key=run["id"])
            stores.documents.put(RUNS, {**doc.data, "metrics": _nested_value(300)}, partition_key=run["id"])
        finally:
            stores.close()
        listed = registry.get("/v1/runs")
        assert listed.status_code == 200, listed.text
        metrics = registry.get(f"/v1/runs/{run['id']}").json()["metrics"]
        for _ in range(MAX_JSON_DEPTH - 1):
            metrics = metrics["a"]
        assert "nested deeper than" in metrics["a"]  # the 65th level


def test_deep_json_in_form_fields_is_bounded_like_bodies(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING")
    metadata = {"task": "multiclass", "labels": ["a"], "metrics": _nested_value(100)}
    with TestClient(registry_app(settings), headers=AUTH) as client:
        response = client.post("/v1/models/m/versions", files={"model": ("model.onnx", b"onnx")},
                               data={"metadata": json.dumps(metadata)})
        assert response.status_code == 422 and "metrics" in response.json()["detail"], response.text
        assert "deeper than 64" in response.json()["detail"]
    capture = {"model": "m", "version": 1, "task": "multiclass", "uncertainty": 0.5, "prediction": _nested_value(100)}
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    with TestClient(annotation_app(settings), headers=AUTH) as client:
        client.post("/v1/projects", json={"id": "p", "type": "multiclass"})
        response = client.put("/v1/projects/p/review-items/c1", files={"image": ("c.png", buffer.getvalue())},
                              data={"capture": json.dumps(capture)})
        assert response.status_code == 422 and "prediction" in response.json()["detail"], response.text


def _png(size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (220, 20, 20)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_batch_and_a_skill_share_a_pixel_budget(serve: AppFactory, models: dict[str, Path]) -> None:
    # Three 40x30 images against a budget of 3,000 pixels: the third is refused before it is decoded.
    encoded = base64.b64encode(_png()).decode()
    with serve(models["multiclass"], max_request_pixels=3000) as client:
        batch = client.post("/v1/predict/batch", files=[("files", (f"{i}.png", _png())) for i in range(3)]).json()
        assert [r["status"] for r in batch["results"]] == [200, 200, 413], batch
        assert "pixels together" in batch["results"][2]["error"]["detail"]
        skill = client.post("/v1/skills/classify", json={"values": [
            {"recordId": str(i), "data": {"image": {"data": encoded}}} for i in range(3)]}).json()["values"]
        assert sorted(len(v["errors"]) for v in skill) == [0, 0, 1]
        assert next(v for v in skill if v["errors"])["errors"][0]["statusCode"] == 413


def test_batch_and_skill_json_is_counted_before_it_is_parsed(serve: AppFactory, models: dict[str, Path]) -> None:
    # 200,000 tiny values would become 200,000 Python objects before the count of images or records.
    many = b'{"images": [' + b",".join([b"{}"] * 200_000) + b"]}"
    records = b'{"values": [' + b",".join([b"1"] * 200_000) + b"]}"
    with serve(models["multiclass"]) as client:
        for path, body in (("/v1/predict/batch", many), ("/v1/skills/classify", records)):
            response = client.post(path, content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 413 and response.json()["code"] == "too_many_values", response.text
        # A batch over its image count is refused before any image is decoded from base64.
        images = {"images": [{"image_base64": "not base64 at all"} for _ in range(65)]}
        response = client.post("/v1/predict/batch", json=images)
        assert response.status_code == 400 and "at most 64 images" in response.json()["detail"]


def test_too_many_files_are_refused_while_parsing(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    files = [("files", (f"{i}.png", buffer.getvalue(), "image/png")) for i in range(MAX_FILES_PER_UPLOAD + 1)]
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING")
    with TestClient(annotation_app(settings), headers=AUTH) as client:
        client.post("/v1/projects", json={"id": "p", "type": "multiclass"})
        response = client.post("/v1/projects/p/images", files=files)
        assert response.status_code == 400 and "Too many files" in response.json()["detail"]
        assert client.get("/v1/projects/p/stats").json()["image_count"] == 0


def test_v2_data_longer_than_the_shape_is_refused_before_conversion(serve: AppFactory,
                                                                   models: dict[str, Path]) -> None:
    tensor = {"name": "image", "shape": [1, 3, SIZE, SIZE], "datatype": "FP32", "data": [0.0] * 7}
    with serve(models["multiclass"]) as client:
        response = client.post("/v2/models/colours/infer", json={"inputs": [tensor]})
    assert response.status_code == 400 and "holds 7 values" in response.json()["error"]


def _batch_sizes(client: TestClient) -> dict[str, float]:
    text = client.get("/metrics").text
    family = next(f for f in text_string_to_metric_families(text) if f.name == "visiondock_scoring_batch_size")
    return {s.labels.get("le", s.name): s.value for s in family.samples if s.name.endswith(("_bucket", "_count"))}


def test_v2_rows_run_in_batches_of_max_batch_size(serve: AppFactory, models: dict[str, Path]) -> None:
    rows = 20
    data = np.random.default_rng(0).random((rows, 3, SIZE, SIZE), dtype=np.float32)
    with serve(models["multiclass"], scoring_max_batch_size=8) as client:
        one = client.post("/v2/models/colours/infer", json={"inputs": [
            {"name": "image", "shape": [1, 3, SIZE, SIZE], "datatype": "FP32", "data": data[:1].ravel().tolist()}]})
        response = client.post("/v2/models/colours/infer", json={"inputs": [
            {"name": "image", "shape": [rows, 3, SIZE, SIZE], "datatype": "FP32", "data": data.ravel().tolist()}]})
        sizes = _batch_sizes(client)
    assert response.status_code == 200, response.text
    output = response.json()["outputs"][0]
    assert output["shape"] == [rows, 3]
    # Splitting changes nothing in the answer: the first row matches it scored alone.
    np.testing.assert_allclose(output["data"][:3], one.json()["outputs"][0]["data"], rtol=1e-5)
    assert sizes["visiondock_scoring_batch_size_count"] >= 4  # 1, then 8 + 8 + 4
    assert sizes["8.0"] == sizes["+Inf"], json.dumps(sizes)


@pytest.mark.parametrize("item_id", ["a%23b", "a%0Ab", "%1D%C2%A1", "x" * 200])
def test_ids_the_stores_would_refuse_are_a_422_at_the_edge(tmp_path: Path, item_id: str) -> None:
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING")
    with TestClient(annotation_app(settings), headers=AUTH, raise_server_exceptions=False) as client:
        client.post("/v1/projects", json={"id": "p", "type": "multiclass"})
        for method, path in (("GET", f"/v1/projects/p/review-items/{item_id}"),
                             ("POST", f"/v1/projects/p/review-items/{item_id}/accept"),
                             ("GET", f"/v1/projects/p/images/{item_id}/content")):
            response = client.request(method, path)
            assert response.status_code == 422, (path, response.text)
            assert response.json()["code"] == "invalid_request"
