"""Bulk work in the labeling app, in headless chromium against the three services as uvicorn processes,
driven as a person would: folders dragged from disk (Chromium builds the drop from real paths, so the
app walks real directory entries), checkboxes with Shift and Ctrl, keys, dialogs answered by clicks and
typing. Every result is checked through the API; every view and dialog passes axe-core. The tests run in
order, each building on the last, over several projects (multiclass, multilabel, detection).

Folder uploads use photos of the shared flowers set (VISIONDOCK_DATASETS, else ../shared/datasets) and
generated photos when it is absent."""

from __future__ import annotations

import io
import os
import random
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from cli.local_services import LocalServices
from tests.scoring import tiny_models
from visiondock.clients import AnnotationClient, RegistryClient, ServiceError
from visiondock.settings import LOCAL_DEV_API_KEY

from .conftest import axe_violations, open_page, screenshot

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DATASETS = Path(os.environ.get("VISIONDOCK_DATASETS") or ROOT.parent / "shared" / "datasets")
FLOWERS = DATASETS / "flowers12" / "train"
# Folders dropped on the multiclass project, and how many photos each holds.
FOLDERS = {"sunflower": 4, "pansy": 3}
CLASSES = "flowers-bulk"
SCENES = "scenes-bulk"
SHELF = "shelf-bulk"


@pytest.fixture(scope="module")
def annotation(app_services: LocalServices) -> Iterator[AnnotationClient]:
    with AnnotationClient(app_services.url("annotation"), LOCAL_DEV_API_KEY) as client:
        yield client


@pytest.fixture(scope="module")
def page(browser: Any, app_services: LocalServices) -> Iterator[Any]:
    outside: list[str] = []
    opened = open_page(browser, app_services.url("annotation"), outside)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(f"{app_services.url('annotation')}/app")
    opened.fill("#api-key", LOCAL_DEV_API_KEY)
    opened.click("button[type=submit]")
    opened.wait_for_selector("h1:has-text('Projects')")
    yield opened
    opened.close()
    assert not errors, f"the app threw: {errors}"
    assert not outside, f"the app reached outside the service: {outside}"


@pytest.fixture(scope="module")
def drop_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folders of photos as on a person's disk: one per class, a note beside the photos, a loose photo."""
    root = tmp_path_factory.mktemp("drop")
    for name, count in FOLDERS.items():
        folder = root / name
        folder.mkdir()
        real = sorted((FLOWERS / name).glob("*.jpg"))[:count] if (FLOWERS / name).is_dir() else []
        for i in range(count):
            if i < len(real):
                shutil.copy(real[i], folder / real[i].name)
            else:
                (folder / f"{name}-{i}.jpg").write_bytes(_photo(f"{name}-{i}"))
    (root / "sunflower" / "notes.txt").write_text("picked in June")
    (root / "loose.jpg").write_bytes(_photo("loose"))
    return root


def _photo(seed: str, size: tuple[int, int] = (320, 240)) -> bytes:
    """A small photo-like JPEG of its own (distinct bytes for each seed)."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(60, 200) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randrange(size[0] - 40), rng.randrange(size[1] - 40)
        draw.ellipse((x, y, x + rng.randrange(20, 80), y + rng.randrange(20, 80)),
                     fill=tuple(rng.randrange(256) for _ in range(3)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def _drag_from_disk(page: Any, selector: str, paths: list[Path]) -> None:
    """Drag files and folders onto an element as from a file manager: Chromium builds the drop from the
    paths, with directory entries the page walks (webkitGetAsEntry), as for a person's drag."""
    target = page.locator(selector)
    target.scroll_into_view_if_needed()
    box = target.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    session = page.context.new_cdp_session(page)
    data = {"items": [], "files": [str(p) for p in paths], "dragOperationsMask": 1}
    for kind in ("dragEnter", "dragOver", "drop"):
        session.send("Input.dispatchDragEvent", {"type": kind, "x": x, "y": y, "data": data})
    session.detach()


def _accessible(page: Any, view: str) -> None:
    violations = axe_violations(page)
    assert not violations, f"{view}: {violations}"


