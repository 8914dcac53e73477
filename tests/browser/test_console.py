"""The console (the annotation service's /app) driven like a person would, in headless chromium against the
three services as uvicorn processes: one sign-in for labeling and the models, deep links kept through it,
links both ways between a version, its project and its run; a version's Test page (a photo scored and drawn,
with the time of each stage) and the code that calls it, run for real; a promotion that says when the new
version serves; metrics with their sample sizes; the Training page polling only what exists and refusing a
run its labels cannot train; messages in words; a layout that holds at 390 px. Every view passes axe-core.

The scoring service serves every production model and looks for new ones only once a minute: whatever
serves within seconds of a promotion was loaded because the console asked for it."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.local_services import LocalServices
from services.trainer.job import run_training
from services.trainer.options import TrainingOptions
from tests.scoring import tiny_models
from tests.support.stack import running_services
from tests.trainer.conftest import upload_tagged
from tests.trainer.generated import shape_images
from visiondock.clients import AnnotationClient, RegistryClient
from visiondock.settings import LOCAL_DEV_API_KEY

from .conftest import ARTIFACTS, axe_violations, open_page

pytestmark = [pytest.mark.e2e, pytest.mark.training]
SHAPES_PROJECT = "console-shapes"
SHAPES = ("circle", "square", "triangle")
DETECTOR = "console-shelf"
PUBLIC_SCORING = "https://scoring.example.test"
RED, BLUE = (230, 30, 30), (30, 30, 230)
HEX_RUN = re.compile(r"[0-9a-f]{32,}")


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    """The services; a classifier trained from the project `console-shapes` (not promoted yet), and a tiny
    detector `console-shelf` promoted to production (version 1) with a second version that is not."""
    home = tmp_path_factory.mktemp("console-home")
    env = {"VISIONDOCK_SCORING_MODELS": "*@production", "VISIONDOCK_SCORING_POLL_SECONDS": "60",
           "VISIONDOCK_SCORING_PUBLIC_URL": PUBLIC_SCORING, "VISIONDOCK_SCORING_CAPTURE_RATE": "1",
           "VISIONDOCK_TRAINING_LAUNCHER": "local", "VISIONDOCK_LOG_LEVEL": "WARNING"}
    with running_services(home, env=env) as services, \
            AnnotationClient(services.url("annotation"), LOCAL_DEV_API_KEY) as annotation, \
            RegistryClient(services.url("registry"), LOCAL_DEV_API_KEY) as registry:
        annotation.create_project(SHAPES_PROJECT, "multiclass", tags=list(SHAPES))
        upload_tagged(annotation, SHAPES_PROJECT, shape_images(SHAPES, 6, seed=5))
        run_training(TrainingOptions(project=SHAPES_PROJECT, cache_dir=home / "feature-cache", progress=False),
                     annotation, registry)
        files = home / "detector"
        files.mkdir()
        for version in (1, 2):
            path = tiny_models.detector(files / f"{version}.onnx", model_name=DETECTOR)
            registry.register_version(DETECTOR, path, {"task": "detection", "labels": tiny_models.COLOURS,
                                                       "project_id": DETECTOR})
        registry.set_alias(DETECTOR, "production", 1)
        with httpx.Client(base_url=services.url("scoring"), headers={"X-API-Key": LOCAL_DEV_API_KEY}) as scoring:
            scoring.post("/v1/model/refresh", timeout=60)  # the detector served now, not at the next poll
            served = {m["name"]: m["state"] for m in scoring.get("/v1/models").json()["models"]}
            assert served == {DETECTOR: "loaded"}, served
        yield services


def watched(browser: Any, console: LocalServices) -> Any:
    """A page of the console whose console errors and uncaught errors are kept; it may reach only the
    annotation service."""
    outside: list[str] = []
    opened = open_page(browser, console.url("annotation"), outside)
    opened.console_errors = []
    opened.uncaught = []
    opened.on("console", lambda message: opened.console_errors.append(message.text)
              if message.type == "error" else None)
    opened.on("pageerror", lambda error: opened.uncaught.append(str(error)))
    opened.outside = outside
    return opened


@pytest.fixture
def fresh(browser: Any, console: LocalServices) -> Iterator[Any]:
    """A page that has not signed in."""
    opened = watched(browser, console)
    yield opened
    opened.close()
    assert not opened.uncaught, opened.uncaught
    assert not opened.outside, f"the console reached outside the annotation service: {opened.outside}"


@pytest.fixture
def page(fresh: Any, console: LocalServices) -> Any:
    """A page signed in (the key in the tab, as the sign-in form leaves it)."""
    fresh.goto(f"{console.url('annotation')}/app")
    fresh.evaluate(f"sessionStorage.setItem('visiondock.apiKey', {LOCAL_DEV_API_KEY!r})")
    return fresh


def sign_in(page: Any) -> None:
    page.wait_for_selector("#api-key")
    page.fill("#api-key", LOCAL_DEV_API_KEY)
    page.click("button[type=submit]")


def go(page: Any, base: str, route: str) -> None:
    """Open a model view of the console and wait until it is drawn."""
    page.goto(f"{base}/app{route}")
    wait_loaded(page, route)


def wait_loaded(page: Any, route: str) -> None:
    page.wait_for_function("want => document.body.dataset.loaded === want", arg=route, timeout=60_000)


def screenshot(page: Any, name: str) -> Path:
    """The whole page (docs/images has a copy of each: the pages people see)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def accessible(page: Any, view: str) -> None:
    violations = axe_violations(page)
    assert not violations, f"{view}: {violations}"


