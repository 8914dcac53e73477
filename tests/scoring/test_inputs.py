"""Input safety: every bad input is a clear 4xx and the service keeps answering; every
accepted format, mode and orientation is read the way a viewer shows it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from .conftest import AppFactory
from .tiny_models import solid

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _gif_red_then_blue() -> bytes:
    frames = [Image.new("RGB", (40, 30), RED), Image.new("RGB", (40, 30), BLUE)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def _rotated_jpeg() -> bytes:
    """64 wide, 48 high as stored, with EXIF orientation 6 (shown rotated: 48 x 64)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return solid(RED, size=(64, 48), exif=exif.tobytes())


def _transparent_png() -> bytes:
    image = Image.new("RGBA", (40, 30), (0, 0, 255, 0))  # invisible blue: a viewer shows white
    image.paste((255, 0, 0, 255), (0, 0, 40, 30))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(("name", "data"), [
    ("png", solid(RED, fmt="PNG")),
    ("bmp", solid(RED, fmt="BMP")),
    ("webp", solid(RED, fmt="WEBP", lossless=True)),
    ("gif (first frame)", _gif_red_then_blue()),
    ("cmyk jpeg", solid(RED, mode="CMYK")),
    ("rgba png", _transparent_png()),
    ("palette png", solid(RED, fmt="PNG", mode="P")),
])
def test_accepted_formats_and_modes_read_as_shown(serve: AppFactory, models: dict[str, Path], name: str,
                                                  data: bytes) -> None:
    with serve(models["multiclass"]) as client:
        response = client.post("/v1/predict", content=data)
    assert response.status_code == 200, (name, response.text)
    assert response.json()["label"] == "red", name


def test_grayscale_is_converted(serve: AppFactory, models: dict[str, Path]) -> None:
    with serve(models["multiclass"]) as client:
        response = client.post("/v1/predict", content=solid((200, 200, 200), mode="L"))
    assert response.status_code == 200
    assert response.json()["uncertain"] is True  # equal channels: no colour wins


def test_exif_orientation_is_applied(serve: AppFactory, models: dict[str, Path]) -> None:
    with serve(models["detection"]) as client:
        body = client.post("/v1/predict", content=_rotated_jpeg()).json()
    assert body["image"] == {"width": 48, "height": 64}
    assert all(d["box"]["x2"] <= 48 and d["box"]["y2"] <= 64 for d in body["detections"])


def test_large_jpeg_uses_draft_mode_but_reports_original_pixels(serve: AppFactory, models: dict[str, Path]) -> None:
    big = Image.new("RGB", (1600, 1200), RED)
    big.paste(BLUE, (800, 600, 1600, 1200))
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=90)
    with serve(models["detection"]) as client:
        body = client.post("/v1/predict", content=buffer.getvalue()).json()
    assert body["image"] == {"width": 1600, "height": 1200}
    blue = next(d for d in body["detections"] if d["label"] == "blue")
    assert blue["box"] == pytest.approx({"x1": 800, "y1": 600, "x2": 1600, "y2": 1200})


@pytest.mark.parametrize(("body", "content_type", "status", "words"), [
    (b"", "image/jpeg", 400, "no image"),
    (b"just some text", "application/octet-stream", 415, "not an image"),
    (solid(RED)[:200], "image/jpeg", 400, "truncated"),
    (solid(RED, fmt="TIFF"), "image/tiff", 415, "TIFF is not accepted"),
    (b'{"image_base64": "***"}', "application/json", 400, "not valid base64"),
    (b'{"image": "abc"}', "application/json", 400, "image_base64"),
    (b'{"image_base64": ', "application/json", 400, "not valid JSON"),
    (b'{"image_base64": 12}', "application/json", 400, "base64 string"),
    (b"--x\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--x--\r\n",
     "multipart/form-data; boundary=x", 400, "field named 'file'"),
])
def test_bad_inputs_get_a_clear_4xx(serve: AppFactory, models: dict[str, Path], body: bytes, content_type: str,
                                    status: int, words: str) -> None:
    with serve(models["multiclass"]) as client:
        response = client.post("/v1/predict", content=body, headers={"Content-Type": content_type})
        after = client.post("/v1/predict", content=solid(RED))
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert after.status_code == 200  # still serving


def test_size_and_pixel_limits(serve: AppFactory, models: dict[str, Path]) -> None:
    big = solid(RED, size=(400, 300), fmt="PNG")
    with serve(models["multiclass"], scoring_max_body_bytes=2_000, scoring_max_pixels=10_000) as client:
        too_many_bytes = client.post("/v1/predict", content=b"\xff" * 70_000)
        too_many_pixels = client.post("/v1/predict", content=big)
        declared = client.post("/v1/predict", content=b"x", headers={"Content-Length": "999999999"})
        small = client.post("/v1/predict", content=solid(RED, size=(50, 50), fmt="PNG"))
    assert too_many_bytes.status_code == 413 and "limit" in too_many_bytes.json()["detail"]
    assert too_many_pixels.status_code == 413 and "pixels" in too_many_pixels.json()["detail"]
    assert declared.status_code == 413
    assert small.status_code == 200


def test_decompression_bomb_is_refused(serve: AppFactory, models: dict[str, Path]) -> None:
    # 20000 x 20000 of one colour compresses to a few hundred kilobytes and would be 1.2 GB decoded.
    bomb = Image.new("1", (20000, 20000))
    buffer = io.BytesIO()
    bomb.save(buffer, "PNG")
    with serve(models["multiclass"]) as client:
        response = client.post("/v1/predict", content=buffer.getvalue())
    assert response.status_code == 413
    assert "too many pixels" in response.json()["detail"]


def test_missing_or_wrong_api_key(serve: AppFactory, models: dict[str, Path]) -> None:
    with serve(models["multiclass"]) as client:
        missing = client.post("/v1/predict", content=solid(RED), headers={"X-API-Key": ""})
        wrong = client.post("/v1/predict", content=solid(RED), headers={"X-API-Key": "nope"})
        health = client.get("/healthz", headers={"X-API-Key": ""})
    assert missing.status_code == 401 and wrong.status_code == 401
    assert health.status_code == 200


def test_a_file_that_is_not_a_model_keeps_the_service_up_and_not_ready(serve: AppFactory, tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    with serve(broken) as client:
        ready = client.get("/readyz")
        predict = client.post("/v1/predict", content=solid(RED))
    assert ready.status_code == 503 and "cannot load" in ready.json()["error"]
    assert predict.status_code == 503 and "no model loaded" in predict.json()["detail"]


def test_readyz_says_how_batches_run(serve: AppFactory, models: dict[str, Path]) -> None:
    with serve(models["multiclass"], scoring_batch_runners=3, scoring_max_batch_size=4) as client:
        batching = client.get("/readyz").json()["batching"]
        answer = client.post("/v1/predict", content=solid(RED))
    assert batching == {"max_batch_size": 4, "max_queue_delay_ms": 2.0, "runners": 3}
    assert answer.status_code == 200
