"""Dataset import and export: one contract run over every format and every project type it holds.

import → export → import keeps every image, tag and box (within a pixel); importing the same
archive again changes nothing.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.annotation.datasets import FORMATS
from tests.annotation.conftest import jpeg

TAGS = ["cat", "traffic cone", "eggBox"]
CASES = [(name, kind) for name, fmt in FORMATS.items() for kind in sorted(fmt.exports)]


def _photos(count: int) -> list[bytes]:
    """Distinct JPEGs, landscape and portrait."""
    return [jpeg((20 * i % 256, 255 - 30 * i % 256, 90), (120, 90) if i % 2 else (90, 120)) for i in range(count)]


def _labels(kind: str, index: int, width: int, height: int) -> dict[str, Any]:
    if kind == "multiclass":
        return {"tags": [TAGS[index % 3]]}
    if kind == "multilabel":
        return {"tags": [[], ["cat"], ["cat", "eggBox"], ["traffic cone"], TAGS, ["eggBox"]][index % 6]}
    boxes = [[], [(3.3, 4.6, 40.2, 51.7)], [(0, 0, width, height), (10.5, 20.25, 30.75, 44)],
             [(5, 6, 17, 29), (50.5, 12, 80.4, 60.6), (2, 70, 60, 88)]][index % 4]
    return {"regions": [{"tag": TAGS[(index + i) % 3], "left": x1 / width, "top": y1 / height,
                         "width": (x2 - x1) / width, "height": (y2 - y1) / height}
                        for i, (x1, y1, x2, y2) in enumerate(boxes)]}


def make_project(client: TestClient, project: str, kind: str, count: int = 8) -> None:
    assert client.post("/v1/projects", json={"id": project, "type": kind, "tags": TAGS}).status_code == 201
    files = [("files", (f"photo {i}.jpg", data, "image/jpeg")) for i, data in enumerate(_photos(count))]
    uploaded = client.post(f"/v1/projects/{project}/images", files=files).json()["results"]
    for index, result in enumerate(uploaded):
        image = result["image"]
        labels = _labels(kind, index, image["width"], image["height"])
        path = "regions" if "regions" in labels else "tags"
        answer = client.put(f"/v1/projects/{project}/images/{image['id']}/{path}", json=labels)
        assert answer.status_code == 200, answer.text


def labels_of(client: TestClient, project: str) -> dict[str, dict[str, Any]]:
    images = client.get(f"/v1/projects/{project}/images", params={"limit": 1000}).json()["data"]
    return {image["id"]: image for image in images}


def export(client: TestClient, project: str, fmt: str, **params: Any) -> bytes:
    response = client.get(f"/v1/projects/{project}/export", params={"format": fmt, **params})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    return response.content


def import_zip(client: TestClient, project: str, fmt: str, archive: bytes, **form: Any) -> dict[str, Any]:
    response = client.post(f"/v1/projects/{project}/imports", data={"format": fmt, **form},
                           files={"archive": ("dataset.zip", archive, "application/zip")})
    assert response.status_code == 200, response.text
    return response.json()


def assert_same_labels(expected: dict[str, dict[str, Any]], got: dict[str, dict[str, Any]]) -> None:
    assert set(got) == set(expected)
    for image_id, want in expected.items():
        have = got[image_id]
        assert have["labeled"] == want["labeled"], have["filename"]
        assert sorted(have["tags"]) == sorted(want["tags"]), have["filename"]
        width, height = want["width"], want["height"]

        def pixels(region: dict[str, Any], w: int = width, h: int = height) -> tuple[Any, ...]:
            return (region["tag"], region["left"] * w, region["top"] * h, (region["left"] + region["width"]) * w,
                    (region["top"] + region["height"]) * h)

        wanted, found = sorted(map(pixels, want["regions"])), sorted(map(pixels, have["regions"]))
        assert len(found) == len(wanted), have["filename"]
        for a, b in zip(wanted, found, strict=True):
            assert a[0] == b[0] and all(abs(p - q) <= 1.0 for p, q in zip(a[1:], b[1:], strict=True)), (a, b)


@pytest.mark.parametrize(("fmt", "kind"), CASES, ids=[f"{f}-{k}" for f, k in CASES])
def test_import_export_import_keeps_every_tag_and_box(client: TestClient, fmt: str, kind: str) -> None:
    make_project(client, "source", kind)
    original = labels_of(client, "source")
    if not FORMATS[fmt].carries_negatives:  # e.g. folders cannot say "labeled, no tags"
        original = {k: v for k, v in original.items() if v["tags"] or v["regions"]}
    archive = export(client, "source", fmt)

    client.post("/v1/projects", json={"id": "copy", "type": kind})
    report = import_zip(client, "copy", fmt, archive)
    assert report["created"] == len(original) and report["skipped"] == [] and report["conflicts"] == []
    assert report["labeled"] == sum(1 for v in original.values() if v["labeled"])
    assert set(report["tags_created"]) <= set(TAGS)
    copied = labels_of(client, "copy")
    assert_same_labels(original, copied)

    again = import_zip(client, "copy", fmt, archive)
    assert (again["created"], again["duplicates"], again["labeled"], again["tags_created"]) == \
        (0, len(original), 0, [])
    assert {k: v["etag"] for k, v in labels_of(client, "copy").items()} == {k: v["etag"] for k, v in copied.items()}

    client.post("/v1/projects", json={"id": "copy-of-copy", "type": kind})
    import_zip(client, "copy-of-copy", fmt, export(client, "copy", fmt))
    assert_same_labels(original, labels_of(client, "copy-of-copy"))


def test_export_takes_one_split_or_a_list_of_images(client: TestClient) -> None:
    make_project(client, "split", "multiclass", count=6)
    ids = list(labels_of(client, "split"))
    for image_id in ids[:2]:
        client.put(f"/v1/projects/split/images/{image_id}/split", json={"split": "test"})
    with zipfile.ZipFile(io.BytesIO(export(client, "split", "csv", split="test"))) as archive:
        assert len([n for n in archive.namelist() if n.startswith("images/")]) == 2
    chosen = client.post("/v1/projects/split/export", json={"format": "coco", "image_ids": ids[1:4]})
    assert chosen.status_code == 200 and chosen.headers["x-image-count"] == "3"
    with zipfile.ZipFile(io.BytesIO(chosen.content)) as archive:
        assert len([n for n in archive.namelist() if n.startswith("images/")]) == 3
    missing = client.post("/v1/projects/split/export", json={"format": "coco", "image_ids": [ids[0], "f" * 64]})
    assert missing.status_code == 404 and "1 of the listed images" in missing.json()["detail"]
    wrong = client.get("/v1/projects/split/export", params={"format": "yolo"})
    assert wrong.status_code == 400 and "cannot hold a multiclass project" in wrong.json()["detail"]


def test_import_reports_progress_as_ndjson(client: TestClient) -> None:
    make_project(client, "progress", "detection", count=4)
    archive = export(client, "progress", "yolo")
    client.post("/v1/projects", json={"id": "target", "type": "detection"})
    response = client.post("/v1/projects/target/imports", data={"format": "yolo"},
                           files={"archive": ("d.zip", archive)}, headers={"Accept": "application/x-ndjson"})
    import json

    events = [json.loads(line) for line in response.text.splitlines()]
    assert [e["done"] for e in events if e["event"] == "progress"] == [0, 1, 2, 3, 4]
    assert events[-1]["event"] == "report" and events[-1]["report"]["created"] == 4