# -- one console --------------------------------------------------------------------------------------
def test_one_sign_in_keeps_the_deep_link_and_links_version_project_and_run(fresh: Any,
                                                                          console: LocalServices) -> None:
    page = fresh
    base = console.url("annotation")
    version_page = f"#/models/{SHAPES_PROJECT}/versions/1"
    page.goto(f"{base}/app{version_page}")
    sign_in(page)
    wait_loaded(page, version_page)  # the link followed before signing in is where the sign-in leads
    assert page.evaluate("location.hash") == version_page
    accessible(page, "version")

    # The models and the labeling are one page: no second sign-in between them, links both ways.
    page.click("#project-link")
    page.wait_for_function("window.gridPainted === true")
    assert page.evaluate("location.hash") == f"#/p/{SHAPES_PROJECT}/images"
    page.click("#project-nav a:has-text('Model')")
    wait_loaded(page, f"#/models/{SHAPES_PROJECT}")
    accessible(page, "model")
    page.click(f"#versions a[href='{version_page}']")
    wait_loaded(page, version_page)
    page.click("#run-link")
    run_hash = page.evaluate("location.hash")
    assert run_hash.startswith("#/runs/run-")
    wait_loaded(page, run_hash)
    assert page.locator("#run-state").inner_text() == "Finished: version 1"
    accessible(page, "run")
    screenshot(page, "console-run")
    page.click(f"#runs a[href='{version_page}']")
    wait_loaded(page, version_page)
    page.click("#console-nav a:has-text('Models')")
    wait_loaded(page, "#/models")
    assert page.locator(f"#models tr[data-model={SHAPES_PROJECT}] a[href='#/p/{SHAPES_PROJECT}/images']").count() == 1
    accessible(page, "models")
    screenshot(page, "console-models")

    # A favicon, served without a key.
    icon = page.evaluate("""async () => {
        const link = document.querySelector("link[rel=icon]");
        const answer = await fetch(link.href);
        return [answer.status, answer.headers.get("content-type")];
    }""")
    assert icon == [200, "image/svg+xml"]
    assert page.console_errors == []