def _status(page: Any) -> str:
    return page.inner_text("#status")


def _wait_status(page: Any, text: str) -> str:
    """The status line once it says `text` (a failure shows what it said instead)."""
    try:
        page.wait_for_function("(text) => document.getElementById('status').textContent.includes(text)", arg=text,
                               timeout=15000)
    except PlaywrightTimeout:
        raise AssertionError(f"the status line never said {text!r}; it says {_status(page)!r}") from None
    return _status(page)


def _record_texts(page: Any, selector: str) -> None:
    """From now on, every text the element shows is kept in window.seenTexts (progress that flashes by)."""
    page.eval_on_selector(selector, """(element) => {
        window.seenTexts = [];
        new MutationObserver(() => window.seenTexts.push(element.textContent))
            .observe(element, { childList: true, characterData: true, subtree: true });
    }""")


def _seen_texts(page: Any) -> list[str]:
    return page.evaluate("window.seenTexts")


def _open(page: Any, base: str, hash_path: str, ready: str) -> None:
    """Go to a view of the app (a new hash: the page stays) and wait for `ready` in it, not in the last view."""
    page.evaluate("document.getElementById('main').replaceChildren()")
    page.goto(f"{base}/app#{hash_path}")
    page.wait_for_selector(ready)


def _by_name(annotation: AnnotationClient, project: str) -> dict[str, dict[str, Any]]:
    return {image["filename"]: image for image in annotation.list_images(project)}


def _exists(annotation: AnnotationClient, path: str) -> bool:
    try:
        annotation.request("GET", path)
    except ServiceError as error:
        if error.is_not_found:
            return False
        raise
    return True


def _grid_ids(page: Any) -> list[str]:
    return page.eval_on_selector_all(".grid li[data-id]", "(tiles) => tiles.map((t) => t.dataset.id)")


def _selected_ids(page: Any) -> set[str]:
    return set(page.eval_on_selector_all(".grid li.picked", "(tiles) => tiles.map((t) => t.dataset.id)"))


def _wait_tiles(page: Any, count: int) -> None:
    """The grid shows `count` images, their thumbnails loaded."""
    page.wait_for_function(f"""() => {{
        const images = [...document.querySelectorAll('.grid li[data-id] img')];
        return images.length === {count} && images.every((i) => i.src.startsWith('blob:') && i.complete);
    }}""")


def test_upload_tags_each_dropped_folder_with_its_name(page: Any, app_services: LocalServices,
                                                        annotation: AnnotationClient, drop_folder: Path) -> None:
    page.fill("#new-id", CLASSES)
    page.fill("#new-tags", "daisy")
    page.click("button:has-text('Create project')")
    page.wait_for_function("window.gridPainted === true")
    _accessible(page, "grid with upload options")
    page.select_option("#upload-tag", "daisy")  # for the loose photo

    _record_texts(page, "#status")
    _drag_from_disk(page, ".dropzone", [drop_folder / "sunflower", drop_folder / "pansy", drop_folder / "loose.jpg"])
    total = sum(FOLDERS.values()) + 1
    status = _wait_status(page, f"Uploaded {total} new")
    assert f"Uploading {total} of {total}…" in _seen_texts(page)
    assert "created tags sunflower, pansy" in status or "created tags pansy, sunflower" in status, status
    assert "left out 1 file(s) that are not images (sunflower/notes.txt)" in status, status
    assert "tagged sunflower: 4" in status and "pansy: 3" in status and "daisy: 1" in status, status
    _wait_tiles(page, total)
    screenshot(page, "upload-folders")

    images = _by_name(annotation, CLASSES)
    folder_of = {path.name: path.parent.name for path in drop_folder.rglob("*.jpg")}
    assert {name: image["tags"] for name, image in images.items()} == {
        name: ["daisy"] if folder == drop_folder.name else [folder] for name, folder in folder_of.items()}
    tags = [t["name"] for t in annotation.list_tags(CLASSES)]
    assert tags[0] == "daisy" and set(tags) == {"daisy", *FOLDERS}
    # The new tags are choices of the upload and of the bulk bar now.
    assert set(page.eval_on_selector_all("#bulk-tag option", "(o) => o.map((x) => x.value)")) == {"daisy", *FOLDERS}

    # Again, the same folder: nothing new, nothing relabeled, and it says so.
    _drag_from_disk(page, ".dropzone", [drop_folder / "pansy"])
    assert "Uploaded 0 new, 3 already there (their labels kept)" in _wait_status(page, "Uploaded 0 new")


