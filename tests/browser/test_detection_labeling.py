"""Detection labeling in headless chromium against the three services as uvicorn processes, driven
with keys, drags and the wheel as a person would: boxes keep the label they were drawn with, suggestions
come from the project's own model, boxes can be drawn precisely, and the review queue of a detector's
captured predictions is worked through with the boxes on the photo.

The scoring service serves `flowers` (a classifier) as its primary model and every model with a
`production` alias beside it, as `visiondock up` does; the models are tiny real ONNX files
(tests/scoring/tiny_models) registered in the real registry. Every prediction is captured for review.
Shelf photos come from the shared grocery set (VISIONDOCK_DATASETS, else ../shared/datasets) and a
generated shelf stands in when it is absent."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

from cli.local_services import LocalServices
from tests.scoring import tiny_models
from tests.support.stack import running_services
from visiondock.clients import AnnotationClient, RegistryClient, ScoringClient
from visiondock.settings import LOCAL_DEV_API_KEY

from .conftest import axe_violations, open_page, screenshot

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DATASETS = Path(os.environ.get("VISIONDOCK_DATASETS") or ROOT.parent / "shared" / "datasets")
GROCERY = DATASETS / "grocery" / "positive"
RED, BLUE, DARK = (230, 20, 20), (20, 20, 230), (15, 15, 15)
# Registry models with a production alias: (name, task). `flowers` is the scoring service's primary model.
MODELS = (("flowers", "multiclass"), ("shelf-suggest", "detection"), ("crates", "detection"),
          ("shelf-review", "detection"))


@dataclass(frozen=True)
class Shelf:
    """A shelf photo and its products' boxes in pixels (x1, y1, x2, y2) with their labels."""

    name: str
    jpeg: bytes
    width: int
    height: int
    boxes: list[tuple[str, tuple[int, int, int, int]]]