def test_the_training_page_polls_only_what_exists_refuses_labels_that_cannot_train_and_speaks_in_words(
        page: Any, console: LocalServices) -> None:
    project = "console-few"
    with AnnotationClient(console.url("annotation"), LOCAL_DEV_API_KEY) as annotation, \
            RegistryClient(console.url("registry"), LOCAL_DEV_API_KEY) as registry:
        annotation.create_project(project, "multiclass", tags=["circle", "square"])
        upload_tagged(annotation, project, shape_images(["circle"], 2, seed=1) + shape_images(["square"], 1, seed=2))
        queued = registry.create_run(project, project_id=project)  # not launched: it waits, the page follows it
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))
        page.goto(f"{console.url('annotation')}/app#/p/{project}/training")
        page.wait_for_selector(".run-status")
        page.wait_for_timeout(3500)  # three polls
        polls = [url for url in asked if "/app/registry/v1/runs" in url]
        assert len(polls) >= 3  # it does follow the queued run ...
        assert not [url for url in asked if "/app/registry/v1/models" in url]  # ... and asks for no model yet
        assert page.console_errors == []
        assert page.locator(".run-status").inner_text() == "Waiting to start"
        registry.cancel_run(queued["id"], reason="test over")
        page.wait_for_selector(".run-status:has-text('Cancelled')")

        # One square: the trainer would fail seconds in; the page says why before any run starts.
        runs_before = len(registry.get_json("/v1/runs", params={"model": project})["data"])
        page.click("button:has-text('Start training')")
        page.wait_for_selector("#train-problem:has-text('square has 1')")
        assert "at least two labeled images" in page.locator("#train-problem").inner_text()
        assert len(registry.get_json("/v1/runs", params={"model": project})["data"]) == runs_before
        accessible(page, "training")
        screenshot(page, "console-training-refused")


def test_a_conflict_says_what_changed_in_words(page: Any, console: LocalServices) -> None:
    with AnnotationClient(console.url("annotation"), LOCAL_DEV_API_KEY) as annotation:
        image = next(i for i in annotation.list_images(SHAPES_PROJECT))
        page.goto(f"{console.url('annotation')}/app#/p/{SHAPES_PROJECT}/label/{image['id']}")
        page.wait_for_selector(".tag-buttons button")
        annotation.set_image_tags(SHAPES_PROJECT, image["id"], ["triangle"])  # someone else, meanwhile
        page.keyboard.press("1")
        page.wait_for_selector("#status[data-kind=error]:not(:empty)")
    message = page.locator("#status").inner_text()
    assert "changed by someone else" in message and not HEX_RUN.search(message), message


def test_the_pages_fit_a_phone(page: Any, console: LocalServices) -> None:
    base = console.url("annotation")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{base}/app#/projects")
    page.wait_for_selector("table.projects tbody tr")
    routes = [f"#/p/{SHAPES_PROJECT}/images", f"#/p/{SHAPES_PROJECT}/tags", f"#/p/{SHAPES_PROJECT}/data",
              f"#/p/{SHAPES_PROJECT}/review", f"#/p/{SHAPES_PROJECT}/training", "#/models",
              f"#/models/{SHAPES_PROJECT}", f"#/models/{SHAPES_PROJECT}/versions/1",
              f"#/models/{DETECTOR}/versions/1/test", "#/runs"]
    widths = {"#/projects": page.evaluate("document.documentElement.scrollWidth")}
    for route in routes:
        page.goto(f"{base}/app{route}")
        if route.startswith("#/p/"):
            page.wait_for_selector("h1")
            page.wait_for_timeout(500)
        else:
            wait_loaded(page, route)
        widths[route] = page.evaluate("document.documentElement.scrollWidth")
    with AnnotationClient(console.url("annotation"), LOCAL_DEV_API_KEY) as annotation:
        image = next(iter(annotation.list_images(SHAPES_PROJECT)))
    page.goto(f"{base}/app#/p/{SHAPES_PROJECT}/label/{image['id']}")
    page.wait_for_selector(".tag-buttons button")
    widths["labeler"] = page.evaluate("document.documentElement.scrollWidth")
    assert all(width <= 390 for width in widths.values()), widths
    go(page, base, f"#/models/{SHAPES_PROJECT}/versions/1")
    screenshot(page, "console-version-phone")