def test_a_picked_folder_tags_multilabel_images_with_the_chosen_tag_and_its_name(
        page: Any, app_services: LocalServices, annotation: AnnotationClient, tmp_path: Path) -> None:
    annotation.create_project(SCENES, "multilabel", tags=["outdoor", "sunny"])
    beach = tmp_path / "beach"
    beach.mkdir()
    for i in range(4):
        (beach / f"beach-{i}.jpg").write_bytes(_photo(f"beach-{i}"))
    _open(page, app_services.url("annotation"), f"/p/{SCENES}/images", "#upload-folder")
    page.select_option("#upload-tag", "outdoor")
    page.set_input_files("#upload-folder", beach)
    _wait_status(page, "Uploaded 4 new")
    _wait_tiles(page, 4)
    assert {image["filename"]: image["tags"] for image in annotation.list_images(SCENES)} == {
        f"beach-{i}.jpg": ["outdoor", "beach"] for i in range(4)}


def test_select_with_clicks_shift_ctrl_and_keys_then_tag_split_and_delete(
        page: Any, app_services: LocalServices, annotation: AnnotationClient) -> None:
    base = app_services.url("annotation")
    _open(page, base, f"/p/{CLASSES}/images", ".grid li[data-id]")
    count = len(annotation.get_json(f"/v1/projects/{CLASSES}/images?limit=100")["data"])
    _wait_tiles(page, count)
    ids = _grid_ids(page)
    page.locator(".grid input.pick").nth(0).click()
    page.locator(".grid input.pick").nth(2).click(modifiers=["Shift"])  # 0..2
    page.locator(".grid a.tile").nth(5).click(modifiers=["Control"])  # and 5, without opening it
    assert page.url.endswith(f"#/p/{CLASSES}/images")
    chosen = {ids[0], ids[1], ids[2], ids[5]}
    assert _selected_ids(page) == chosen
    assert page.inner_text("#selected-count").startswith("4 images selected")
    _accessible(page, "grid with a selection")
    screenshot(page, "bulk-selection")

    before = _by_name(annotation, CLASSES)
    page.select_option("#bulk-tag", "daisy")
    page.click(".bulk button:has-text('Set on selected')")
    _wait_status(page, "Set the tag of")
    after = {image["id"]: image for image in annotation.list_images(CLASSES)}
    assert {i: after[i]["tags"] for i in chosen} == {i: ["daisy"] for i in chosen}
    assert all(after[image["id"]]["tags"] == image["tags"] for image in before.values() if image["id"] not in chosen)

    page.select_option("#bulk-split", "test")
    page.click(".bulk button:has-text('Move selected')")
    assert "Moved 4 images to the test split" in _wait_status(page, "Moved")
    assert {i for i, image in after.items() if annotation.get_image(CLASSES, i)["split"] == "test"} == chosen

    # Keys: Escape clears, Space toggles the focused photo, Shift+arrows extend, Ctrl+A takes the page.
    page.focus(".grid a.tile >> nth=0")
    page.keyboard.press("Escape")
    assert not _selected_ids(page)
    page.keyboard.press("Space")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    assert _selected_ids(page) == {ids[0], ids[1], ids[2]}
    assert page.evaluate("document.activeElement.closest('li').dataset.id") == ids[2]
    page.keyboard.press("Control+a")
    assert _selected_ids(page) == set(ids)
    page.keyboard.press("Escape")
    assert page.inner_text("#selected-count").startswith("No images selected")
    page.click("main h1")  # outside the grid, as long as no field has the focus
    page.keyboard.press("Control+a")
    assert _selected_ids(page) == set(ids)
    page.keyboard.press("Escape")
    assert not _selected_ids(page)

    # Everything a filter matches, beyond what the grid shows once the filter is gone.
    page.select_option("#filter-split", "test")
    _wait_tiles(page, 4)
    page.click("button:has-text('Select all matching')")
    _wait_status(page, "Selected all 4 images the filter matches")
    page.select_option("#filter-split", "")
    _wait_tiles(page, count)
    assert _selected_ids(page) == chosen
    page.click("button:has-text('Clear selection')")

    # Delete asks first, says how many, and Cancel deletes nothing.
    doomed = [ids[-2], ids[-1]]
    page.focus(".grid a.tile >> nth=-2")
    page.keyboard.press("Space")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Delete")
    dialog = page.locator("dialog[open]")
    dialog.wait_for()
    assert "Delete 2 images?" in dialog.inner_text()
    _accessible(page, "delete dialog")
    screenshot(page, "bulk-delete-confirm")
    assert page.evaluate("document.activeElement.textContent") == "Cancel"
    page.keyboard.press("Enter")  # on Cancel: Enter never confirms by accident
    _wait_status(page, "Nothing deleted.")
    assert len(list(annotation.list_images(CLASSES))) == count
    page.click(".bulk button:has-text('Delete selected…')")
    page.click("dialog[open] button:has-text('Delete 2 images')")
    assert "Deleted 2 images." in _wait_status(page, "Deleted 2 images")
    _wait_tiles(page, count - 2)
    left = {image["id"] for image in annotation.list_images(CLASSES)}
    assert len(left) == count - 2 and not left & set(doomed)
    assert set(_grid_ids(page)) == left


