"""Zip archives from strangers, bad datasets, and the real grocery photos."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.annotation.datasets import ArchiveError, ArchiveLimits, FolderSource, ZipSource, get_format
from tests.annotation.conftest import jpeg

GROCERY = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "grocery"


def _zip(members: dict[str, bytes], *, compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _post(client: TestClient, project: str, fmt: str, archive: bytes) -> tuple[int, dict]:
    response = client.post(f"/v1/projects/{project}/imports", data={"format": fmt},
                           files={"archive": ("d.zip", archive, "application/zip")})
    return response.status_code, response.json()


@pytest.fixture
def shapes(client: TestClient) -> str:
    client.post("/v1/projects", json={"id": "shapes", "type": "multiclass"})
    return "shapes"


@pytest.mark.parametrize(("members", "status", "words"), [
    ({"../evil/a.jpg": jpeg()}, 400, "outside the archive"),
    ({"/etc/a.jpg": jpeg()}, 400, "outside the archive"),
    ({"C:/a.jpg": jpeg()}, 400, "outside the archive"),
    ({"red/a.jpg": jpeg(), "bomb.csv": b"0" * (3 * 1024 * 1024)}, 413, "zip bomb"),
])
def test_unsafe_archives_are_refused_before_anything_is_stored(client: TestClient, shapes: str, members: dict,
                                                              status: int, words: str) -> None:
    code, body = _post(client, shapes, "folder", _zip(members, compression=zipfile.ZIP_DEFLATED))
    assert code == status and words in body["detail"] and body["code"] in ("invalid_archive", "payload_too_large")
    assert client.get(f"/v1/projects/{shapes}/stats").json()["image_count"] == 0


def test_bad_archives_and_wrong_formats_get_a_clear_400(client: TestClient, shapes: str) -> None:
    code, body = _post(client, shapes, "folder", b"PK\x03\x04 not really a zip")
    assert code == 400 and "not a readable zip archive" in body["detail"]
    code, body = _post(client, shapes, "coco", _zip({"a.jpg": jpeg()}))
    assert code == 400 and "not a coco dataset" in body["detail"] and body["code"] == "invalid_dataset"
    code, body = _post(client, shapes, "yolo", _zip({"images/a.jpg": jpeg(), "labels/a.txt": b"0 .5 .5 .2 .2"}))
    assert code == 400 and "classes.txt" in body["detail"]
    client.post("/v1/projects", json={"id": "boxes", "type": "detection"})
    code, body = _post(client, "boxes", "folder", _zip({"red/a.jpg": jpeg()}))
    assert code == 400 and "carries no boxes" in body["detail"]
    code, body = _post(client, shapes, "parquet", _zip({"red/a.jpg": jpeg()}))
    assert code == 422 and body["code"] == "invalid_request"


def test_the_report_says_what_was_skipped_and_why(client: TestClient, shapes: str) -> None:
    csv = (b"path,label\nred.jpg,red\nred-again.jpg,blue\nmissing.jpg,red\nnot-an-image.jpg,red\n"
           b"both.jpg,red;blue\n")
    archive = _zip({"labels.csv": csv, "red.jpg": jpeg((200, 0, 0)), "red-again.jpg": jpeg((200, 0, 0)),
                    "not-an-image.jpg": b"hello", "both.jpg": jpeg((0, 0, 200)), "loose.jpg": jpeg((0, 200, 0))})
    code, report = _post(client, shapes, "csv", archive)
    assert code == 200
    reasons = {item["path"]: item["reason"] for item in report["skipped"]}
    assert "no such image" in reasons["missing.jpg"]
    assert "not an image" in reasons["not-an-image.jpg"]
    assert "one tag; the dataset gives 2" in reasons["both.jpg"]
    # The same photo under two names, labeled red and blue: merged, hence two classes: skipped as well.
    assert "one tag; the dataset gives 2" in reasons["red.jpg"]
    assert any("same image as red.jpg" in note["note"] for note in report["notes"])
    assert (report["created"], report["unlabeled"]) == (1, 1)  # loose.jpg: no row names it
    assert sorted(report["tags_created"]) == ["blue", "red"]


def test_a_duplicate_labeled_otherwise_keeps_its_labels_unless_replaced(client: TestClient, shapes: str) -> None:
    archive = _zip({"red/a.jpg": jpeg((200, 0, 0))})
    assert _post(client, shapes, "folder", archive)[1]["labeled"] == 1
    _, report = _post(client, shapes, "folder", _zip({"blue/a.jpg": jpeg((200, 0, 0))}))
    assert report["conflicts"][0]["path"] == "blue/a.jpg" and report["labeled"] == 0
    replaced = client.post(f"/v1/projects/{shapes}/imports", data={"format": "folder", "replace_labels": "true"},
                           files={"archive": ("d.zip", _zip({"blue/a.jpg": jpeg((200, 0, 0))}))}).json()
    assert replaced["labeled"] == 1
    assert client.get(f"/v1/projects/{shapes}/images").json()["data"][0]["tags"] == ["blue"]


def test_zip_source_limits_entries_sizes_and_links() -> None:
    archive = _zip({f"red/{i}.jpg": jpeg((i, 0, 0)) for i in range(5)})
    with pytest.raises(ArchiveError, match="5 entries; the limit is 4"):
        ZipSource(io.BytesIO(archive), ArchiveLimits(max_entries=4))
    with pytest.raises(ArchiveError, match="limit per file"):
        ZipSource(io.BytesIO(archive), ArchiveLimits(max_member_bytes=100))
    with pytest.raises(ArchiveError, match="unpacks to"):
        ZipSource(io.BytesIO(archive), ArchiveLimits(max_total_bytes=1000))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        link = zipfile.ZipInfo("red/link.jpg")
        link.external_attr = (0o120777 << 16)
        zipped.writestr(link, "/etc/passwd")
    with pytest.raises(ArchiveError, match="is a link"):
        ZipSource(io.BytesIO(buffer.getvalue()))
    source = ZipSource(io.BytesIO(_zip({"__MACOSX/._a.jpg": b"x", ".hidden.jpg": b"x", "red/a.jpg": jpeg()})))
    assert source.files() == ["red/a.jpg"]


def _directory_only(entries: int, *, declared_entries: int | None = None, directory: bytes | None = None) -> bytes:
    """An archive that is only a central directory (what a stranger can send in a few megabytes): `entries`
    records of one empty member each, or `directory` as given; the end records declare `declared_entries`."""
    if directory is None:
        record = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0) + b"a"
        directory = record * entries
    declared = entries if declared_entries is None else declared_entries
    end = b""
    if declared > 0xFFFF:  # ZIP64: the counts live in a ZIP64 end record, found through its locator
        end += struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, declared, declared, len(directory), 0)
        end += struct.pack("<4sLQL", b"PK\x06\x07", 0, len(directory), 1)
        declared = 0xFFFF
    end += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, declared, declared, len(directory), 0, 0)
    return directory + end


def test_a_huge_directory_is_refused_from_the_end_record_before_it_is_parsed() -> None:
    # The end record says a million entries; the directory is garbage after its first record. Parsing it
    # would fail as a broken archive (after building an object per entry of a real one): the end record
    # alone is enough to refuse it as too large.
    record = _directory_only(1)[:47]
    claimed = _directory_only(0, declared_entries=1_000_000, directory=record + b"\0" * 1000)
    with pytest.raises(ArchiveError, match="lists 1,000,000 entries; the limit is 100,000") as refused:
        ZipSource(io.BytesIO(claimed))
    assert refused.value.too_large
    # A directory larger than its limit is refused the same way, whatever count it declares.
    oversized = _directory_only(0, declared_entries=10, directory=record + b"\0" * (33 * 1024 * 1024))
    with pytest.raises(ArchiveError, match="directory is 34,603,055 bytes; the limit is 33,554,432") as refused:
        ZipSource(io.BytesIO(oversized))
    assert refused.value.too_large


def test_an_archive_of_only_a_directory_gets_a_413_and_the_service_stays_up(client: TestClient, shapes: str) -> None:
    code, body = _post(client, shapes, "folder", _directory_only(200_001))
    assert code == 413 and "200,001 entries" in body["detail"], body
    assert _post(client, shapes, "folder", _zip({"red/a.jpg": jpeg()}))[1]["created"] == 1


@pytest.mark.datasets
def test_the_grocery_photos_import_with_every_box(client: TestClient) -> None:
    if not GROCERY.is_dir():
        pytest.skip(f"{GROCERY} is not there (the shared datasets)")
    found = get_format("product").read(FolderSource(GROCERY))
    members = {path: (GROCERY / path).read_bytes() for path in FolderSource(GROCERY).files()}
    client.post("/v1/projects", json={"id": "grocery", "type": "detection"})
    code, report = _post(client, "grocery", "product", _zip(members))
    assert code == 200 and report["skipped"] == [] and report["conflicts"] == []
    assert (report["images"], report["created"], report["labeled"], report["boxes"]) == (25, 25, 25, 180)
    assert sorted(report["tags_created"]) == ["eggBox", "joghurt", "ketchup", "mushroom", "mustard", "orange",
                                              "squash", "water"]
    stats = client.get("/v1/projects/grocery/stats").json()
    assert (stats["image_count"], stats["labeled_count"], stats["tag_counts"]["squash"]) == (25, 25, 20)
    images = {i["filename"]: i for i in client.get("/v1/projects/grocery/images", params={"limit": 100}).json()["data"]}
    assert all(not images[f"negative/{n}.jpg"]["regions"] for n in range(1, 6))
    first = images["positive/0.jpg"]
    assert (first["width"], first["height"]) == (1000, 1333)
    region = first["regions"][0]
    assert region["tag"] == "joghurt"
    assert abs(region["left"] * 1000 - 213) < 0.01 and abs((region["top"] + region["height"]) * 1333 - 473) < 0.01
    assert sum(len(s.boxes) for s in found.samples) == 180