# -- try it and call it -------------------------------------------------------------------------------
def test_try_a_version_on_a_photo_and_run_the_code_that_calls_it(page: Any, console: LocalServices,
                                                                 tmp_path: Path) -> None:
    base = console.url("annotation")
    route = f"#/models/{DETECTOR}/versions/1/test"
    page.goto(f"{base}/app{route}")
    wait_loaded(page, route)
    assert page.locator("#try-target").input_value() == f"/v1/models/{DETECTOR}/versions/1/predict"
    photo = tiny_models.quadrants(RED, BLUE, size=(400, 300))
    page.set_input_files("#try-file", files=[{"name": "shelf.png", "mimeType": "image/png", "buffer": photo}])
    page.wait_for_function("document.body.dataset.tried === 'shelf.png'", timeout=30_000)
    # The answer drawn in the drawing style: one outline per box in its label's colour, a strip per label.
    style = page.evaluate("fetch('/v1/drawing-style', {headers: {'X-API-Key': sessionStorage.getItem("
                          "'visiondock.apiKey')}}).then((r) => r.json())")
    palette = {label: style["palette"][i] for i, label in enumerate(sorted(tiny_models.COLOURS))}
    boxes = page.locator("#try-answer svg rect[data-label]").all()
    assert sorted(box.get_attribute("data-label") for box in boxes) == ["blue", "red"]
    for box in boxes:
        assert box.get_attribute("stroke") == palette[box.get_attribute("data-label")]
    assert page.locator("#verdict").inner_text() == "2 objects found"
    stages = {row.get_attribute("data-stage"): float(row.get_attribute("data-value"))
              for row in page.locator("#timings tr[data-stage]").all()}
    assert {"decode", "preprocess", "inference", "postprocess", "total"} <= set(stages)
    assert stages["total"] >= stages["inference"] > 0
    assert f"Answered by {DETECTOR} version 1 (production" in page.locator("#answered-by").inner_text()
    accessible(page, "test page")
    screenshot(page, "console-test-detector")

    # Use this model: the public URLs, at the alias and at the version; the key by its name only.
    urls = page.locator("#prediction-urls").inner_text()
    assert f"{PUBLIC_SCORING}/v1/models/{DETECTOR}/aliases/production/predict" in urls
    assert f"{PUBLIC_SCORING}/v1/models/{DETECTOR}/versions/1/predict" in urls
    text = page.locator("#use").inner_text()
    assert 'the key named "local-dev"' in text and LOCAL_DEV_API_KEY not in page.content()

    # The code as copied, run against the real scoring service (the public address swapped for it).
    scoring = console.url("scoring")
    (tmp_path / "photo.jpg").write_bytes(photo)
    environment = {**os.environ, "VISIONDOCK_API_KEY": LOCAL_DEV_API_KEY}
    python = page.locator("#snippet-python pre").inner_text().replace(PUBLIC_SCORING, scoring)
    ran = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, env=environment, capture_output=True,
                         text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert sorted(line.split()[0] for line in ran.stdout.splitlines()) == ["blue", "red"]
    if shutil.which("curl"):
        curl = page.locator("#snippet-curl pre").inner_text().replace(PUBLIC_SCORING, scoring)
        ran = subprocess.run(["bash", "-c", curl], cwd=tmp_path, env=environment, capture_output=True, text=True,
                             timeout=60)
        assert ran.returncode == 0 and json.loads(ran.stdout)["model"] == DETECTOR, ran.stdout + ran.stderr
    # The Azure AI Search skill definition: its URI answers a skill request with the key in Azure's header.
    skill = json.loads(page.locator("#snippet-skill pre").inner_text())
    assert skill["uri"] == f"{PUBLIC_SCORING}/v1/models/{DETECTOR}/aliases/production/skills/detect"
    assert skill["httpHeaders"]["Ocp-Apim-Subscription-Key"] == "<the secret of the key named local-dev>"
    answer = httpx.post(skill["uri"].replace(PUBLIC_SCORING, scoring), headers={
        "Ocp-Apim-Subscription-Key": LOCAL_DEV_API_KEY}, json={"values": [
            {"recordId": "1", "data": {"image": {"data": base64.b64encode(photo).decode()}}}]}, timeout=30).json()
    outputs = {output["name"] for output in skill["outputs"]}
    assert outputs <= set(answer["values"][0]["data"]), answer

    # A version the scoring service does not serve: said so, and the alias offered instead.
    other = f"#/models/{DETECTOR}/versions/2/test"
    page.goto(f"{base}/app{other}")
    wait_loaded(page, other)
    assert "does not serve version 2 now (it serves v1 at production)" in page.locator("#try-status").inner_text()
    assert page.locator("#try-target").input_value() == f"/v1/models/{DETECTOR}/aliases/production/predict"
    assert page.console_errors == []


