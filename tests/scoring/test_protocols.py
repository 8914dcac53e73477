"""Every client protocol of the scoring service, on tiny real models of each task:
/v1/predict (three body forms), /v1/predict/batch, /v1/render, the Azure AI Search
skills and the Open Inference Protocol v2."""

from __future__ import annotations

import base64
import http.server
import io
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visiondock.preprocess import PreprocessSpec, to_tensor
from visiondock.settings import LOCAL_DEV_API_KEY

from .conftest import AppFactory
from .tiny_models import SIZE, face_photo, quadrants, solid

RED, GREEN, BLUE, GREY, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128), (255, 255, 0)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- /v1/predict ---------------------------------------------------------------------------
def test_multiclass_answers_the_same_from_every_body_form(serve: AppFactory, models: dict[str, Path]) -> None:
    image = solid(RED)
    with serve(models["multiclass"]) as client:
        answers = [
            client.post("/v1/predict", content=image, headers={"Content-Type": "image/jpeg"}),
            client.post("/v1/predict", files={"file": ("red.jpg", image, "image/jpeg")}),
            client.post("/v1/predict", json={"image_base64": b64(image)}),
            client.post("/v1/predict", json={"image_base64": "data:image/jpeg;base64," + b64(image)}),
            client.post("/v1/aliases/production/predict", content=image),
        ]
    for response in answers:
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["model"], body["version"], body["task"], body["alias"]) == ("colours", 3, "multiclass",
                                                                                 "production")
        assert body["label"] == "red" and body["probability"] > 0.99 and body["uncertain"] is False
        assert body["predictions"][0]["label"] == "red"
        assert body["image"] == {"width": 64, "height": 48}
        assert set(body["timings_ms"]) == {"decode", "preprocess", "queue", "inference", "postprocess", "total"}
    assert len({tuple(p["probability"] for p in r.json()["predictions"]) for r in answers}) == 1


def test_uncertain_when_the_best_probability_is_below_the_models_threshold(serve: AppFactory,
                                                                           models: dict[str, Path]) -> None:
    with serve(models["multiclass"]) as client:
        grey = client.post("/v1/predict", content=solid(GREY)).json()
    assert grey["uncertain"] is True
    assert grey["probability"] < 0.6  # the card's `uncertain` threshold
    assert grey["uncertainty"] > 0.4


def test_multilabel_lists_every_tag_above_its_threshold(serve: AppFactory, models: dict[str, Path]) -> None:
    with serve(models["multilabel"]) as client:
        yellow = client.post("/v1/predict", content=solid(YELLOW)).json()
        grey = client.post("/v1/predict", content=solid(GREY)).json()
    assert yellow["task"] == "multilabel"
    assert sorted(t["label"] for t in yellow["tags"]) == ["green", "red"]
    assert yellow["uncertain"] is False
    assert grey["tags"] == [] and grey["uncertain"] is True and grey["label"] is None


def test_detection_gives_pixel_boxes_and_normalized_regions(serve: AppFactory, models: dict[str, Path]) -> None:
    with serve(models["detection"]) as client:
        body = client.post("/v1/predict", content=quadrants(RED, BLUE, size=(200, 100))).json()
    assert body["task"] == "detection"
    found = {d["label"]: d for d in body["detections"]}
    assert set(found) == {"red", "blue"}
    assert found["red"]["box"] == pytest.approx({"x1": 0, "y1": 0, "x2": 100, "y2": 50})
    assert found["blue"]["box"] == pytest.approx({"x1": 100, "y1": 50, "x2": 200, "y2": 100})
    assert found["blue"]["region"] == pytest.approx({"left": 0.5, "top": 0.5, "width": 0.5, "height": 0.5})
    assert all(d["score"] > 0.9 for d in body["detections"])
    assert body["uncertain"] is False


def test_face_model_classifies_the_largest_face_crop(serve: AppFactory, models: dict[str, Path]) -> None:
    with serve(models["face"]) as client:
        red = client.post("/v1/predict", content=face_photo((230, 60, 60))).json()
        green = client.post("/v1/predict", content=face_photo((60, 220, 60), centre=(400, 240))).json()
    assert red["face_found"] is True and red["label"] == "red" and red["uncertain"] is False
    assert green["label"] == "green"
    box = red["face"]["box"]
    assert box["x1"] < 220 < box["x2"] and box["y1"] < 240 < box["y2"]  # around the face's centre
    assert box["x1"] >= 0 and box["x2"] <= 640 and box["y1"] >= 0 and box["y2"] <= 480
    assert green["face"]["box"]["x1"] > 220  # the second face was drawn further right
    assert red["face"]["region"]["left"] == pytest.approx(box["x1"] / 640)