def test_multilabel_add_and_remove_a_tag_and_detection_only_splits(
        page: Any, app_services: LocalServices, annotation: AnnotationClient) -> None:
    base = app_services.url("annotation")
    _open(page, base, f"/p/{SCENES}/images", ".grid li[data-id]")
    _wait_tiles(page, 4)
    page.focus(".grid a.tile >> nth=0")
    page.keyboard.press("Control+a")
    page.select_option("#bulk-tag", "sunny")
    page.click(".bulk button:has-text('Add to selected')")
    assert "Tagged 4 images sunny" in _wait_status(page, "Tagged")
    page.locator(".grid input.pick").nth(0).click()  # out of the selection: 3 left
    page.select_option("#bulk-tag", "outdoor")
    page.click(".bulk button:has-text('Remove from selected')")
    assert "Took outdoor off 3 images" in _wait_status(page, "Took outdoor off")
    tags = sorted(image["tags"] for image in annotation.list_images(SCENES))
    assert tags == [["beach", "sunny"]] * 3 + [["outdoor", "beach", "sunny"]]

    annotation.create_project(SHELF, "detection", tags=["ketchup"])
    annotation.upload_images(SHELF, [(f"shelf-{i}.jpg", _photo(f"shelf-{i}")) for i in range(3)])
    _open(page, base, f"/p/{SHELF}/images", ".grid li[data-id]")
    _wait_tiles(page, 3)
    assert page.locator("#bulk-tag").count() == 0
    assert "Detection images are labeled with boxes" in page.inner_text(".bulk")
    page.locator(".grid input.pick").nth(0).click()
    page.locator(".grid input.pick").nth(2).click(modifiers=["Shift"])
    page.select_option("#bulk-split", "train")
    page.click(".bulk button:has-text('Move selected')")
    _wait_status(page, "Moved 3 images to the train split")
    assert {image["split"] for image in annotation.list_images(SHELF)} == {"train"}
    _accessible(page, "detection grid")