# -- honest numbers, and a promotion that says when it serves ------------------------------------------
def test_a_promotion_says_when_the_version_serves_and_the_numbers_carry_their_sample(
        page: Any, console: LocalServices) -> None:
    base = console.url("annotation")
    page.goto(f"{base}/app#/p/{SHAPES_PROJECT}/training")
    page.click("button:has-text('Promote v1 to production')")
    started = time.monotonic()
    page.wait_for_selector("#serving:has-text('serving since')", timeout=45_000)
    assert time.monotonic() - started < 45  # the scoring service's own poll is a minute away
    assert page.locator("#serving").inner_text().startswith("Version 1 is now production; serving since ")
    screenshot(page, "console-promoted")

    # Suggestions right away: the project's own model answers (no "no registry model has the alias").
    with AnnotationClient(console.url("annotation"), LOCAL_DEV_API_KEY) as annotation:
        annotation.upload_images(SHAPES_PROJECT, [(f"fresh-{tag}.jpg", data) for tag, data in
                                                  shape_images(SHAPES, 1, seed=44)])
    page.goto(f"{base}/app#/p/{SHAPES_PROJECT}/images")
    page.wait_for_function("window.gridPainted === true")
    page.click("button:has-text('Suggest labels for unlabeled images')")
    page.wait_for_selector(f"text=3 suggestion(s) from {SHAPES_PROJECT} version 1", timeout=60_000)

    # Every figure with the number of images behind it; a small sample gets an interval and a caveat.
    with RegistryClient(console.url("registry"), LOCAL_DEV_API_KEY) as registry:
        registry_version = registry.get_version(SHAPES_PROJECT, 1)
    metrics = registry_version["metrics"]
    route = f"#/models/{SHAPES_PROJECT}/versions/1"
    go(page, base, route)
    accuracy = page.locator(".metric[data-metric=accuracy]").inner_text()
    assert f"n = {metrics['test_count']} test images" in accuracy and "95 % interval" in accuracy
    assert f"Measured on {metrics['test_count']} test images" in page.locator("#sample-caveat").inner_text()
    assert page.locator("#threshold-note").inner_text() == metrics["threshold"]["note"]  # fewer than 30 images
    # What it expects on new photos: the estimate with its interval beside the images it rests on.
    estimate = metrics["estimate"]
    low, high = estimate["interval"]
    expected = page.locator("#estimate .metric[data-estimate=accuracy]").inner_text()
    assert f"{estimate['value'] * 100:.1f} %" in expected and f"n = {estimate['images']} images" in expected
    assert f"95 % interval {low * 100:.1f} %\u2013{high * 100:.1f} %" in expected, expected
    assert "out-of-fold predictions" in page.locator("#estimate").inner_text()
    # How it was chosen: every candidate cross-validated, best first, the chosen one marked.
    selection = registry_version["params"]["selection"]
    assert page.locator("#selection tbody tr").count() == len(selection["candidates"])
    chosen = page.locator("#selection tr[data-chosen=true]")
    assert chosen.count() == 1 and chosen.get_attribute("data-name") == selection["chosen"]
    for label, row in metrics["per_class"].items():
        recall = page.locator(f"#per-class tr[data-class={label}] td[data-metric=recall]")
        assert recall.get_attribute("title").startswith(f"{row['recall']:.3f} (n = {row['support']} images; 95 %")
    screenshot(page, "console-version-classifier")
    # The classifier tried on a photo: its answer in a banner in the label's colour, as /v1/render draws it.
    go(page, base, f"{route}/test")
    _, square = shape_images(["square"], 1, seed=77, size=320)[0]
    page.set_input_files("#try-file", files=[{"name": "square.jpg", "mimeType": "image/jpeg", "buffer": square}])
    page.wait_for_function("document.body.dataset.tried === 'square.jpg'", timeout=30_000)
    label = page.locator("#verdict").inner_text().split(" (")[0]
    assert label in SHAPES
    assert page.locator("#try-answer svg text").text_content().startswith(f"{label} ")
    assert page.locator("#predictions li").count() == len(SHAPES)
    assert "null" not in page.locator("#use").inner_text()
    if page.locator("#uncertain").count():  # below a default threshold (fewer than 30 images): said so
        assert metrics["threshold"]["note"] in page.locator("#uncertain").inner_text()
    accessible(page, "test page of a classifier")
    screenshot(page, "console-test-classifier")
    # The predictions the suggestions made were captured: a drift figure from so few says so.
    go(page, base, f"#/models/{SHAPES_PROJECT}")
    page.wait_for_selector("#serving li[data-alias=production]:has-text('serving since')")
    assert "a PSI from fewer than 100 moves a lot by chance alone" in page.locator("#drift-caveat").inner_text()
    assert page.console_errors == []


