"""Renaming and deleting tags, bulk tag and split changes, deleting a project with its blobs."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.annotation.conftest import jpeg
from visiondock.settings import Settings
from visiondock.storage import open_blob_store


def _project(client: TestClient, project: str, kind: str, tags: list[str], count: int) -> list[str]:
    client.post("/v1/projects", json={"id": project, "type": kind, "tags": tags})
    files = [("files", (f"{i}.jpg", jpeg((10 * i, 40, 90)), "image/jpeg")) for i in range(count)]
    return [r["image"]["id"] for r in client.post(f"/v1/projects/{project}/images", files=files).json()["results"]]


def test_rename_a_tag_on_every_image_and_box(client: TestClient) -> None:
    ids = _project(client, "boxes", "detection", ["car", "bus"], 3)
    for image_id in ids[:2]:
        client.put(f"/v1/projects/boxes/images/{image_id}/regions", json={"regions": [
            {"tag": "car", "left": 0.1, "top": 0.1, "width": 0.2, "height": 0.2},
            {"tag": "bus", "left": 0.5, "top": 0.5, "width": 0.2, "height": 0.2}]})
    assert client.get("/v1/projects/boxes/tags/car").json()["image_count"] == 2
    renamed = client.post("/v1/projects/boxes/tags/car/rename", json={"name": "automobile"})
    assert renamed.status_code == 200 and renamed.json() == {"name": "automobile", "image_count": 2,
                                                             "images_changed": 2}
    image = client.get(f"/v1/projects/boxes/images/{ids[0]}").json()
    assert sorted(r["tag"] for r in image["regions"]) == ["automobile", "bus"]
    assert image["tags"] == ["automobile", "bus"]
    assert [t["name"] for t in client.get("/v1/projects/boxes/tags").json()["data"]] == ["automobile", "bus"]
    taken = client.post("/v1/projects/boxes/tags/bus/rename", json={"name": "automobile"})
    assert taken.status_code == 409 and taken.json()["code"] == "tag_exists"
    merged = client.post("/v1/projects/boxes/tags/bus/rename", json={"name": "automobile", "merge": True})
    assert merged.json()["image_count"] == 2
    assert client.get("/v1/projects/boxes/tags/bus").status_code == 404
    assert client.post("/v1/projects/boxes/tags/nope/rename", json={"name": "x"}).status_code == 404
    assert client.post("/v1/projects/boxes/tags/bus/rename", json={"name": "a/b"}).status_code == 422


def test_delete_a_tag_in_use_needs_confirmation(client: TestClient) -> None:
    ids = _project(client, "flowers", "multiclass", ["rose", "tulip"], 3)
    for image_id in ids[:2]:
        client.put(f"/v1/projects/flowers/images/{image_id}/tags", json={"tags": ["rose"]})
    refused = client.delete("/v1/projects/flowers/tags/rose")
    assert refused.status_code == 409 and refused.json()["code"] == "tag_in_use"
    assert "on 2 images" in refused.json()["detail"]
    assert client.get(f"/v1/projects/flowers/images/{ids[0]}").json()["tags"] == ["rose"]
    deleted = client.delete("/v1/projects/flowers/tags/rose", params={"confirm": "true"})
    assert deleted.json() == {"name": "rose", "image_count": 0, "images_changed": 2}
    image = client.get(f"/v1/projects/flowers/images/{ids[0]}").json()
    assert image["tags"] == [] and image["labeled"] is False
    assert client.delete("/v1/projects/flowers/tags/tulip").status_code == 200  # unused: no question asked


def test_bulk_tags_and_split_answer_per_image(client: TestClient) -> None:
    ids = _project(client, "scenes", "multilabel", ["sky", "sea", "sand"], 3)
    missing = "0" * 64
    added = client.post("/v1/projects/scenes/images/bulk/tags",
                        json={"image_ids": [*ids, missing], "add": ["sky", "sea"]}).json()
    assert (added["updated"], added["failed"]) == (3, 1)
    assert added["results"][-1] == {"id": missing, "status": "not_found", "error": "no such image in the project"}
    removed = client.post("/v1/projects/scenes/images/bulk/tags",
                          json={"image_ids": ids[:2], "remove": ["sea"], "add": ["sand"]}).json()
    assert removed["updated"] == 2
    assert client.get(f"/v1/projects/scenes/images/{ids[0]}").json()["tags"] == ["sky", "sand"]
    unknown = client.post("/v1/projects/scenes/images/bulk/tags", json={"image_ids": ids, "add": ["moon"]})
    assert unknown.status_code == 400 and unknown.json()["code"] == "unknown_tag"
    split = client.post("/v1/projects/scenes/images/bulk/split", json={"image_ids": ids[:2], "split": "test"}).json()
    assert (split["updated"], split["unchanged"]) == (2, 0)
    again = client.post("/v1/projects/scenes/images/bulk/split", json={"image_ids": ids, "split": "test"}).json()
    assert (again["updated"], again["unchanged"]) == (1, 2)
    assert client.get("/v1/projects/scenes/stats").json()["split_counts"] == {"test": 3}
    too_many = client.post("/v1/projects/scenes/images/bulk/split", json={"image_ids": ["x"] * 1001, "split": None})
    assert too_many.status_code == 422


def test_delete_a_project_with_its_blobs(client: TestClient, settings: Settings) -> None:
    ids = _project(client, "doomed", "multiclass", ["a"], 2)
    _project(client, "kept", "multiclass", ["a"], 1)
    blobs = open_blob_store(settings)
    blobs.put(f"thumbnails/doomed/{ids[0]}.jpg", b"thumb")
    blobs.put("review/doomed/capture-1", jpeg())
    refused = client.delete("/v1/projects/doomed")
    assert refused.status_code == 409 and "has 2 images" in refused.json()["detail"]
    deleted = client.delete("/v1/projects/doomed", params={"confirm": "true"})
    assert deleted.json() == {"project": "doomed", "images_deleted": 2, "review_items_deleted": 0,
                              "other_blobs_deleted": 2}
    assert client.get("/v1/projects/doomed").status_code == 404
    assert not list(blobs.list("images/doomed/")) and len(list(blobs.list("images/kept/"))) == 1
    assert not list(blobs.list("thumbnails/doomed/")) and not list(blobs.list("review/doomed/"))
    recreated = client.post("/v1/projects", json={"id": "doomed", "type": "detection"})
    assert recreated.status_code == 201
    assert client.get("/v1/projects/doomed/tags").json()["data"] == []


def test_delete_an_empty_project_needs_no_confirmation(client: TestClient) -> None:
    client.post("/v1/projects", json={"id": "empty", "type": "multiclass"})
    assert client.delete("/v1/projects/empty").status_code == 200
    assert client.delete("/v1/projects/empty").status_code == 404


def test_bulk_delete_answers_per_image_and_removes_bytes_and_thumbnails(client: TestClient,
                                                                        settings: Settings) -> None:
    ids = _project(client, "cull", "multiclass", ["a"], 4)
    _project(client, "other", "multiclass", ["a"], 1)
    assert client.get(f"/v1/projects/cull/images/{ids[0]}/thumbnail").status_code == 200
    missing = "0" * 64
    deleted = client.post("/v1/projects/cull/images/bulk/delete", json={"image_ids": [ids[0], ids[1], missing]})
    assert deleted.status_code == 200
    assert deleted.json() == {"deleted": 2, "failed": 1, "results": [
        {"id": ids[0], "status": "deleted", "error": None}, {"id": ids[1], "status": "deleted", "error": None},
        {"id": missing, "status": "not_found", "error": "no such image in the project"}]}
    assert client.get(f"/v1/projects/cull/images/{ids[0]}").status_code == 404
    assert client.get("/v1/projects/cull/stats").json()["image_count"] == 2
    blobs = open_blob_store(settings)
    assert sorted(info.key for info in blobs.list("images/cull/")) == sorted(f"images/cull/{i}" for i in ids[2:])
    assert not [info.key for info in blobs.list("thumbnails/cull/") if ids[0] in info.key]
    again = client.post("/v1/projects/cull/images/bulk/delete", json={"image_ids": [ids[0]]}).json()
    assert (again["deleted"], again["failed"]) == (0, 1)
    assert client.post("/v1/projects/cull/images/bulk/delete", json={"image_ids": []}).status_code == 422
    assert client.post("/v1/projects/nope/images/bulk/delete", json={"image_ids": ids}).status_code == 404
    assert client.get("/v1/projects/other/stats").json()["image_count"] == 1