def test_face_model_without_a_face_says_so(serve: AppFactory, models: dict[str, Path]) -> None:
    with serve(models["face"]) as client:
        response = client.post("/v1/predict", content=solid(RED, size=(120, 120)))
    assert response.status_code == 200
    body = response.json()
    assert body["task"] == "face"
    assert body["face_found"] is False and body["predictions"] == [] and body["label"] is None


def test_an_alias_the_service_does_not_serve_is_404(serve: AppFactory, models: dict[str, Path]) -> None:
    with serve(models["multiclass"]) as client:
        response = client.post("/v1/aliases/staging/predict", content=solid(RED))
    assert response.status_code == 404
    assert "production" in response.json()["detail"]


# -- /v1/predict/batch -------------------------------------------------------------------
def test_batch_answers_each_image_in_order_and_a_bad_one_alone(serve: AppFactory, models: dict[str, Path]) -> None:
    with serve(models["multiclass"]) as client:
        multipart = client.post("/v1/predict/batch", files=[
            ("files", ("red.jpg", solid(RED), "image/jpeg")),
            ("files", ("notes.txt", b"not an image", "text/plain")),
            ("files", ("blue.png", solid(BLUE, fmt="PNG"), "image/png")),
        ])
        as_json = client.post("/v1/predict/batch", json={"images": [
            {"image_base64": b64(solid(GREEN)), "name": "green"}, b64(solid(BLUE)), {"image_base64": "%%%"}]})
    assert multipart.status_code == 200
    body = multipart.json()
    assert (body["succeeded"], body["failed"]) == (2, 1)
    assert [r["name"] for r in body["results"]] == ["red.jpg", "notes.txt", "blue.png"]
    assert [r["status"] for r in body["results"]] == [200, 415, 200]
    assert [r["answer"]["label"] for r in body["results"] if r["answer"]] == ["red", "blue"]
    assert "not an image" in body["results"][1]["error"]["detail"]
    results = as_json.json()["results"]
    assert [r["status"] for r in results] == [200, 200, 400]
    assert [r["name"] for r in results] == ["green", "images[1]", "images[2]"]
    assert results[0]["answer"]["label"] == "green" and results[1]["answer"]["label"] == "blue"


# -- /v1/render ----------------------------------------------------------------------------
def test_render_draws_boxes_and_returns_jpeg_or_png(serve: AppFactory, models: dict[str, Path]) -> None:
    original = quadrants(RED, BLUE, size=(200, 100), background=(255, 255, 255))
    with serve(models["detection"]) as client:
        jpeg = client.post("/v1/render", content=original)
        png = client.post("/v1/render?format=png", content=original)
        accept = client.post("/v1/render", content=original, headers={"Accept": "image/png"})
        bad = client.post("/v1/render?format=tiff", content=original)
    assert jpeg.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(jpeg.content)).format == "JPEG"
    assert png.headers["content-type"] == "image/png" and accept.headers["content-type"] == "image/png"
    drawn = Image.open(io.BytesIO(png.content)).convert("RGB")
    assert drawn.size == (200, 100)
    # Box outlines and labels changed pixels of the white background.
    source = Image.open(io.BytesIO(original)).convert("RGB")
    assert np.abs(np.asarray(drawn, dtype=int) - np.asarray(source, dtype=int)).sum() > 0
    assert png.headers["x-model"] == "tiny-det"
    assert bad.status_code == 400 and "jpeg or png" in bad.json()["detail"]


def test_render_of_a_classification_writes_the_label(serve: AppFactory, models: dict[str, Path]) -> None:
    with serve(models["multiclass"]) as client:
        response = client.post("/v1/render?format=png", content=solid(GREEN, size=(160, 120)))
    assert response.status_code == 200 and response.headers["x-label"] == "green"
    drawn = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), dtype=int)
    assert (np.abs(drawn - np.array(GREEN)).sum(axis=2) > 60).any()  # a banner was drawn


# -- Azure AI Search custom skills --------------------------------------------------------
def test_classify_skill_answers_every_record_by_id(serve: AppFactory, models: dict[str, Path]) -> None:
    request = {"values": [
        {"recordId": "r1", "data": {"image": {"$type": "file", "data": b64(solid(RED)), "width": 64}}},
        {"recordId": "r2", "data": {"image": b64(solid(BLUE, fmt="PNG"))}},
        {"recordId": "r3", "data": {"image": {"data": "!!!not base64!!!"}}},
        {"recordId": "r4", "data": {"image": {"data": b64(b"plain text")}}},
        {"recordId": "r5", "data": {}},
        {"recordId": "r6", "data": {"imageUrl": "http://example.com/a.jpg"}},
    ]}
    with serve(models["multiclass"]) as client:
        # Azure AI Search sends the key in its own header.
        response = client.post("/v1/skills/classify", json=request,
                               headers={"X-API-Key": "", "Ocp-Apim-Subscription-Key": LOCAL_DEV_API_KEY})
        no_key = client.post("/v1/skills/classify", json=request, headers={"X-API-Key": ""})
    assert response.status_code == 200 and no_key.status_code == 401
    values = {v["recordId"]: v for v in response.json()["values"]}
    assert list(values) == ["r1", "r2", "r3", "r4", "r5", "r6"]
    assert values["r1"]["data"]["label"] == "red" and values["r1"]["errors"] == []
    assert values["r2"]["data"]["label"] == "blue"
    assert values["r1"]["data"]["model"] == "colours" and values["r1"]["data"]["version"] == 3
    for record_id, words in (("r3", "base64"), ("r4", "not an image"), ("r5", "no image"),
                             ("r6", "does not fetch")):
        assert values[record_id]["data"] == {}
        assert words in values[record_id]["errors"][0]["message"], values[record_id]
    for value in values.values():
        assert value["warnings"] == []