# -- likely label errors ---------------------------------------------------------------------------------
def test_likely_label_errors_are_listed_in_the_grid_most_likely_first_and_can_be_fixed(
        page: Any, console: LocalServices, tmp_path: Path) -> None:
    project = "console-flipped"
    with AnnotationClient(console.url("annotation"), LOCAL_DEV_API_KEY) as annotation, \
            RegistryClient(console.url("registry"), LOCAL_DEV_API_KEY) as registry:
        annotation.create_project(project, "multiclass", tags=list(SHAPES))
        drawn = shape_images(SHAPES, 8, seed=61)
        circles = [data for tag, data in drawn if tag == "circle"]
        upload_tagged(annotation, project, [item for item in drawn if item[0] != "circle"] +
                      [("circle", data) for data in circles[2:]])
        # Two circles labeled as squares, as a hurried person would.
        answer = annotation.upload_images(project, [(f"circle-{i}.jpg", data) for i, data in enumerate(circles[:2])],
                                          tags=["square"])
        flipped = {result["image"]["id"] for result in answer["results"]}
        page.goto(f"{console.url('annotation')}/app#/p/{project}/images")
        page.wait_for_function("window.gridPainted === true")
        page.select_option("#filter-status", "label-errors")
        page.wait_for_selector("#label-issues-note:has-text('No list of likely label errors yet')")
        result = run_training(TrainingOptions(project=project, cache_dir=tmp_path / "features", progress=False,
                                             int8=False, fp16=False), annotation, registry)
        issues = registry.label_issues(project, result.version)
        found = [item for item in issues["items"] if item["image_id"] in flipped]
        assert found, issues  # the trainer doubts a circle labeled square

        page.reload()
        page.wait_for_function("window.gridPainted === true")
        note = page.locator("#label-issues-note").inner_text()
        assert note.startswith(f"Version {result.version} found {issues['count']} likely label error")
        tiles = page.locator(".grid li[data-id]")
        shown = [tile.get_attribute("data-id") for tile in tiles.all()]
        assert shown == list(dict.fromkeys(item["image_id"] for item in issues["items"]))  # ranked, each once
        first = found[0]
        badge = page.locator(f".grid li[data-id='{first['image_id']}'] .badge.issue").inner_text()
        assert badge.startswith(f"#{first['rank']} labeled square (") and "the model prefers circle" in badge, badge
        accessible(page, "likely label errors")
        screenshot(page, "console-label-errors")

        # Fixed from the list: open the image, press the key of "circle", come back; the list says so.
        page.click(f".grid li[data-id='{first['image_id']}'] a.tile")
        page.wait_for_selector(".tag-buttons button")
        page.click(".tag-buttons button:has-text('circle')")  # sets the tag and moves to the next image
        page.wait_for_function("id => !location.hash.endsWith(id)", arg=first["image_id"])
        assert annotation.get_image(project, first["image_id"])["tags"] == ["circle"]
        page.goto(f"{console.url('annotation')}/app#/p/{project}/images")
        page.wait_for_function("window.gridPainted === true")
        fixed = page.locator(f".grid li[data-id='{first['image_id']}'] .badge.issue").inner_text()
        assert "relabeled since" in fixed
    assert page.console_errors == []