def test_delete_one_image_from_the_labeler(page: Any, app_services: LocalServices,
                                          annotation: AnnotationClient) -> None:
    _open(page, app_services.url("annotation"), f"/p/{CLASSES}/images", ".grid li[data-id]")
    first = _grid_ids(page)[0]
    page.click(".grid a.tile >> nth=0")
    page.wait_for_selector(".tag-buttons button")
    name = page.inner_text(".filename")
    page.click("button:has-text('Delete image…')")
    page.locator("dialog[open]").wait_for()
    assert f"Delete {name}?" in page.inner_text("dialog[open]")
    _accessible(page, "labeler delete dialog")
    screenshot(page, "labeler-delete-confirm")
    page.keyboard.press("Escape")  # cancels, and does not leave the labeler
    _wait_status(page, "Nothing deleted.")
    assert page.inner_text(".filename") == name
    page.click("button:has-text('Delete image…')")
    page.click("dialog[open] button:has-text('Delete image')")
    _wait_status(page, f"Deleted {name}.")
    page.wait_for_function("(name) => document.querySelector('.filename').textContent !== name", arg=name)
    assert not _exists(annotation, f"/v1/projects/{CLASSES}/images/{first}")


def _counts_shown(page: Any) -> dict[str, int]:
    rows = page.eval_on_selector_all(
        ".tag-table tbody tr[data-tag]",
        "(rows) => rows.map((r) => [r.dataset.tag, r.querySelector('.number').textContent])")
    return {tag: int(count) for tag, count in rows}


def _api_counts(annotation: AnnotationClient, project: str) -> dict[str, int]:
    return annotation.get_json(f"/v1/projects/{project}/stats")["tag_counts"]


def test_rename_merge_and_delete_tags_with_counts(page: Any, app_services: LocalServices,
                                                  annotation: AnnotationClient) -> None:
    _open(page, app_services.url("annotation"), f"/p/{CLASSES}/images", ".grid li[data-id]")
    page.click("#project-nav a:has-text('Tags')")
    page.wait_for_selector(".tag-table tbody tr[data-tag]")
    assert _counts_shown(page) == _api_counts(annotation, CLASSES)
    _accessible(page, "tags")
    screenshot(page, "tags")

    page.click("button[aria-label='Rename pansy']")
    page.fill("dialog[open] input", "pansies")
    page.click("dialog[open] button:has-text('Rename')")
    _wait_status(page, "Renamed pansy to pansies on")
    page.wait_for_selector(".tag-table tr[data-tag=pansies]")
    assert "pansy" not in _api_counts(annotation, CLASSES)
    assert _counts_shown(page) == _api_counts(annotation, CLASSES)

    # Into an existing tag: a merge, asked first with both counts.
    counts = _api_counts(annotation, CLASSES)
    page.click("button[aria-label='Rename sunflower']")
    page.fill("dialog[open] input", "daisy")
    page.click("dialog[open] button:has-text('Rename')")
    merge = page.locator("dialog[open]")
    merge.wait_for()
    page.wait_for_function("document.querySelector('dialog[open] h2').textContent.startsWith('Merge')")
    text = merge.inner_text()
    assert f"daisy already exists (on {counts['daisy']} images)" in text, text
    assert f"The {counts['sunflower']} image" in text, text
    _accessible(page, "merge dialog")
    screenshot(page, "tag-merge")
    page.click("dialog[open] button:has-text('Merge into daisy')")
    _wait_status(page, "Merged sunflower into daisy")
    merged = _api_counts(annotation, CLASSES)
    assert "sunflower" not in merged and merged["daisy"] == counts["daisy"] + counts["sunflower"]
    page.wait_for_function("!document.querySelector('.tag-table tr[data-tag=sunflower]')")
    assert _counts_shown(page) == merged

    # Delete: says what happens to the images, Cancel keeps it.
    carrying = [image["id"] for image in annotation.list_images(CLASSES, tag="pansies")]
    page.click("button[aria-label='Delete pansies']")
    dialog_text = page.locator("dialog[open]").inner_text()
    assert f"It is on {len(carrying)} image" in dialog_text and "they become unlabeled" in dialog_text
    page.click("dialog[open] button:has-text('Cancel')")
    _wait_status(page, "Nothing deleted.")
    assert "pansies" in _api_counts(annotation, CLASSES)
    page.click("button[aria-label='Delete pansies']")
    page.click("dialog[open] button:has-text('Delete tag')")
    _wait_status(page, f"Deleted tag pansies; {len(carrying)} image")
    assert "pansies" not in _api_counts(annotation, CLASSES)
    assert all(not annotation.get_image(CLASSES, i)["labeled"] for i in carrying)

    # A refused change names the API's reason.
    page.click("button[aria-label='Rename daisy']")
    page.fill("dialog[open] input", "a/b")
    page.click("dialog[open] button:has-text('Rename')")
    page.wait_for_selector(".status[data-kind=error]")
    assert "name" in _status(page).lower()
    assert "daisy" in _api_counts(annotation, CLASSES)