def test_detect_skill_and_task_mismatch(serve: AppFactory, models: dict[str, Path]) -> None:
    request = {"values": [{"recordId": "1", "data": {"image": {"data": b64(quadrants(GREEN, RED))}}}]}
    with serve(models["detection"]) as client:
        detected = client.post("/v1/skills/detect", json=request).json()["values"][0]["data"]
        wrong = client.post("/v1/skills/classify", json=request)
        not_a_skill = client.post("/v1/skills/detect", json={"records": []})
        not_json = client.post("/v1/skills/detect", content=b"{oops", headers={"Content-Type": "application/json"})
    assert detected["labels"] == ["green", "red"] and detected["count"] == 2
    assert {o["label"] for o in detected["objects"]} == {"green", "red"}
    assert wrong.status_code == 400 and "/v1/skills/detect" in wrong.json()["detail"]
    assert not_a_skill.status_code == 400 and "values" in not_a_skill.json()["detail"]
    assert not_json.status_code == 400 and "JSON" in not_json.json()["detail"]


@pytest.fixture
def image_server() -> Iterator[str]:
    """A local HTTP server with one image at /red.png (and 404 elsewhere)."""
    payload = solid(RED, fmt="PNG")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/red.png":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            else:
                self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_skill_fetches_urls_only_from_allowed_hosts(serve: AppFactory, models: dict[str, Path],
                                                   image_server: str) -> None:
    request = {"values": [{"recordId": "ok", "data": {"image": {"url": f"{image_server}/red.png"}}},
                          {"recordId": "missing", "data": {"imageUrl": f"{image_server}/nothing.png"}},
                          {"recordId": "elsewhere", "data": {"url": "http://localhost:1/x.png"}},
                          {"recordId": "scheme", "data": {"url": "file:///etc/passwd"}}]}
    with serve(models["multiclass"], scoring_skill_fetch_urls=True, scoring_skill_url_hosts="127.0.0.1",
               scoring_skill_fetch_allowed_networks="127.0.0.1/32") as client:
        values = {v["recordId"]: v for v in client.post("/v1/skills/classify", json=request).json()["values"]}
    assert values["ok"]["data"]["label"] == "red"
    # One text for every upstream failure: no status codes from the fetched server.
    assert values["missing"]["errors"][0]["message"] == "could not fetch the image URL"
    assert "not allowed" in values["elsewhere"]["errors"][0]["message"]
    assert "only http and https" in values["scheme"]["errors"][0]["message"]


# -- Open Inference Protocol v2 -----------------------------------------------------------
def _tensor(colour: tuple[int, int, int]) -> np.ndarray:
    return to_tensor(Image.new("RGB", (SIZE, SIZE), colour), PreprocessSpec(size=SIZE, resize=SIZE))


