"""`visiondock import / export / tag / project delete` against the services as real processes."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from cli.local_services import LocalServices
from tests.e2e.test_cli import cli
from visiondock.clients import AnnotationClient

pytestmark = pytest.mark.e2e
GROCERY = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "grocery"


def _regions(annotation: AnnotationClient, project: str) -> dict[str, list[tuple]]:
    return {image["id"]: sorted((r["tag"], round(r["left"] * image["width"]), round(r["top"] * image["height"]),
                                 round((r["left"] + r["width"]) * image["width"]),
                                 round((r["top"] + r["height"]) * image["height"])) for r in image["regions"])
            for image in annotation.list_images(project)}


def test_a_coco_folder_imports_from_the_command_line(services: LocalServices, annotation: AnnotationClient,
                                                     tmp_path: Path) -> None:
    folder = tmp_path / "coco"
    (folder / "images").mkdir(parents=True)
    for name, colour in (("a.png", (200, 0, 0)), ("b.png", (0, 0, 200))):
        Image.new("RGB", (80, 60), colour).save(folder / "images" / name)
    (folder / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
        "categories": [{"id": 7, "name": "red thing"}, {"id": 8, "name": "unused"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 5, 30.5, 20]}]}))
    cli(services, "project", "create", "cli-coco", "--type", "detection")
    imported = cli(services, "import", "cli-coco", str(folder), "--format", "coco")
    assert imported.returncode == 0, imported.stderr
    assert "imported 2 images" in imported.stdout and "1 boxes" in imported.stdout
    assert "new tags: red thing, unused" in imported.stdout
    boxes = sorted(b for regions in _regions(annotation, "cli-coco").values() for b in regions)
    assert boxes == [("red thing", 10, 5, 40, 25)]
    wrong = cli(services, "import", "cli-coco", str(folder), "--format", "folder")
    assert wrong.returncode == 2 and "carries no boxes" in wrong.stderr


@pytest.mark.datasets
def test_grocery_import_export_reimport_rename_and_delete(services: LocalServices, annotation: AnnotationClient,
                                                          tmp_path: Path) -> None:
    if not GROCERY.is_dir():
        pytest.skip(f"{GROCERY} is not there (the shared datasets)")
    cli(services, "project", "create", "cli-grocery", "--type", "detection")
    first = cli(services, "import", "cli-grocery", str(GROCERY), "--format", "product")
    assert first.returncode == 0, first.stderr
    assert "imported 25 images, 0 already there" in first.stdout and "180 boxes, 0 skipped" in first.stdout
    again = cli(services, "import", "cli-grocery", str(GROCERY), "--format", "product")
    assert "imported 0 images, 25 already there (25 with the same labels), 0 labeled" in again.stdout

    archive = tmp_path / "grocery-yolo.zip"
    exported = cli(services, "export", "cli-grocery", str(archive), "--format", "yolo")
    assert exported.returncode == 0 and "exported 25 images" in exported.stdout, exported.stderr
    with zipfile.ZipFile(archive) as zipped:
        assert zipped.read("classes.txt").decode().split() == ["eggBox", "joghurt", "ketchup", "mushroom",
                                                               "mustard", "orange", "squash", "water"]
        assert len([n for n in zipped.namelist() if n.startswith("labels/")]) == 25
        sizes = {Image.open(io.BytesIO(zipped.read(n))).size for n in zipped.namelist() if n.startswith("images/")}
        assert (1000, 1333) in sizes  # the photos as they were uploaded
    cli(services, "project", "create", "cli-grocery-copy", "--type", "detection")
    copied = cli(services, "import", "cli-grocery-copy", str(archive), "--format", "yolo")
    assert "imported 25 images" in copied.stdout, copied.stderr
    original = _regions(annotation, "cli-grocery")
    assert original.keys() == _regions(annotation, "cli-grocery-copy").keys()
    for image_id, regions in _regions(annotation, "cli-grocery-copy").items():
        assert all(a[0] == b[0] and all(abs(p - q) <= 1 for p, q in zip(a[1:], b[1:], strict=True))
                   for a, b in zip(original[image_id], regions, strict=True))

    renamed = cli(services, "tag", "rename", "cli-grocery-copy", "squash", "pumpkin")
    assert renamed.returncode == 0 and "on 20 images" in renamed.stdout
    refused = cli(services, "tag", "delete", "cli-grocery-copy", "pumpkin")
    assert refused.returncode == 1 and "is on 20 images" in refused.stderr
    assert cli(services, "tag", "delete", "cli-grocery-copy", "pumpkin", "--yes").returncode == 0
    assert annotation.get_json("/v1/projects/cli-grocery-copy/stats")["tag_counts"].get("pumpkin") is None
    kept = cli(services, "project", "delete", "cli-grocery-copy")
    assert kept.returncode == 1 and "has 25 images" in kept.stderr
    gone = cli(services, "project", "delete", "cli-grocery-copy", "--yes")
    assert gone.returncode == 0 and "25 images" in gone.stdout


def test_a_versions_snapshot_exports_exactly_the_images_it_learned_from(
        services: LocalServices, annotation: AnnotationClient, tmp_path: Path) -> None:
    from tests.scoring import tiny_models
    from visiondock.clients import RegistryClient
    from visiondock.lineage import version_lineage
    from visiondock.settings import LOCAL_DEV_API_KEY

    folder = tmp_path / "colours"
    colours = {"red": (200, 0, 0), "blue": (0, 0, 200)}
    for tag, colour in colours.items():
        (folder / tag).mkdir(parents=True)
        for shade in range(3):
            Image.new("RGB", (40, 30), (colour[0] + shade, colour[1], colour[2] + shade)).save(
                folder / tag / f"{shade}.png")
    cli(services, "project", "create", "cli-snapshot", "--type", "multiclass")
    assert cli(services, "import", "cli-snapshot", str(folder), "--format", "folder").returncode == 0
    images = list(annotation.list_images("cli-snapshot"))
    learned = sorted(image["id"] for image in images)[:4]  # the version learned from four of the six
    lineage = version_lineage(images=images, splits={"train": learned[:3], "test": learned[3:]}, params={},
                              project_id="cli-snapshot", parent_version=None)
    with RegistryClient(services.url("registry"), LOCAL_DEV_API_KEY) as registry:
        version = registry.register_version("cli-snapshot", tiny_models.classifier(tmp_path / "m.onnx"),
                                            {"task": "multiclass", "labels": ["blue", "red"], "lineage": lineage})
    snapshot = f"cli-snapshot:{version['version']}"

    exported = cli(services, "export", "cli-snapshot", str(tmp_path / "a.zip"), "--format", "csv",
                   "--snapshot", snapshot)
    assert exported.returncode == 0, exported.stderr
    assert "exported 4 images" in exported.stdout and "relabeled" not in exported.stderr
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        assert sum(name.startswith("images/") for name in archive.namelist()) == 4

    relabeled = next(image for image in images if image["id"] == learned[0])
    annotation.set_image_tags("cli-snapshot", relabeled["id"], ["blue" if relabeled["tags"] == ["red"] else "red"])
    again = cli(services, "export", "cli-snapshot", str(tmp_path / "b.zip"), "--format", "csv",
                "--snapshot", snapshot)
    assert again.returncode == 0 and "1 of the snapshot's images were relabeled" in again.stderr
    both = cli(services, "export", "cli-snapshot", str(tmp_path / "c.zip"), "--format", "csv",
               "--snapshot", snapshot, "--split", "train")
    assert both.returncode == 2 and "choose one of" in both.stderr