def test_delete_a_project_after_typing_its_name(page: Any, app_services: LocalServices,
                                                annotation: AnnotationClient) -> None:
    annotation.create_project("doomed-bulk", "multiclass", tags=["x"])
    annotation.upload_images("doomed-bulk", [(f"d-{i}.jpg", _photo(f"doomed-{i}")) for i in range(2)], tags=["x"])
    _open(page, app_services.url("annotation"), "/projects", "table.projects a[href='#/p/doomed-bulk/images']")
    page.click("button[aria-label='Delete project doomed-bulk']")
    dialog = page.locator("dialog[open]")
    dialog.wait_for()
    assert "Its 2 images (2 labeled)" in dialog.inner_text()
    confirm = dialog.locator("button:has-text('Delete project')")
    assert confirm.is_disabled()
    page.keyboard.type("doomed")
    assert confirm.is_disabled()
    page.keyboard.press("Enter")  # not the name yet: nothing happens
    assert _exists(annotation, "/v1/projects/doomed-bulk")
    page.keyboard.type("-bulk")
    assert confirm.is_enabled()
    _accessible(page, "project delete dialog")
    screenshot(page, "project-delete")
    confirm.click()
    assert "Deleted project doomed-bulk: 2 images" in _wait_status(page, "Deleted project doomed-bulk")
    page.wait_for_function("!document.querySelector(\"table.projects a[href='#/p/doomed-bulk/images']\")")
    assert not _exists(annotation, "/v1/projects/doomed-bulk")
    assert {p["id"] for p in annotation.list_projects()} >= {CLASSES, SCENES, SHELF}


# -- import and export ----------------------------------------------------------------
SOURCE_CLASSES = "source-classes"
SOURCE_BOXES = "source-boxes"


@pytest.fixture(scope="module")
def sources(annotation: AnnotationClient) -> dict[str, dict[str, Any]]:
    """Two labeled projects whose exports are the archives imported: labels by file name."""
    annotation.create_project(SOURCE_CLASSES, "multiclass", tags=["rose", "tulip"])
    for i in range(4):
        annotation.upload_images(SOURCE_CLASSES, [(f"flower-{i}.jpg", _photo(f"flower-{i}"))],
                                 tags=["rose" if i % 2 else "tulip"])
    annotation.create_project(SOURCE_BOXES, "detection", tags=["ketchup", "mustard"])
    uploaded = annotation.upload_images(SOURCE_BOXES, [(f"shelf-{i}.jpg", _photo(f"box-{i}", (400, 300)))
                                                       for i in range(3)])
    for i, result in enumerate(uploaded["results"][:2]):
        annotation.set_image_regions(SOURCE_BOXES, result["image"]["id"], [
            {"tag": "ketchup", "left": 0.1, "top": 0.1, "width": 0.25, "height": 0.3},
            {"tag": "mustard", "left": 0.5 + 0.1 * i, "top": 0.4, "width": 0.2, "height": 0.3}])
    annotation.set_image_regions(SOURCE_BOXES, uploaded["results"][2]["image"]["id"], [])  # a negative
    return {project: _labels(annotation, project) for project in (SOURCE_CLASSES, SOURCE_BOXES)}


def _labels(annotation: AnnotationClient, project: str) -> dict[str, Any]:
    return {image["id"]: (sorted(image["tags"]), sorted((r["tag"], round(r["left"], 2), round(r["top"], 2))
                                                         for r in image["regions"]))
            for image in annotation.list_images(project, labeled=True)}


def _export(annotation: AnnotationClient, project: str, fmt: str, path: Path) -> int:
    """Exports `project` in `fmt` to `path`; the number of images in the archive."""
    return annotation.export_dataset(project, fmt, path)["images"]


