"""A 1x100000 PNG (472 bytes) once grew the scoring service to 24 GB: its short side was
scaled up to the model's input before cropping. Every route that takes an image, and the
trainer, must refuse it (and its 100000x1 twin) with a 4xx while the process stays small."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from cli.local_services import LocalServices, ServiceProcess
from tests.scoring import tiny_models
from visiondock.images import DecodedImage, ExtremeAspectRatioError, decode_image, inspect_image
from visiondock.preprocess import PreprocessSpec, fit
from visiondock.settings import LOCAL_DEV_API_KEY
from visiondock.web import http_status

AUTH = {"X-API-Key": LOCAL_DEV_API_KEY}
# Far above what the scoring service uses (about 300 MB with a real model, see `make bench`)
# and far below what the unbounded resize took (24 GB).
PEAK_MEMORY_LIMIT_BYTES = 1024 * 1024 * 1024


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


THIN = {"1x100000": _png(1, 100_000), "100000x1": _png(100_000, 1)}


@pytest.mark.parametrize("name", sorted(THIN))
def test_thin_images_are_refused_where_images_are_opened(name: str) -> None:
    data = THIN[name]
    assert len(data) < 1000
    for check in (inspect_image, decode_image):
        with pytest.raises(ExtremeAspectRatioError, match="more than 20 times") as caught:
            check(data)
        assert http_status(caught.value) == 422


def test_preprocessing_resamples_only_the_kept_square() -> None:
    # A long image inside the aspect limit: resizing the whole first would allocate 256 x 5120.
    image = Image.new("RGB", (10, 200), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 10, 100))
    fitted = fit(image, PreprocessSpec(size=224, resize=256))
    assert fitted.shape == (224, 224, 3)
    # The centre of the strip is where black meets white: both halves stay in the crop.
    assert tuple(fitted[0, 112]) == (255, 255, 255) and tuple(fitted[223, 112]) == (0, 0, 0)


@pytest.fixture(scope="module")
def scoring_with_model_file(services: LocalServices,
                            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A scoring process beside the shared set, serving a tiny model file."""
    model = tiny_models.classifier(tmp_path_factory.mktemp("thin-model") / "colours.onnx")
    with services.another("scoring", "scoring-thin", env={"VISIONDOCK_SCORING_MODEL_PATH": str(model)}) as process:
        yield process


def _image_routes(scoring: str, annotation: str, data: bytes) -> Iterator[tuple[str, httpx.Response]]:
    with httpx.Client(headers=AUTH, timeout=60) as client:
        yield "predict raw", client.post(f"{scoring}/v1/predict", content=data,
                                         headers={"Content-Type": "image/png"})
        yield "predict multipart", client.post(f"{scoring}/v1/predict", files={"file": ("thin.png", data)})
        yield "predict base64", client.post(f"{scoring}/v1/predict",
                                            json={"image_base64": base64.b64encode(data).decode()})
        batch = client.post(f"{scoring}/v1/predict/batch", files=[("files", ("thin.png", data))])
        yield "batch", batch
        yield "render", client.post(f"{scoring}/v1/render", content=data, headers={"Content-Type": "image/png"})
        skill = client.post(f"{scoring}/v1/skills/classify", json={"values": [
            {"recordId": "1", "data": {"image": {"data": base64.b64encode(data).decode()}}}]})
        yield "skill", skill
        created = client.post(f"{annotation}/v1/projects", json={"id": "thin", "name": "thin", "type": "multiclass"})
        assert created.status_code in (201, 409), created.text
        yield "upload", client.post(f"{annotation}/v1/projects/thin/images", files={"files": ("thin.png", data)})
        capture = {"model": "colours", "version": "1", "task": "multiclass", "uncertainty": 0.5,
                   "prediction": {"label": "red"}}
        yield "review capture", client.put(f"{annotation}/v1/projects/thin/review-items/thin-capture",
                                           files={"image": ("thin.png", data)}, data={"capture": json.dumps(capture)})


@pytest.mark.e2e
@pytest.mark.parametrize("name", sorted(THIN))
def test_every_image_route_refuses_thin_images_and_stays_small(services: LocalServices,
                                                               scoring_with_model_file: ServiceProcess,
                                                               name: str) -> None:
    scoring = scoring_with_model_file
    for route, response in _image_routes(scoring.url, services.url("annotation"), THIN[name]):
        body = response.json()
        if route == "batch":
            assert response.status_code == 200 and body["failed"] == 1, body
            assert body["results"][0]["status"] == 422, body
        elif route == "skill":
            errors = body["values"][0]["errors"]
            assert errors and "more than 20 times" in errors[0]["message"], body
        elif route == "upload":
            # Uploads answer per file; the file is refused, nothing is stored.
            assert response.status_code in (200, 201, 207, 422), body
            assert "more than 20 times" in json.dumps(body), body
        else:
            assert response.status_code == 422, (route, body)
            assert "more than 20 times" in body["detail"], (route, body)
    for process in (services.processes["annotation"], scoring):
        assert not process.exited(), f"{process.name} exited"
        assert process.memory_bytes()[1] < PEAK_MEMORY_LIMIT_BYTES, process.name
    with httpx.Client(headers=AUTH) as client:
        ok = client.post(f"{scoring.url}/v1/predict", content=tiny_models.solid((255, 0, 0)))
    assert ok.status_code == 200 and ok.json()["label"] == "red"


def test_the_trainer_skips_a_thin_image_it_finds_stored() -> None:
    # Stored before the limit existed: the trainer's loader refuses it like any unreadable image.
    from services.trainer.data import ImageLoader, ImageRecord

    class OneImage:
        def get_image_bytes(self, project_id: str, image_id: str) -> bytes:
            return THIN["1x100000"]

    loader = ImageLoader(OneImage(), "thin", progress=False)  # type: ignore[arg-type]
    loaded = loader.load([ImageRecord(id="a" * 64, filename="thin.png", tags=["red"], regions=[], split=None)],
                         draft_size=(256, 256))
    assert loaded == {}
    assert "more than 20 times" in loader.skipped[0]["reason"]
    assert isinstance(decode_image(_png(20, 400)), DecodedImage)  # 20:1 is still an image
