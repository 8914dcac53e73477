"""The labeling app driven like a person would, in headless chromium, against the three services
as uvicorn processes: sign in, upload by drag and drop, label ten images by keyboard (with undo),
draw, move, resize and delete boxes, start a training and watch it, promote the version, accept
a suggestion of that model, and work through the review queue its captured predictions filled.
Every view passes axe-core without serious or critical violations; nothing is fetched from
anywhere but the annotation service. The tests run in order, each building on the last."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image, ImageDraw

from cli.local_services import LocalServices
from cli.synthetic import samples
from visiondock.clients import AnnotationClient, RegistryClient, ScoringClient
from visiondock.settings import LOCAL_DEV_API_KEY

from .conftest import APP_PROJECT, axe_violations, open_page, screenshot

pytestmark = pytest.mark.e2e
TAGS = ["circle", "square", "star"]
PER_CLASS = 8
DETECTION_PROJECT = "shelf-app"


@pytest.fixture(scope="module")
def annotation(app_services: LocalServices) -> Iterator[AnnotationClient]:
    with AnnotationClient(app_services.url("annotation"), LOCAL_DEV_API_KEY) as client:
        yield client


@pytest.fixture(scope="module")
def outside() -> list[str]:
    return []


@pytest.fixture(scope="module")
def page(browser: Any, app_services: LocalServices, outside: list[str]) -> Iterator[Any]:
    opened = open_page(browser, app_services.url("annotation"), outside)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    opened.close()
    assert not errors, f"the app threw: {errors}"


def _shape_files(seed: int, per_class: int) -> list[tuple[str, bytes]]:
    counters = dict.fromkeys(TAGS, 0)
    files = []
    for sample in samples(per_class, seed=seed):
        if sample.label in counters:
            files.append((f"{sample.label}-{seed}-{counters[sample.label]:02d}.jpg", sample.jpeg))
            counters[sample.label] += 1
    return files


def _drop_files(page: Any, selector: str, files: list[tuple[str, bytes]]) -> None:
    """Drop files on an element as a person dragging them from a file manager would."""
    payload = [{"name": name, "data": base64.b64encode(data).decode()} for name, data in files]
    transfer = page.evaluate_handle("""(files) => {
        const transfer = new DataTransfer();
        for (const f of files) {
            const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
            transfer.items.add(new File([bytes], f.name, { type: "image/jpeg" }));
        }
        return transfer;
    }""", payload)
    page.dispatch_event(selector, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def _assert_accessible(page: Any, view: str) -> None:
    violations = axe_violations(page)
    assert not violations, f"{view}: {violations}"


def _images(annotation: AnnotationClient, project: str) -> list[dict[str, Any]]:
    return list(annotation.list_images(project))


def test_sign_in_upload_and_label_ten_images_by_keyboard(page: Any, app_services: LocalServices,
                                                         annotation: AnnotationClient) -> None:
    base = app_services.url("annotation")
    page.goto(f"{base}/app")
    page.wait_for_selector("#api-key")
    _assert_accessible(page, "sign-in")
    page.fill("#api-key", "not-a-key")
    page.click("button[type=submit]")
    page.wait_for_selector("text=That API key was not accepted.")
    page.fill("#api-key", LOCAL_DEV_API_KEY)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Projects')")

    page.fill("#new-id", APP_PROJECT)
    page.fill("#new-tags", ", ".join(TAGS))
    page.click("button:has-text('Create project')")
    page.wait_for_function("window.gridPainted === true")
    screenshot(page, "projects-created")

    files = _shape_files(seed=3, per_class=PER_CLASS)
    _drop_files(page, ".dropzone", files)
    page.wait_for_selector(f"text=Uploaded {len(files)} new")
    page.wait_for_function(f"document.querySelectorAll('.grid img[src^=blob]').length === {len(files)}")
    _assert_accessible(page, "image grid")
    screenshot(page, "grid")
    assert len(_images(annotation, APP_PROJECT)) == len(files)

    page.select_option("#filter-status", "unlabeled")
    page.wait_for_function(f"document.querySelectorAll('.grid .tile').length === {len(files)}")
    page.click(".grid .tile >> nth=0")
    page.wait_for_selector(".tag-buttons button")
    _assert_accessible(page, "labeler")
    # Each button reads "<key> <tag>".
    keys = dict(reversed(text.split(maxsplit=1)) for text in page.locator(".tag-buttons button").all_inner_texts())
    labeled: dict[str, str] = {}
    for _ in range(10):
        name = page.locator(".filename").inner_text()
        truth = name.split("-")[0]
        page.keyboard.press(keys[truth])
        page.wait_for_function("(name) => document.querySelector('.filename').textContent !== name", arg=name)
        labeled[name] = truth
    screenshot(page, "labeler-classification")

    by_name = {image["filename"]: image for image in _images(annotation, APP_PROJECT)}
    assert {name: by_name[name]["tags"] for name in labeled} == {name: [tag] for name, tag in labeled.items()}
    assert sum(image["labeled"] for image in by_name.values()) == 10

    # Undo takes the last label back (and the history keeps both changes).
    last = list(labeled)[-1]
    page.keyboard.press("u")
    page.wait_for_function("(name) => document.querySelector('.filename').textContent === name", arg=last)
    page.wait_for_selector("text=Undone.")
    assert annotation.get_image(APP_PROJECT, by_name[last]["id"])["labeled"] is False
    history = annotation.request("GET", f"/v1/projects/{APP_PROJECT}/images/{by_name[last]['id']}/history").json()
    assert [(e["source"], e["labels"]["tags"]) for e in history["data"]] == [("person", []),
                                                                            ("person", [labeled[last]])]
    page.keyboard.press(keys[labeled[last]])
    page.wait_for_function("(name) => document.querySelector('.filename').textContent !== name", arg=last)
    assert annotation.get_image(APP_PROJECT, by_name[last]["id"])["tags"] == [labeled[last]]


def _shelf_photo() -> bytes:
    image = Image.new("RGB", (800, 600), (235, 230, 220))
    draw = ImageDraw.Draw(image)
    for x, colour in ((80, (200, 40, 40)), (330, (40, 160, 60)), (580, (40, 80, 200))):
        draw.rectangle((x, 200, x + 150, 450), fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _drag(page: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=4)
    page.mouse.move(*end, steps=4)
    page.mouse.up()


def test_draw_move_resize_and_delete_boxes(page: Any, app_services: LocalServices,
                                           annotation: AnnotationClient) -> None:
    annotation.create_project(DETECTION_PROJECT, "detection", tags=["can", "box"])
    image = annotation.upload_images(DETECTION_PROJECT, [("shelf.jpg", _shelf_photo())])["results"][0]["image"]
    page.goto(f"{app_services.url('annotation')}/app#/p/{DETECTION_PROJECT}/label/{image['id']}")
    page.wait_for_selector(".filename:has-text('shelf.jpg')")
    page.wait_for_function("document.querySelector('.overlay').dataset.photo === 'loaded'")
    box = page.locator(".overlay").bounding_box()
    assert box["width"] / box["height"] == pytest.approx(800 / 600, rel=0.01)  # no letterbox around the photo

    def at(x: float, y: float) -> tuple[float, float]:
        return box["x"] + x * box["width"] / 800, box["y"] + y * box["height"] / 600

    last = {"updated_at": annotation.get_image(DETECTION_PROJECT, image["id"])["updated_at"]}

    def saved(count: int) -> list[dict[str, Any]]:
        # Each finished edit is saved at once: wait for the next write to land.
        deadline = time.monotonic() + 10
        while True:
            stored = annotation.get_image(DETECTION_PROJECT, image["id"])
            if stored["updated_at"] != last["updated_at"]:
                break
            assert time.monotonic() < deadline, "the edit was never saved"
            page.wait_for_timeout(50)  # not time.sleep: the page's requests pass through this process
        last["updated_at"] = stored["updated_at"]
        assert len(stored["regions"]) == count, stored["regions"]
        return stored["regions"]

    _drag(page, at(80, 200), at(230, 450))         # the red one, labeled `can` (key 1 is the default)
    saved(1)
    _drag(page, at(300, 180), at(500, 470))        # the green one, drawn too large
    saved(2)
    page.keyboard.press("Escape")                    # nothing selected: the key picks the next box's label
    page.keyboard.press("2")                         # `box`
    _drag(page, at(600, 230), at(700, 430))        # the blue one, drawn too small ...
    saved(3)
    page.keyboard.press("e")                         # edit mode: drags move boxes and resize them by a corner
    _drag(page, at(700, 430), at(730, 450))        # ... its corner dragged out to the object's
    saved(3)
    _drag(page, at(400, 300), at(405, 320))        # the green box moved down a little
    regions = saved(3)
    assert [r["tag"] for r in regions] == ["can", "can", "box"]
    for region, (x1, y1, x2, y2) in zip(regions, [(80, 200, 230, 450), (305, 200, 505, 490), (600, 230, 730, 450)],
                                        strict=True):
        got = (region["left"] * 800, region["top"] * 600, (region["left"] + region["width"]) * 800,
               (region["top"] + region["height"]) * 600)
        assert got == pytest.approx((x1, y1, x2, y2), abs=6), (region, (x1, y1, x2, y2))
    screenshot(page, "labeler-boxes")
    _assert_accessible(page, "box labeler")

    # Delete the selected box (the green one), then draw it again right.
    page.click(".box-list li:nth-child(2) button:first-child")
    page.keyboard.press("Delete")
    assert [r["tag"] for r in saved(2)] == ["can", "box"]
    page.keyboard.press("1")
    _drag(page, at(330, 200), at(480, 450))
    assert sorted(r["tag"] for r in saved(3)) == ["box", "can", "can"]
    page.wait_for_selector("text=Saved 3 box(es).")

    # On a slow network the next box is drawn, and released, while the last save is still on its way:
    # both are stored, in order, and the box in the making stays on screen.
    page.evaluate("""() => {
        const send = window.fetch;
        window.fetch = async (url, options = {}) => {
            const response = await send(url, options);
            if (options.method === "PUT" && String(url).endsWith("/regions")) {
                await new Promise((resolve) => setTimeout(resolve, 700));
            }
            return response;
        };
    }""")
    _drag(page, at(20, 20), at(60, 80))
    page.mouse.move(*at(100, 20))
    page.mouse.down()
    page.mouse.move(*at(130, 60), steps=2)
    page.wait_for_timeout(900)                       # the first save answers mid-drag
    page.mouse.move(*at(140, 80), steps=2)
    page.mouse.up()
    page.wait_for_selector("text=Saved 5 box(es).")
    stored = annotation.get_image(DETECTION_PROJECT, image["id"])["regions"]
    assert len(stored) == 5, stored
    assert page.locator(".box-list li").count() == 5
    assert page.locator(".overlay g.box:not(.suggested)").count() == 5
    screenshot(page, "labeler-boxes-slow-network")


def test_start_training_watch_it_and_promote_the_version(page: Any, app_services: LocalServices,
                                                         annotation: AnnotationClient) -> None:
    for image in _images(annotation, APP_PROJECT):
        if not image["labeled"]:
            annotation.set_image_tags(APP_PROJECT, image["id"], [image["filename"].split("-")[0]])
    page.goto(f"{app_services.url('annotation')}/app#/p/{APP_PROJECT}/training")
    page.wait_for_selector("text=No training has run for this project yet.")
    page.click("button:has-text('Start training')")
    page.wait_for_selector(".run-status.running, .run-status.queued")
    page.wait_for_selector(".run-status.succeeded, .run-status.failed", timeout=400_000)
    status = page.locator(".run-status").inner_text()
    assert status.startswith("succeeded"), page.locator(".run").inner_text()
    page.wait_for_selector("button:has-text('Promote v1 to production')")
    screenshot(page, "training-succeeded")
    page.click("button:has-text('Promote v1 to production')")
    page.wait_for_selector("text=Version 1 is now production.")
    _assert_accessible(page, "training")
    with RegistryClient(app_services.url("registry"), LOCAL_DEV_API_KEY) as registry:
        assert registry.get_alias(APP_PROJECT, "production")["version"] == 1


def test_accept_a_suggestion_of_the_served_model(page: Any, app_services: LocalServices,
                                                 annotation: AnnotationClient) -> None:
    with ScoringClient(app_services.url("scoring"), LOCAL_DEV_API_KEY) as scoring:
        deadline = time.monotonic() + 60
        while (scoring.readiness().get("model") or {}).get("version") != 1:
            assert time.monotonic() < deadline, scoring.readiness()
            page.wait_for_timeout(300)
    fresh = _shape_files(seed=9, per_class=1)
    annotation.upload_images(APP_PROJECT, fresh)

    page.goto(f"{app_services.url('annotation')}/app#/p/{APP_PROJECT}/images")
    page.wait_for_function("window.gridPainted === true")
    page.click("button:has-text('Suggest labels for unlabeled images')")
    page.wait_for_selector(f"text={len(fresh)} suggestion(s) from {APP_PROJECT} version 1")
    page.select_option("#filter-status", "review")
    page.wait_for_function(f"document.querySelectorAll('.grid .badge.suggested').length === {len(fresh)}")
    screenshot(page, "grid-awaiting-review")
    page.click(".grid .tile >> nth=0")
    page.wait_for_selector(".suggestion:not([hidden])")
    name = page.locator(".filename").inner_text()
    suggested = page.locator(".suggestion p").inner_text()
    screenshot(page, "labeler-suggestion")
    page.keyboard.press("a")
    page.wait_for_selector(f"text=Suggestion accepted for {name}.")
    image = next(i for i in _images(annotation, APP_PROJECT) if i["filename"] == name)
    assert image["labeled"] and image["suggestion"] is None
    assert image["tags"][0] in suggested
    history = annotation.request("GET", f"/v1/projects/{APP_PROJECT}/images/{image['id']}/history").json()["data"]
    assert history[0]["source"] == "suggestion" and history[0]["who"] == "local-dev"


def test_work_through_the_review_queue(page: Any, app_services: LocalServices, annotation: AnnotationClient,
                                       outside: list[str]) -> None:
    # The suggestions were predictions too: the scoring service captured them for review.
    deadline = time.monotonic() + 30
    while len(list(annotation.list_review_items(APP_PROJECT))) < 3:
        assert time.monotonic() < deadline, "the captured predictions never reached the review queue"
        page.wait_for_timeout(300)
    items = list(annotation.list_review_items(APP_PROJECT))
    page.goto(f"{app_services.url('annotation')}/app#/p/{APP_PROJECT}/review")
    page.wait_for_selector(".review-list li.item img[src^=blob]")
    shown = page.locator(".review-list li.item").evaluate_all("(items) => items.map((li) => li.dataset.id)")
    assert shown == [item["id"] for item in items]  # most uncertain first, as the API orders them
    _assert_accessible(page, "review queue")
    screenshot(page, "review-queue")
    for key, remaining in (("a", len(items) - 1), ("r", len(items) - 2), ("2", len(items) - 3)):
        page.keyboard.press(key)
        page.wait_for_function(f"document.querySelectorAll('.review-list li.item').length === {remaining}")
    page.wait_for_selector("text=Nothing to review.")
    decided = {item["id"]: item for item in annotation.list_review_items(APP_PROJECT, status="all")}
    first, second, third = (decided[item["id"]] for item in items[:3])
    # An item whose image a person labeled already (the suggestion accepted above) keeps that person's
    # labels: accepted as `existing`; the others take the prediction, or the tag the reviewer pressed.
    labels_now = {image["id"]: image["tags"] for image in _images(annotation, APP_PROJECT)}
    for item, own in ((first, "prediction"), (third, "reviewer")):
        assert item["status"] == "accepted" and item["labels_from"] in (own, "existing"), item
        assert item["labels"]["tags"] == labels_now[item["image_id"]]
    assert third["labels_from"] == "existing" or third["labels"]["tags"] == [TAGS[1]]
    assert second["status"] == "rejected"
    assert not outside, f"the app reached outside the annotation service: {outside}"