@pytest.mark.parametrize(("fmt", "source", "kind"), [
    ("folder", SOURCE_CLASSES, "multiclass"), ("coco", SOURCE_CLASSES, "multiclass"),
    ("csv", SOURCE_CLASSES, "multiclass"), ("coco", SOURCE_BOXES, "detection"), ("voc", SOURCE_BOXES, "detection"),
    ("yolo", SOURCE_BOXES, "detection"), ("csv", SOURCE_BOXES, "detection"), ("product", SOURCE_BOXES, "detection"),
])
def test_import_a_zip_of_each_format_with_progress_and_report(
        page: Any, app_services: LocalServices, annotation: AnnotationClient, sources: dict[str, dict[str, Any]],
        tmp_path: Path, fmt: str, source: str, kind: str) -> None:
    project = f"import-{fmt}-{kind}"
    archive = tmp_path / f"{source}-{fmt}.zip"
    exported = _export(annotation, source, fmt, archive)
    annotation.create_project(project, kind)
    base = app_services.url("annotation")
    _open(page, base, f"/p/{project}/images", ".dropzone")
    page.click("#project-nav a:has-text('Import / export')")
    page.wait_for_selector("#import-format")
    page.select_option("#import-format", fmt)
    if fmt == "coco":
        _drag_from_disk(page, "#import-drop", [archive])  # dropped rather than chosen
        page.wait_for_selector(f"text={archive.name} is ready to import")
    else:
        page.set_input_files("#import-archive", archive)
    _record_texts(page, "form[aria-labelledby=import-title] .progress-text")
    page.click("button:has-text('Import')")
    page.wait_for_selector(".import-report")
    # The service's progress lines, one per image, as they came.
    assert f"Storing images: {exported} of {exported}" in _seen_texts(page)
    report = page.inner_text(".import-report")
    assert f"Import report ({fmt})" in report
    assert _report_value(page, "New") == exported, report
    # The same images (ids are content hashes) with the same labels as the project exported.
    imported = _labels(annotation, project)
    assert len(imported) == exported and imported == {i: sources[source][i] for i in imported}
    assert f"Imported {archive.name}: {exported} new" in _status(page)
    if fmt == "product":
        _accessible(page, "import report")

    # The same archive again: nothing new, nothing relabeled.
    page.set_input_files("#import-archive", archive)
    page.click("button:has-text('Import')")
    page.wait_for_function("(n) => document.getElementById('status').textContent.includes(`${n} already there`)",
                           arg=exported)
    assert _report_value(page, "New") == 0 and _report_value(page, "Already labeled the same") == exported


def _report_value(page: Any, term: str) -> int:
    return int(page.eval_on_selector(".import-report dl", """(list, term) => {
        const dt = [...list.querySelectorAll("dt")].find((d) => d.textContent === term);
        return dt.nextElementSibling.textContent; }""", term))


def test_import_reports_what_it_skipped_and_a_bad_archive_names_the_reason(
        page: Any, app_services: LocalServices, annotation: AnnotationClient, tmp_path: Path) -> None:
    project = "import-skips"
    annotation.create_project(project, "multiclass")
    archive = tmp_path / "labels.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("images/a.jpg", _photo("skip-a"))
        zipped.writestr("images/b.jpg", _photo("skip-b"))
        zipped.writestr("images/broken.jpg", b"not really a photo")
        zipped.writestr("labels.csv", "path,label\nimages/a.jpg,rose\nimages/b.jpg,bad/name\n"
                                      "images/broken.jpg,rose\nimages/missing.jpg,rose\n")
    _open(page, app_services.url("annotation"), f"/p/{project}/data", "#import-format")
    page.select_option("#import-format", "csv")
    page.set_input_files("#import-archive", archive)
    page.click("button:has-text('Import')")
    page.wait_for_selector(".import-report")
    skipped = page.inner_text(".import-report details")
    assert skipped.startswith("Skipped (")
    shown = page.eval_on_selector_all(".import-report details li code", "(c) => c.map((x) => x.textContent)")
    report = annotation.get_json(f"/v1/projects/{project}/stats")
    assert report["image_count"] == _report_value(page, "New")
    assert "images/broken.jpg" in shown and "images/b.jpg" in shown, shown
    assert "skipped (see the report)" in _status(page)
    _accessible(page, "import report with skipped files")
    page.locator(".import-report").scroll_into_view_if_needed()
    screenshot(page, "import-report")

    not_a_zip = tmp_path / "photo.zip"
    not_a_zip.write_bytes(_photo("not-zip"))
    page.set_input_files("#import-archive", not_a_zip)
    page.click("button:has-text('Import')")
    page.wait_for_selector(".status[data-kind=error]")
    assert "zip" in _status(page).lower(), _status(page)
    assert "Import failed:" in page.inner_text(".progress-text")

    # Formats without boxes cannot label a detection project: not offered there.
    _open(page, app_services.url("annotation"), f"/p/{SHELF}/data", "#import-format")
    assert page.eval_on_selector("#import-format option[value=folder]", "(o) => o.disabled")


