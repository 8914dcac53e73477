"""The annotation API: projects, tags, uploads with de-duplication, labels and paging."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from visiondock.settings import Settings

from .conftest import jpeg


def create(client: TestClient, project: str = "shelf", kind: str = "multiclass", tags: tuple[str, ...] = ("a", "b"),
           ) -> dict:
    response = client.post("/v1/projects", json={"id": project, "type": kind, "tags": list(tags)})
    assert response.status_code == 201, response.text
    return response.json()


def upload(client: TestClient, project: str, *files: tuple[str, bytes], **form: str) -> dict:
    response = client.post(f"/v1/projects/{project}/images", files=[("files", f) for f in files], data=form)
    assert response.status_code == 200, response.text
    return response.json()


def test_projects_are_created_once_and_listed(client: TestClient) -> None:
    create(client, "shelf")
    again = client.post("/v1/projects", json={"id": "shelf", "type": "multiclass"})
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    create(client, "parts", "detection", ())
    listed = client.get("/v1/projects", params={"limit": 1}).json()
    assert [p["id"] for p in listed["data"]] == ["shelf"]
    rest = client.get("/v1/projects", params={"limit": 1, "continuation": listed["continuation"]}).json()
    assert [p["id"] for p in rest["data"]] == ["parts"] and rest["continuation"] is None
    assert client.get("/v1/projects/parts").json()["type"] == "detection"


def test_invalid_project_bodies_say_which_field_is_wrong(client: TestClient) -> None:
    response = client.post("/v1/projects", json={"id": "Has Spaces", "type": "segmentation"})
    assert response.status_code == 422
    body = response.json()
    assert {e["field"] for e in body["errors"]} == {"id", "type"}
    assert "multiclass" in body["detail"]
    missing = client.get("/v1/projects/nope")
    assert missing.status_code == 404 and missing.json() == {"detail": "project 'nope' does not exist",
                                                            "code": "not_found"}


def test_tags_are_unique_per_project(client: TestClient) -> None:
    create(client, tags=("a",))
    assert client.post("/v1/projects/shelf/tags", json={"name": "b"}).status_code == 201
    assert client.post("/v1/projects/shelf/tags", json={"name": "b"}).status_code == 409
    assert client.post("/v1/projects/shelf/tags", json={"name": "bad/name"}).status_code == 422
    assert [t["name"] for t in client.get("/v1/projects/shelf/tags").json()["data"]] == ["a", "b"]


def test_upload_dedupes_by_content_and_reports_each_file(client: TestClient) -> None:
    create(client)
    red, blue = jpeg((200, 0, 0)), jpeg((0, 0, 200))
    first = upload(client, "shelf", ("red.jpg", red), ("blue.jpg", blue), ("red-again.jpg", red), tags="a")
    assert [r["status"] for r in first["results"]] == ["created", "created", "duplicate"]
    assert (first["created"], first["duplicates"], first["rejected"]) == (2, 1, 0)
    image = first["results"][0]["image"]
    assert image["tags"] == ["a"] and image["labeled"] and image["content_type"] == "image/jpeg"
    assert (image["width"], image["height"]) == (48, 32)
    second = upload(client, "shelf", ("copy.jpg", red))
    assert second["results"][0]["status"] == "duplicate"
    assert second["results"][0]["image"]["id"] == image["id"]
    content = client.get(f"/v1/projects/shelf/images/{image['id']}/content")
    assert content.content == red and content.headers["content-type"] == "image/jpeg"


def test_uploads_refuse_bad_files_with_reasons(client: TestClient, settings: Settings) -> None:
    create(client)
    good = jpeg()
    only_bad = client.post("/v1/projects/shelf/images",
                           files=[("files", ("a.txt", b"text")), ("files", ("b.jpg", good[:200]))])
    assert only_bad.status_code == 415
    assert "a.txt: not an image" in only_bad.json()["detail"] and "b.jpg:" in only_bad.json()["detail"]
    unknown_tag = client.post("/v1/projects/shelf/images", files=[("files", ("ok.jpg", good))],
                              data={"tags": "zebra"})
    assert unknown_tag.status_code == 400 and "zebra" in unknown_tag.json()["detail"]
    two_tags = client.post("/v1/projects/shelf/images", files=[("files", ("ok.jpg", good))], data={"tags": "a,b"})
    assert two_tags.status_code == 400 and "exactly one tag" in two_tags.json()["detail"]
    no_files = client.post("/v1/projects/shelf/images", data={"tags": "a"})
    assert no_files.status_code == 422
    # Nothing of any refused upload was stored.
    assert client.get("/v1/projects/shelf/images").json()["data"] == []
    assert not list((settings.home / "blobs" / "data").rglob("*.*")) and not list(
        (settings.home / "blobs" / "data").glob("images/shelf/*"))


def test_labels_follow_the_project_type(client: TestClient) -> None:
    create(client, "cls", "multiclass", ("a", "b"))
    create(client, "tags", "multilabel", ("x", "y"))
    create(client, "boxes", "detection", ("can",))
    ids = {p: upload(client, p, ("i.jpg", jpeg()))["results"][0]["image"]["id"] for p in ("cls", "tags", "boxes")}

    assert client.put(f"/v1/projects/cls/images/{ids['cls']}/tags", json={"tags": ["a", "b"]}).status_code == 400
    one = client.put(f"/v1/projects/cls/images/{ids['cls']}/tags", json={"tags": ["b"]}).json()
    assert one["tags"] == ["b"] and one["labeled"]

    both = client.put(f"/v1/projects/tags/images/{ids['tags']}/tags", json={"tags": ["x", "y"]}).json()
    assert both["tags"] == ["x", "y"] and both["labeled"]
    none = client.put(f"/v1/projects/tags/images/{ids['tags']}/tags", json={"tags": []}).json()
    assert none["tags"] == [] and none["labeled"]  # reviewed: none of the tags applies

    assert client.put(f"/v1/projects/boxes/images/{ids['boxes']}/tags", json={"tags": ["can"]}).status_code == 400
    box = {"tag": "can", "left": 0.1, "top": 0.2, "width": 0.3, "height": 0.4}
    boxed = client.put(f"/v1/projects/boxes/images/{ids['boxes']}/regions", json={"regions": [box]}).json()
    assert boxed["regions"] == [box] and boxed["tags"] == ["can"] and boxed["labeled"]
    outside = {**box, "left": 0.9}
    refused = client.put(f"/v1/projects/boxes/images/{ids['boxes']}/regions", json={"regions": [outside]})
    assert refused.status_code == 422 and "inside the image" in refused.json()["detail"]
    assert client.put(f"/v1/projects/cls/images/{ids['cls']}/regions", json={"regions": [box]}).status_code == 400


def test_stale_etag_is_refused_with_412(client: TestClient) -> None:
    create(client)
    image = upload(client, "shelf", ("i.jpg", jpeg()))["results"][0]["image"]
    path = f"/v1/projects/shelf/images/{image['id']}/tags"
    first = client.put(path, json={"tags": ["a"]}, headers={"If-Match": image["etag"]})
    assert first.status_code == 200
    stale = client.put(path, json={"tags": ["b"]}, headers={"If-Match": image["etag"]})
    assert stale.status_code == 412 and "read it again" in stale.json()["detail"]
    # What changed, in words a person reads: neither the image's id (64 hex digits) nor an etag.
    assert stale.json()["detail"] == ("this image was changed by someone else since you read it; read it again "
                                      "and retry")
    assert client.get(f"/v1/projects/shelf/images/{image['id']}").json()["tags"] == ["a"]


def test_listing_filters_and_pages(client: TestClient) -> None:
    create(client)
    files = [(f"{i}.jpg", jpeg((i * 20, 100, 50))) for i in range(7)]
    upload(client, "shelf", *files[:3], tags="a")
    upload(client, "shelf", *files[3:5], tags="b", split="test")
    upload(client, "shelf", *files[5:])
    seen, token = [], None
    while True:
        params = {"limit": 2, **({"continuation": token} if token else {})}
        page = client.get("/v1/projects/shelf/images", params=params).json()
        seen += [image["filename"] for image in page["data"]]
        token = page["continuation"]
        if token is None:
            break
    assert seen == [f"{i}.jpg" for i in range(7)]

    def names(**params: str) -> list[str]:
        return [i["filename"] for i in client.get("/v1/projects/shelf/images", params=params).json()["data"]]

    assert names(labeled="false") == ["5.jpg", "6.jpg"]
    assert names(tag="b") == ["3.jpg", "4.jpg"]
    assert names(split="test") == ["3.jpg", "4.jpg"]
    assert names(split="none", labeled="true") == ["0.jpg", "1.jpg", "2.jpg"]
    assert client.get("/v1/projects/shelf/images", params={"labeled": "maybe"}).status_code == 400
    bad_token = client.get("/v1/projects/shelf/images", params={"continuation": "not-a-token"})
    assert bad_token.status_code == 400 and "continuation token" in bad_token.json()["detail"]
    stats = client.get("/v1/projects/shelf/stats").json()
    assert stats == {"image_count": 7, "labeled_count": 5, "tag_counts": {"a": 3, "b": 2},
                     "split_counts": {"none": 5, "test": 2}}


def test_delete_removes_document_and_bytes(client: TestClient, settings: Settings) -> None:
    create(client)
    image = upload(client, "shelf", ("i.jpg", jpeg()))["results"][0]["image"]
    blob = settings.home / "blobs" / "data" / "images" / "shelf" / image["id"]
    assert blob.exists()
    assert client.delete(f"/v1/projects/shelf/images/{image['id']}").status_code == 204
    assert not blob.exists()
    assert client.get(f"/v1/projects/shelf/images/{image['id']}").status_code == 404


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}])
def test_every_api_route_needs_a_valid_key(settings: Settings, headers: dict[str, str]) -> None:
    from services.annotation.app import create_app

    with TestClient(create_app(settings)) as anonymous:
        refused = anonymous.get("/v1/projects", headers=headers)
        assert refused.status_code == 401 and "API key" in refused.json()["detail"]
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/readyz").json()["status"] == "ready"
        assert anonymous.get("/v1/projects", headers={"Authorization": "Bearer " + settings.api_keys[0]}
                             ).status_code == 200