def _generated_shelf() -> Shelf:
    image = Image.new("RGB", (900, 700), (235, 230, 220))
    draw = ImageDraw.Draw(image)
    boxes = []
    for i, (label, colour) in enumerate((("yoghurt", (200, 40, 40)), ("squash", (40, 160, 60)),
                                         ("mushroom", (40, 80, 200)), ("eggbox", (200, 170, 40)),
                                         ("ketchup", (150, 30, 30)), ("mustard", (220, 200, 60)))):
        # Small products (100 x 80 of 900 x 700), as on a real shelf photo.
        x, y = 250 + (i % 3) * 150, 230 + (i // 3) * 150
        draw.rectangle((x, y, x + 100, y + 80), fill=colour)
        boxes.append((label, (x, y, x + 100, y + 80)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return Shelf("generated-shelf.jpg", buffer.getvalue(), 900, 700, boxes)


def shelf_photo() -> Shelf:
    """The first grocery photo (boxes and labels from its .tsv files), or a generated shelf without it."""
    photo = GROCERY / "0.jpg"
    if not photo.exists():
        return _generated_shelf()
    corners = []
    for line in (GROCERY / "0.bboxes.tsv").read_text().splitlines():
        if line.strip():
            x1, y1, x2, y2 = (int(v) for v in line.split("\t"))
            corners.append((x1, y1, x2, y2))
    labels = [line.strip() for line in (GROCERY / "0.bboxes.labels.tsv").read_text().splitlines() if line.strip()]
    with Image.open(photo) as image:
        width, height = image.size
    return Shelf(photo.name, photo.read_bytes(), width, height,
                 list(zip(labels, corners, strict=True)))


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    env = {"VISIONDOCK_SCORING_POLL_SECONDS": "0.3", "VISIONDOCK_SCORING_MODELS": "flowers,*@production",
           "VISIONDOCK_SCORING_CAPTURE_RATE": "1.0"}
    with running_services(tmp_path_factory.mktemp("detection-labeling"), env=env) as local:
        yield local


@pytest.fixture(scope="module")
def annotation(services: LocalServices) -> Iterator[AnnotationClient]:
    with AnnotationClient(services.url("annotation"), LOCAL_DEV_API_KEY) as client:
        yield client


@pytest.fixture(scope="module")
def served(services: LocalServices, tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """The tiny models registered and promoted, and served by the scoring service; name -> version."""
    root = tmp_path_factory.mktemp("detection-labeling-models")
    versions = {}
    with RegistryClient(services.url("registry"), LOCAL_DEV_API_KEY) as registry:
        for name, task in MODELS:
            path = (tiny_models.detector(root / f"{name}.onnx") if task == "detection"
                    else tiny_models.classifier(root / f"{name}.onnx", task=task))
            version = registry.register_version(name, path, {"task": task, "labels": tiny_models.COLOURS,
                                                             "project_id": name})["version"]
            registry.set_alias(name, "production", version)
            versions[name] = version
    with ScoringClient(services.url("scoring"), LOCAL_DEV_API_KEY) as scoring:
        deadline = time.monotonic() + 60
        while True:
            models = {m["name"]: m for m in scoring.request("GET", "/v1/models").json()["models"]}
            if all((models.get(name) or {}).get("state") == "loaded" for name, _ in MODELS):
                break
            assert time.monotonic() < deadline, models
            time.sleep(0.2)
        assert scoring.request("GET", "/v1/models").json()["primary"] == "flowers"
    return versions


@pytest.fixture(scope="module")
def page(browser: Any, services: LocalServices) -> Iterator[Any]:
    outside: list[str] = []
    opened = open_page(browser, services.url("annotation"), outside)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(f"{services.url('annotation')}/app")
    opened.evaluate(f"sessionStorage.setItem('visiondock.apiKey', {LOCAL_DEV_API_KEY!r})")
    yield opened
    opened.close()
    assert not errors, f"the app threw: {errors}"
    assert not outside, f"the app reached outside the annotation service: {outside}"


def _assert_accessible(page: Any, view: str) -> None:
    violations = axe_violations(page)
    assert not violations, f"{view}: {violations}"


def _open_labeler(page: Any, base: str, project: str, image_id: str, filename: str) -> None:
    page.goto(f"{base}/app#/p/{project}/label/{image_id}")
    page.wait_for_selector(f".filename:has-text('{filename}')")
    page.wait_for_function("document.querySelector('.overlay').dataset.photo === 'loaded'")


class Screen:
    """Image pixels to page coordinates, read from where the overlay is now."""

    def __init__(self, page: Any, width: int, height: int, overlay: str = ".overlay") -> None:
        self.page, self.width, self.height, self.overlay = page, width, height, overlay

    def view(self) -> tuple[float, float, float, float]:
        """The part of the photo on screen (the overlay's viewBox), in image pixels: x, y, width, height."""
        x, y, w, h = (float(v) for v in self.page.locator(self.overlay).get_attribute("viewBox").split())
        return x, y, w, h

    def at(self, x: float, y: float) -> tuple[float, float]:
        box = self.page.locator(self.overlay).bounding_box()
        vx, vy, vw, vh = self.view()
        return box["x"] + (x - vx) * box["width"] / vw, box["y"] + (y - vy) * box["height"] / vh

    def image_point(self, sx: float, sy: float) -> tuple[float, float]:
        box = self.page.locator(self.overlay).bounding_box()
        vx, vy, vw, vh = self.view()
        return vx + (sx - box["x"]) * vw / box["width"], vy + (sy - box["y"]) * vh / box["height"]

    def drag(self, start: tuple[float, float], end: tuple[float, float]) -> None:
        a, b = self.at(*start), self.at(*end)
        self.page.mouse.move(*a)
        self.page.mouse.down()
        self.page.mouse.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, steps=3)
        self.page.mouse.move(*b, steps=3)
        self.page.mouse.up()


def _stored_regions(annotation: AnnotationClient, project: str, image_id: str, count: int,
                    page: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while True:
        regions = annotation.get_image(project, image_id)["regions"]
        if len(regions) == count:
            return regions
        assert time.monotonic() < deadline, regions
        page.wait_for_timeout(100)  # not time.sleep: the page's requests pass through this process


def _contrast(first: str, second: str) -> float:
    def luminance(hex_colour: str) -> float:
        channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = (v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _assert_labels_readable(page: Any, count: int) -> None:
    """Every label's text contrasts at least 4.5 : 1 with its strip, and no strip covers another."""
    strips = page.evaluate("""() => [...document.querySelectorAll('.overlay .strips rect')].map((r) => ({
        x: +r.getAttribute('x'), y: +r.getAttribute('y'), w: +r.getAttribute('width'), h: +r.getAttribute('height'),
        fill: r.getAttribute('fill'), text: r.nextElementSibling.getAttribute('fill'),
        label: r.nextElementSibling.textContent}))""")
    assert len(strips) == count
    for strip in strips:
        assert _contrast(strip["fill"], strip["text"]) >= 4.5, strip
    for i, a in enumerate(strips):
        for b in strips[i + 1:]:
            apart = (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"] or a["y"] + a["h"] <= b["y"]
                     or b["y"] + b["h"] <= a["y"])
            assert apart, (a, b)


def _wait_for(page: Any, condition: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        page.wait_for_timeout(100)


def _pixels(region: dict[str, Any], width: int, height: int) -> tuple[float, float, float, float]:
    return (region["left"] * width, region["top"] * height, (region["left"] + region["width"]) * width,
            (region["top"] + region["height"]) * height)


def test_each_box_keeps_the_label_key_pressed_before_it_was_drawn(page: Any, services: LocalServices,
                                                                   annotation: AnnotationClient) -> None:
    shelf = shelf_photo()
    # One box per label: each is drawn right after pressing its own label's key.
    drawn: dict[str, tuple[int, int, int, int]] = {}
    for label, box in shelf.boxes:
        drawn.setdefault(label, box)
    project = "shelf-keys"
    annotation.create_project(project, "detection", tags=list(drawn))
    image = annotation.upload_images(project, [(shelf.name, shelf.jpeg)])["results"][0]["image"]
    _open_labeler(page, services.url("annotation"), project, image["id"], shelf.name)
    keys = dict(reversed(text.split(maxsplit=1)) for text in page.locator(".tag-buttons button").all_inner_texts())
    screen = Screen(page, shelf.width, shelf.height)
    for label, (x1, y1, x2, y2) in drawn.items():
        page.keyboard.press(keys[label])
        screen.drag((x1, y1), (x2, y2))
    page.wait_for_selector(f"text=Saved {len(drawn)} box(es).")
    regions = _stored_regions(annotation, project, image["id"], len(drawn), page)
    got = {}
    for region in regions:
        corners = _pixels(region, shelf.width, shelf.height)
        label = next(label for label, box in drawn.items() if corners == pytest.approx(box, abs=8))
        got[label] = region["tag"]
    assert got == {label: label for label in drawn}
    history = annotation.request("GET", f"/v1/projects/{project}/images/{image['id']}/history").json()["data"]
    assert all(entry["source"] == "person" for entry in history)
    _assert_labels_readable(page, len(drawn))
    screenshot(page, "labeler-keys-then-boxes")

    # Relabelling is its own act: click the box, then the key. The next key chooses new boxes' label again.
    first_label, (x1, y1, x2, y2) = next(iter(drawn.items()))
    other = list(drawn)[1]
    page.mouse.click(*screen.at((x1 + x2) / 2, (y1 + y2) / 2))
    page.wait_for_selector(f".relabel-hint:has-text('({first_label}) is selected')")
    page.keyboard.press(keys[other])
    page.wait_for_selector(".relabel-hint:has-text('Click a box')")  # the relabel is done, nothing selected
    page.keyboard.press(keys[first_label])
    page.wait_for_selector(f".tag-buttons button[aria-pressed=true]:has-text('{first_label}')")
    expected = sorted([other, *list(drawn)[1:]])
    _wait_for(page, lambda: sorted(r["tag"] for r in annotation.get_image(project, image["id"])["regions"]) == expected)
    _assert_accessible(page, "box labeler")


def test_suggestions_come_from_the_projects_own_model_and_nothing_empty_is_accepted_silently(
        page: Any, services: LocalServices, annotation: AnnotationClient, served: dict[str, int]) -> None:
    # A detection project; the scoring service's primary model is `flowers`, a classifier.
    project = "shelf-suggest"
    annotation.create_project(project, "detection", tags=tiny_models.COLOURS)
    uploaded = annotation.upload_images(project, [
        ("red-blue.png", tiny_models.quadrants(RED, BLUE, size=(400, 300), background=DARK)),
        ("empty-shelf.jpg", tiny_models.solid(DARK, size=(400, 300)))])
    ids = {r["image"]["filename"]: r["image"]["id"] for r in uploaded["results"]}
    base = services.url("annotation")
    page.goto(f"{base}/app#/p/{project}/images")
    page.wait_for_function("window.gridPainted === true")
    page.click("button:has-text('Suggest labels for unlabeled images')")
    page.wait_for_selector(f"text=2 suggestion(s) from {project} version {served[project]}; 1 found nothing")
    screenshot(page, "grid-suggested-by-own-model")
    boxes = annotation.get_image(project, ids["red-blue.png"])["suggestion"]
    assert (boxes["model"], boxes["task"]) == (project, "detection")
    assert sorted(r["tag"] for r in boxes["regions"]) == ["blue", "red"]
    assert annotation.get_image(project, ids["empty-shelf.jpg"])["suggestion"]["regions"] == []

    # The empty suggestion: A asks, and only the deliberate button labels the image as showing nothing.
    page.goto(f"{base}/app#/p/{project}/label/{ids['empty-shelf.jpg']}")
    page.wait_for_selector(".suggestion:not([hidden]) >> text=nothing found (no box)")
    page.keyboard.press("a")
    page.wait_for_selector(".suggestion .warning:has-text('found no box')")
    page.keyboard.press("a")  # again: still only asking
    page.wait_for_selector(".suggestion .warning")
    _assert_accessible(page, "empty suggestion")
    screenshot(page, "labeler-empty-suggestion")
    assert annotation.get_image(project, ids["empty-shelf.jpg"])["labeled"] is False
    page.click("button:has-text('Label as showing nothing')")
    page.wait_for_selector("text=Suggestion accepted for empty-shelf.jpg.")
    empty = annotation.get_image(project, ids["empty-shelf.jpg"])
    assert (empty["labeled"], empty["regions"], empty["suggestion"]) == (True, [], None)

    # The boxes: drawn dashed, A accepts them.
    page.goto(f"{base}/app#/p/{project}/label/{ids['red-blue.png']}")
    page.wait_for_selector(".overlay g.box.suggested >> nth=1")
    screenshot(page, "labeler-suggested-boxes")
    page.keyboard.press("a")
    page.wait_for_selector("text=Suggestion accepted for red-blue.png.")
    accepted = annotation.get_image(project, ids["red-blue.png"])
    assert sorted(r["tag"] for r in accepted["regions"]) == ["blue", "red"]

    # A project whose own model is of another task: refused with a reason, nothing stored.
    annotation.create_project("crates", "multiclass", tags=tiny_models.COLOURS)
    crate = annotation.upload_images("crates", [("crate.jpg", tiny_models.solid(RED))])["results"][0]["image"]
    page.goto(f"{base}/app#/p/crates/images")
    page.wait_for_function("window.gridPainted === true")
    page.click("button:has-text('Suggest labels for unlabeled images')")
    page.wait_for_selector(".status[data-kind=error]:has-text(\"model 'crates' is a detection model\")")
    assert annotation.get_image("crates", crate["id"])["suggestion"] is None
    # Over the API another served model may be named, and its task is checked the same way.
    with httpx.Client(base_url=base, headers={"X-API-Key": LOCAL_DEV_API_KEY}) as http:
        named = http.post("/v1/projects/crates/suggest", json={"model": "flowers"}).json()
        assert (named["model"], named["suggested"]) == ("flowers", 1)
        wrong = http.post(f"/v1/projects/{project}/suggest", json={"model": "flowers"})
        assert (wrong.status_code, wrong.json()["code"]) == (409, "model_task_mismatch")


def test_zoom_and_pan_with_wheel_and_keys_draw_a_small_product_precisely(page: Any, services: LocalServices,
                                                                        annotation: AnnotationClient) -> None:
    shelf = shelf_photo()
    label, (x1, y1, x2, y2) = min(shelf.boxes, key=lambda item: (item[1][2] - item[1][0]) * (item[1][3] - item[1][1]))
    project = "shelf-zoom"
    annotation.create_project(project, "detection", tags=sorted({name for name, _ in shelf.boxes}))
    image = annotation.upload_images(project, [(shelf.name, shelf.jpeg)])["results"][0]["image"]
    _open_labeler(page, services.url("annotation"), project, image["id"], shelf.name)
    screen = Screen(page, shelf.width, shelf.height)
    assert screen.view() == (0, 0, shelf.width, shelf.height)
    fitted = page.locator(".overlay").bounding_box()
    scale_at_fit = fitted["width"] / shelf.width

    # The wheel zooms at the pointer: the product stays under it.
    pointer = tuple(round(v) for v in screen.at((x1 + x2) / 2, (y1 + y2) / 2))  # the pointer is on whole pixels
    under = screen.image_point(*pointer)
    page.mouse.move(*pointer)
    for _ in range(4):
        page.mouse.wheel(0, -250)
    page.wait_for_function("parseInt(document.querySelector('.zoom').textContent) >= 400")
    assert screen.at(*under) == pytest.approx(pointer, abs=1.5)
    vx, vy, vw, vh = screen.view()
    assert vx <= x1 + 2 and vy <= y1 + 2 and vx + vw >= x2 - 2 and vy + vh >= y2 - 2  # the product is on screen
    assert vw / vh == pytest.approx(shelf.width / shelf.height, rel=1e-3)  # the photo's shape, no letterbox
    # Lines and labels keep their size on screen: a label strip is as tall as at fit.
    keys = dict(reversed(text.split(maxsplit=1)) for text in page.locator(".tag-buttons button").all_inner_texts())
    page.keyboard.press(keys[label])
    screen.drag((x1, y1), (x2, y2))
    [region] = _stored_regions(annotation, project, image["id"], 1, page)
    assert region["tag"] == label
    # At 4x and more a screen pixel is a quarter of an image pixel at fit: within 1.5 image pixels.
    assert _pixels(region, shelf.width, shelf.height) == pytest.approx((x1, y1, x2, y2), abs=1.5)
    strip_height = page.evaluate("document.querySelector('.overlay .strips rect').getBoundingClientRect().height")
    font = min(max(shelf.height // 30, 12), 48)  # visiondock.drawing.font_size
    assert strip_height == pytest.approx((font + 2 * 3) * scale_at_fit, rel=0.05)
    _assert_accessible(page, "zoomed labeler")
    screenshot(page, "labeler-zoomed")

    # Keys pan (Shift+arrows, a quarter of the screen), zoom (+ and -) and fit (0); Shift+wheel pans too.
    zoomed = screen.view()
    page.keyboard.press("Shift+ArrowRight")
    _wait_for(page, lambda: screen.view() != zoomed)
    panned = screen.view()
    assert panned[0] == pytest.approx(min(zoomed[0] + zoomed[2] / 4, shelf.width - zoomed[2]), abs=0.5)
    assert panned[1:] == pytest.approx(zoomed[1:])
    page.keyboard.press("Shift+ArrowUp")
    page.mouse.move(*pointer)
    page.keyboard.down("Shift")
    page.mouse.wheel(0, 200)
    page.keyboard.up("Shift")
    page.keyboard.press("0")
    page.wait_for_function("document.querySelector('.zoom').textContent === '100 %'")
    assert screen.view() == (0, 0, shelf.width, shelf.height)
    page.keyboard.press("+")
    page.wait_for_function("document.querySelector('.zoom').textContent === '150 %'")
    page.keyboard.press("-")
    page.wait_for_function("document.querySelector('.zoom').textContent === '100 %'")


def _overlapping_products(background: tuple[int, int, int] = (235, 230, 220)) -> bytes:
    """A crate with two products in it: their boxes lie inside the crate's."""
    picture = Image.new("RGB", (800, 600), background)
    draw = ImageDraw.Draw(picture)
    draw.rectangle((100, 100, 700, 500), fill=(150, 110, 60))
    draw.rectangle((180, 200, 360, 420), fill=(200, 40, 40))
    draw.rectangle((420, 180, 620, 440), fill=(40, 80, 200))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_a_drag_always_draws_in_draw_mode_and_each_image_keeps_its_own_boxes(page: Any, services: LocalServices,
                                                                            annotation: AnnotationClient) -> None:
    project = "crates-draw"
    annotation.create_project(project, "detection", tags=["crate", "tomato", "can"])
    uploaded = annotation.upload_images(project, [("crate-1.jpg", _overlapping_products()),
                                                  ("crate-2.jpg", _overlapping_products((220, 235, 230)))])
    first, second = (r["image"]["id"] for r in uploaded["results"])
    _open_labeler(page, services.url("annotation"), project, first, "crate-1.jpg")
    screen = Screen(page, 800, 600)
    page.wait_for_selector(".stage-tools button[data-mode=draw][aria-pressed=true]")
    page.keyboard.press("1")
    screen.drag((100, 100), (700, 500))                 # the crate
    page.keyboard.press("2")
    screen.drag((180, 200), (360, 420))                 # starts inside the crate: a new box, the crate stays
    page.keyboard.press("3")
    screen.drag((420, 180), (620, 440))
    regions = _stored_regions(annotation, project, first, 3, page)
    _wait_for(page, lambda: sorted(r["tag"] for r in annotation.get_image(project, first)["regions"])
              == ["can", "crate", "tomato"])
    regions = annotation.get_image(project, first)["regions"]
    by_tag = {r["tag"]: _pixels(r, 800, 600) for r in regions}
    assert by_tag["crate"] == pytest.approx((100, 100, 700, 500), abs=4)
    assert by_tag["tomato"] == pytest.approx((180, 200, 360, 420), abs=4)
    _assert_labels_readable(page, 3)
    screenshot(page, "labeler-draw-mode-overlapping")

    # A click picks the smallest box under it; then a key relabels that box only.
    page.mouse.click(*screen.at(500, 300))
    page.wait_for_selector(".relabel-hint:has-text('(can) is selected')")
    page.keyboard.press("2")
    _wait_for(page, lambda: sorted(r["tag"] for r in annotation.get_image(project, first)["regions"])
              == ["crate", "tomato", "tomato"])

    # Edit mode: the same drag moves the box instead.
    page.keyboard.press("e")
    page.wait_for_selector(".stage-tools button[data-mode=edit][aria-pressed=true]")
    screen.drag((270, 300), (290, 320))
    _wait_for(page, lambda: any(_pixels(r, 800, 600)[0] == pytest.approx(200, abs=4)
                                for r in annotation.get_image(project, first)["regions"]))
    assert len(annotation.get_image(project, first)["regions"]) == 3
    page.keyboard.press("d")

    # The next image gets boxes of its own; the last image's editor no longer hears the pointer.
    page.keyboard.press("ArrowRight")
    page.wait_for_selector(".filename:has-text('crate-2.jpg')")
    page.wait_for_function("document.querySelector('.overlay').dataset.photo === 'loaded'")
    stored_first = annotation.get_image(project, first)["regions"]
    page.keyboard.press("1")
    screen.drag((100, 100), (700, 500))
    [only] = _stored_regions(annotation, project, second, 1, page)
    assert only["tag"] == "crate"
    page.wait_for_timeout(300)
    assert annotation.get_image(project, first)["regions"] == stored_first
    # One write, of the one box: nothing of the first image's boxes was ever saved onto the second.
    history = annotation.request("GET", f"/v1/projects/{project}/images/{second}/history").json()["data"]
    assert [len(entry["labels"]["regions"]) for entry in history] == [1]


def _captured(annotation: AnnotationClient, project: str, count: int, page: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while len(items := list(annotation.list_review_items(project))) < count:
        assert time.monotonic() < deadline, "the captured predictions never reached the review queue"
        page.wait_for_timeout(200)
    return items


def _item(annotation: AnnotationClient, project: str, item_id: str) -> dict[str, Any]:
    item: dict[str, Any] = annotation.request("GET", f"/v1/projects/{project}/review-items/{item_id}").json()
    return item


def _predict(services: LocalServices, model: str, files: list[tuple[str, bytes]]) -> None:
    with httpx.Client(base_url=services.url("scoring"), headers={"X-API-Key": LOCAL_DEV_API_KEY}) as scoring:
        for name, data in files:
            answer = scoring.post(f"/v1/models/{model}/predict", files={"file": (name, data)})
            assert answer.status_code == 200, answer.text


def test_review_detections_drawn_corrected_before_accept_and_taken_back(
        page: Any, services: LocalServices, annotation: AnnotationClient, served: dict[str, int]) -> None:
    project = "shelf-review"
    annotation.create_project(project, "detection", tags=tiny_models.COLOURS)
    base = services.url("annotation")
    page.goto(f"{base}/app#/p/{project}/review")
    # Nothing captured yet: the page says whether capture is on, at what rate, and that the model is served.
    page.wait_for_selector(".empty-queue:not([hidden]) >> text=Capture is on")
    assert "100.0 % of its predictions" in page.locator(".empty-queue").inner_text()
    assert "it serves this project's model" in page.locator(".empty-queue").inner_text()
    _assert_accessible(page, "empty review queue")
    screenshot(page, "review-empty-capture-on")

    _predict(services, project, [("red-blue.png", tiny_models.quadrants(RED, BLUE, size=(400, 300), background=DARK)),
                                 ("blue-red.png", tiny_models.quadrants(BLUE, RED, size=(400, 300), background=DARK))])
    items = {item["id"]: item for item in _captured(annotation, project, 2, page)}
    page.goto(f"{base}/app#/p/{project}/label/none")  # away and back: the queue is read again
    page.goto(f"{base}/app#/p/{project}/review")
    page.wait_for_selector(".review-current .overlay[data-photo=loaded]")
    # The model's boxes are drawn on the photo (and over each waiting thumbnail).
    assert page.locator(".review-current .overlay g.box").count() == 2
    assert page.locator(".review-list .thumb-boxes rect").count() == 4
    _assert_accessible(page, "detection review")
    screenshot(page, "review-detection")

    # Corrected before Accept: the bottom right box deleted, a green one drawn top right.
    item_id = page.locator(".review-list li.item.current").get_attribute("data-id")
    screen = Screen(page, 400, 300, ".review-current .overlay")
    page.mouse.click(*screen.at(300, 225))
    page.keyboard.press("Delete")
    page.wait_for_function("document.querySelectorAll('.review-current .overlay g.box').length === 1")
    page.keyboard.press("2")
    screen.drag((210, 10), (390, 140))
    page.wait_for_selector(".review-current .box-list li:has-text('green')")
    screenshot(page, "review-detection-corrected")
    page.keyboard.press("a")
    page.wait_for_function(f"!document.querySelector('.review-list li.item[data-id=\"{item_id}\"]')")
    accepted = _item(annotation, project, item_id)
    assert (accepted["status"], accepted["labels_from"]) == ("accepted", "reviewer")
    image = annotation.get_image(project, accepted["image_id"])
    kept = items[item_id]["suggested"]["regions"][0]
    assert sorted(r["tag"] for r in image["regions"]) == sorted([kept["tag"], "green"])
    green = next(r for r in image["regions"] if r["tag"] == "green")
    assert _pixels(green, 400, 300) == pytest.approx((210, 10, 390, 140), abs=4)

    # U takes the acceptance back: the item waits again and the image has no labels.
    page.keyboard.press("u")
    page.wait_for_selector(f".review-list li.item.current[data-id='{item_id}']")
    assert _item(annotation, project, item_id)["status"] == "pending"
    restored = annotation.get_image(project, accepted["image_id"])
    assert (restored["labeled"], restored["regions"]) == (False, [])
    # Reject, take it back too; then accept both as the model proposed.
    page.keyboard.press("r")
    page.wait_for_function(f"!document.querySelector('.review-list li.item[data-id=\"{item_id}\"]')")
    assert _item(annotation, project, item_id)["status"] == "rejected"
    page.keyboard.press("u")
    page.wait_for_selector(f".review-list li.item.current[data-id='{item_id}']")
    assert _item(annotation, project, item_id)["status"] == "pending"
    page.keyboard.press("a")
    page.wait_for_function("document.querySelectorAll('.review-list li.item').length === 1")
    page.keyboard.press("a")
    page.wait_for_selector(".empty-queue:not([hidden])")
    decided = list(annotation.list_review_items(project, status="accepted"))
    assert {d["labels_from"] for d in decided} == {"prediction"} and len(decided) == 2


def test_review_classification_accepts_a_new_tag_and_undo(page: Any, services: LocalServices,
                                                          annotation: AnnotationClient, served: dict[str, int]) -> None:
    project = "flowers"
    annotation.create_project(project, "multiclass", tags=tiny_models.COLOURS)
    _predict(services, project, [("odd-one.jpg", tiny_models.solid((120, 40, 160)))])
    [item] = _captured(annotation, project, 1, page)
    page.goto(f"{services.url('annotation')}/app#/p/{project}/review")
    page.wait_for_selector(".review-current .overlay[data-photo=loaded]")
    page.fill("#review-new-tag", "purple")
    page.keyboard.press("Enter")
    page.wait_for_selector(".empty-queue:not([hidden])")
    accepted = _item(annotation, project, item["id"])
    assert (accepted["status"], accepted["labels"]["tags"]) == ("accepted", ["purple"])
    assert "purple" in [t["name"] for t in annotation.request("GET", f"/v1/projects/{project}/tags").json()["data"]]
    assert annotation.get_image(project, accepted["image_id"])["tags"] == ["purple"]
    page.locator("body").click(position={"x": 5, "y": 300})  # the key goes to the page, not the form
    page.keyboard.press("u")
    page.wait_for_selector(f".review-list li.item.current[data-id='{item['id']}']")
    assert annotation.get_image(project, accepted["image_id"])["labeled"] is False
    _assert_accessible(page, "classification review")