def test_export_a_split_and_a_versions_snapshot_as_downloads(
        page: Any, app_services: LocalServices, annotation: AnnotationClient, sources: dict[str, dict[str, Any]],
        tmp_path: Path) -> None:
    base = app_services.url("annotation")
    images = list(annotation.list_images(SOURCE_BOXES))
    annotation.request("POST", f"/v1/projects/{SOURCE_BOXES}/images/bulk/split",
                       json={"image_ids": [images[0]["id"], images[1]["id"]], "split": "test"})
    _open(page, base, f"/p/{SOURCE_BOXES}/data", "#export-format")
    page.select_option("#export-format", "yolo")
    page.select_option("#export-split", "test")
    assert page.is_checked("#export-what-split")
    with page.expect_download() as download:
        page.click("button:has-text('Export')")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == f"{SOURCE_BOXES}-yolo.zip"
    names = zipfile.ZipFile(saved).namelist()
    assert sorted(n for n in names if n.startswith("images/")) == sorted(
        f"images/{image['filename']}" for image in images[:2])
    _wait_status(page, f"Exported 2 images to {saved.name}")
    _accessible(page, "import and export")
    screenshot(page, "export")

    # A version's snapshot: exactly the images it learned from, with a warning for one relabeled since.
    chosen = [image["id"] for image in annotation.list_images(SOURCE_CLASSES)][:3]
    lineage = {"dataset": {"content_hash": "x" * 64,
                           "images": [{"id": i, "label_revision": annotation.get_image(SOURCE_CLASSES, i)
                                       ["label_revision"]} for i in chosen]}}
    with RegistryClient(app_services.url("registry"), LOCAL_DEV_API_KEY) as registry:
        model = tiny_models.classifier(tmp_path / "model.onnx", task="multiclass")
        version = registry.register_version(SOURCE_CLASSES, model, {"task": "multiclass",
                                                                    "labels": tiny_models.COLOURS,
                                                                    "project_id": SOURCE_CLASSES,
                                                                    "lineage": lineage})["version"]
    annotation.set_image_tags(SOURCE_CLASSES, chosen[0], ["rose"])
    annotation.set_image_tags(SOURCE_CLASSES, chosen[0], ["tulip"])
    _open(page, base, f"/p/{SOURCE_CLASSES}/data", "#export-format")
    page.wait_for_selector(f"#export-version option[value='{version}']", state="attached")
    page.select_option("#export-format", "csv")
    page.select_option("#export-version", str(version))
    assert page.is_checked("#export-what-snapshot")
    with page.expect_download() as download:
        page.click("button:has-text('Export')")
    saved = tmp_path / "snapshot.zip"
    download.value.save_as(saved)
    rows = zipfile.ZipFile(saved).read("labels.csv").decode().splitlines()[1:]
    by_id = {image["id"]: image for image in annotation.list_images(SOURCE_CLASSES)}
    assert sorted(row.split(",")[0] for row in rows) == sorted(f"images/{by_id[i]['filename']}" for i in chosen)
    status = _wait_status(page, "Exported 3 images")
    assert f"1 image was relabeled since version {version}" in status, status
