"""Thumbnails made once and kept in the blob store; the app's page, assets, settings and its
same-origin way to the registry."""

from __future__ import annotations

import io
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from cli.local_services import free_port
from services.annotation.app import create_app
from services.annotation.images import thumbnail_blob_key
from visiondock.settings import Settings
from visiondock.storage import open_blob_store

from .conftest import AUTH, jpeg


def _upload(client: TestClient, data: bytes) -> dict:
    client.post("/v1/projects", json={"id": "flowers", "type": "multiclass", "tags": ["rose"]})
    return client.post("/v1/projects/flowers/images", files=[("files", ("a.jpg", data))]).json()["results"][0]["image"]


def test_a_thumbnail_is_made_once_upright_and_small_then_served_from_the_blob_store(client: TestClient,
                                                                                      settings: Settings) -> None:
    photo = Image.new("RGB", (1200, 600), (200, 30, 30))
    photo.paste((30, 30, 200), (0, 0, 600, 600))  # left half blue
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: a viewer turns it a quarter clockwise
    photo.save(buffer, "JPEG", exif=exif)
    image = _upload(client, buffer.getvalue())

    response = client.get(f"/v1/projects/flowers/images/{image['id']}/thumbnail")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert "immutable" in response.headers["cache-control"]
    thumbnail = Image.open(io.BytesIO(response.content))
    assert thumbnail.size == (128, 256)  # upright: the long side is the height now
    assert thumbnail.getpixel((64, 10))[2] > 150  # the blue half went to the top

    blobs = open_blob_store(settings)
    key = thumbnail_blob_key("flowers", image["id"])
    assert blobs.get(key) == response.content
    marker = jpeg((0, 255, 0), (10, 20))
    blobs.put(key, marker, content_type="image/jpeg")
    assert client.get(f"/v1/projects/flowers/images/{image['id']}/thumbnail").content == marker  # kept, not remade

    assert client.delete(f"/v1/projects/flowers/images/{image['id']}").status_code == 204
    assert not blobs.exists(key)
    missing = client.get(f"/v1/projects/flowers/images/{image['id']}/thumbnail")
    assert missing.status_code == 404 and "does not exist" in missing.json()["detail"]


def test_the_app_page_assets_and_settings_are_served(client: TestClient) -> None:
    page = client.get("/app", headers={"X-API-Key": ""})
    assert page.status_code == 200 and "/app/static/app.js" in page.text
    assert client.get("/app/static/labeler.js", headers={"X-API-Key": ""}).status_code == 200
    assert "/v1/drawing-style" in client.get("/app/static/boxes.js").text  # the style /v1/render draws with
    assert client.get("/app/config.json").json()["registry"] == "/app/registry"
    assert "/app" not in client.get("/openapi.json").json()["paths"]


def test_the_registry_way_needs_a_key_reaches_only_runs_and_models_and_says_when_the_registry_is_down(
        tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING",
                        registry_url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with TestClient(create_app(settings), headers=AUTH) as client:
        _check_registry_way(client)


def _check_registry_way(client: TestClient) -> None:
    refused = client.get("/app/registry/v1/runs", headers={"X-API-Key": ""})
    assert refused.status_code == 401
    other = client.get("/app/registry/v1/anything")
    assert other.status_code == 404 and "runs and models" in other.json()["detail"]
    down = client.get("/app/registry/v1/runs")
    assert down.status_code == 503
    assert "cannot reach the registry" in down.json()["detail"]