def test_v2_health_metadata_and_infer(serve: AppFactory, models: dict[str, Path]) -> None:
    batch = np.stack([_tensor(RED), _tensor(BLUE)])
    with serve(models["multiclass"]) as client:
        live = client.get("/v2/health/live", headers={"X-API-Key": ""})
        ready = client.get("/v2/health/ready", headers={"X-API-Key": ""})
        metadata = client.get("/v2/models/colours").json()
        model_ready = client.get("/v2/models/colours/ready").json()
        flat = client.post("/v2/models/colours/infer", json={"id": "req-1", "inputs": [
            {"name": "image", "shape": [2, 3, SIZE, SIZE], "datatype": "FP32", "data": batch.ravel().tolist()}]})
        nested = client.post("/v2/models/colours/versions/3/infer", json={"inputs": [
            {"name": "image", "shape": [2, 3, SIZE, SIZE], "datatype": "FP32", "data": batch.tolist()}],
            "outputs": [{"name": "probabilities"}]})
    assert live.json() == {"live": True} and ready.json() == {"ready": True}
    assert metadata["name"] == "colours" and metadata["versions"] == ["3"]
    assert metadata["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 3, SIZE, SIZE]}]
    assert metadata["outputs"][0]["name"] == "probabilities" and metadata["outputs"][0]["shape"] == [-1, 3]
    assert model_ready == {"name": "colours", "ready": True}
    assert flat.status_code == 200, flat.text
    body = flat.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("colours", "3", "req-1")
    output = body["outputs"][0]
    assert output["name"] == "probabilities" and output["datatype"] == "FP32" and output["shape"] == [2, 3]
    probabilities = np.array(output["data"]).reshape(2, 3)
    assert probabilities.argmax(axis=1).tolist() == [0, 2]
    np.testing.assert_allclose(np.array(nested.json()["outputs"][0]["data"]), output["data"], rtol=1e-6)


@pytest.mark.parametrize(("change", "words"), [
    ({"datatype": "INT64"}, "FP32"),
    ({"name": "input_1"}, "unknown input"),
    ({"shape": [1, 3, 16, 16]}, "input shape must be"),
    ({"shape": [2, 3, SIZE, SIZE]}, "needs"),
    ({"data": ["a"] * (3 * SIZE * SIZE)}, "only numbers"),
    ({"data": "zeros"}, "list of numbers"),
])
def test_v2_infer_refuses_malformed_tensors(serve: AppFactory, models: dict[str, Path], change: dict,
                                           words: str) -> None:
    good = {"name": "image", "shape": [1, 3, SIZE, SIZE], "datatype": "FP32",
            "data": _tensor(GREEN).ravel().tolist()}
    with serve(models["multiclass"]) as client:
        response = client.post("/v2/models/colours/infer", json={"inputs": [{**good, **change}]})
    assert response.status_code == 400
    body = response.json()
    assert words in body["error"] and body["error"] == body["detail"]


def test_v2_unknown_model_version_and_missing_key(serve: AppFactory, models: dict[str, Path]) -> None:
    with serve(models["multiclass"]) as client:
        unknown = client.get("/v2/models/other")
        old = client.post("/v2/models/colours/versions/1/infer", json={"inputs": []})
        no_key = client.get("/v2/models/colours", headers={"X-API-Key": ""})
        garbage = client.post("/v2/models/colours/infer", content=b"[1, 2", headers={"Content-Type":
                                                                                     "application/json"})
    assert unknown.status_code == 404 and "colours" in unknown.json()["error"]
    assert old.status_code == 404 and "version 1" in old.json()["error"]
    assert no_key.status_code == 401 and "API key" in no_key.json()["error"]
    assert garbage.status_code == 400 and "JSON" in garbage.json()["error"]


# -- metrics and status -------------------------------------------------------------------
def test_metrics_cover_stages_batches_queue_labels_and_model(serve: AppFactory, models: dict[str, Path]) -> None:
    with serve(models["multiclass"]) as client:
        for colour in (RED, RED, BLUE):
            client.post("/v1/predict", content=solid(colour))
        client.post("/v1/predict", content=b"nope")
        text = client.get("/metrics").text
        status = client.get("/v1/model").json()
    for stage in ("decode", "preprocess", "queue", "inference", "postprocess"):
        assert f'visiondock_scoring_stage_seconds_count{{stage="{stage}"}}' in text
    assert "visiondock_scoring_batch_size_count 3.0" in text
    assert "visiondock_scoring_queue_depth 0.0" in text
    assert 'visiondock_scoring_predictions_total{label="red",model="colours",version="3"} 2.0' in text
    assert 'visiondock_scoring_model_info{model="colours",provider="CPUExecutionProvider"' in text
    assert 'visiondock_http_requests_total{method="POST",route="/v1/predict",status="415"} 1.0' in text
    assert status["model"]["name"] == "colours" and status["slots"]["production"]["model"]["version"] == 3


def test_a_real_photo_face_is_found_as_the_trainer_finds_it(serve: AppFactory, models: dict[str, Path]) -> None:
    data = pytest.importorskip("skimage.data", reason="scikit-image's bundled photos (the trainer's dev extra)")
    from visiondock.faces import find_largest_face

    photo = Image.fromarray(data.astronaut())
    buffer = io.BytesIO()
    photo.save(buffer, "PNG")
    with serve(models["face"]) as client:
        body = client.post("/v1/predict", content=buffer.getvalue()).json()
    assert body["face_found"] is True
    x1, y1, x2, y2 = find_largest_face(photo, margin=0.2)  # the card's face_margin
    assert body["face"]["box"] == {"x1": x1, "y1": y1, "x2": x2, "y2": y2}


@pytest.mark.processes
def test_the_scoring_service_does_not_import_torch() -> None:
    # The scoring image has no torch: its whole import graph, the face finder included, must do without.
    code = "import sys, services.scoring.app, visiondock.faces; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
