"""Every trained version records its lineage: the labeled images (with label revisions) it learned
from, its parameters, the code version and its parent; the run's log tells how it went."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from services.trainer.job import run_training
from services.trainer.options import TrainingOptions
from services.trainer.steps import RunCancelled, RunSteps
from tests.trainer.conftest import project_name, upload_tagged
from tests.trainer.generated import shape_images
from visiondock.clients import AnnotationClient, RegistryClient

pytestmark = [pytest.mark.e2e, pytest.mark.training]
SHAPES = ("circle", "square", "triangle")


def test_a_version_records_its_data_code_parameters_and_parent(annotation: AnnotationClient,
                                                               registry: RegistryClient, cache_dir: Path) -> None:
    project = project_name("lineage")
    annotation.create_project(project, "multiclass", tags=SHAPES)
    images = upload_tagged(annotation, project, shape_images(SHAPES, 6, seed=11))
    assert {image["label_revision"] for image in images} == {1}
    first = run_training(TrainingOptions(project=project, cache_dir=cache_dir, progress=False), annotation, registry)

    lineage = registry.get_json(f"/v1/models/{project}/versions/{first.version}/lineage")
    dataset = lineage["dataset"]
    assert dataset["image_count"] == 18 and {i["id"] for i in dataset["images"]} == {i["id"] for i in images}
    assert {i["label_revision"] for i in dataset["images"]} == {1}
    assert dataset["tag_counts"] == {shape: 6 for shape in SHAPES} and sum(dataset["split_counts"].values()) == 18
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", dataset["content_hash"])
    assert lineage["params"]["mode"] == "quick" and lineage["params"]["seed"] == 0
    assert lineage["code"]["version"] == "0.1.0" and re.fullmatch(r"[0-9a-f]{40}", lineage["code"]["git_commit"])
    assert lineage["parent_version"] is None and lineage["changes_from_parent"] is None
    assert lineage["run_id"] == first.run_id and lineage["project_id"] == project

    log = registry.run_log(first.run_id)["lines"]
    texts = [line["text"] for line in log]
    assert texts[0] == "status running stage download" and texts[-1] == "status running stage register", texts
    assert [line["n"] for line in log] == list(range(1, len(log) + 1))

    # Relabel one image and add two: the next version's lineage shows exactly that against its parent.
    relabeled = next(i for i in images if i["tags"] == ["circle"])
    assert annotation.set_image_tags(project, relabeled["id"], ["square"])["label_revision"] == 2
    upload_tagged(annotation, project, shape_images(("triangle",), 2, seed=12))
    registry.set_alias(project, "production", first.version)
    second = run_training(TrainingOptions(project=project, cache_dir=cache_dir, progress=False), annotation, registry)
    later = registry.get_json(f"/v1/models/{project}/versions/{second.version}/lineage")
    assert later["parent_version"] == first.version
    assert later["changes_from_parent"] == {"same_data": False, "images_added": 2, "images_removed": 0,
                                            "images_relabeled": 1, "params_changed": []}
    revisions = {i["id"]: i["label_revision"] for i in later["dataset"]["images"]}
    assert revisions[relabeled["id"]] == 2
    assert later["dataset"]["tag_counts"] == {"circle": 5, "square": 7, "triangle": 8}



def test_a_cancelled_run_stops_the_trainer_at_its_next_report(registry: RegistryClient) -> None:
    run = registry.create_run("cancelled-shapes")
    reporter = RunSteps(registry, run["id"])
    reporter.stage("train")
    registry.cancel_run(run["id"], reason="wrong project")
    with pytest.raises(RunCancelled, match="stopped in the registry"):
        reporter.epoch(1, 1, {"loss": 0.5})
    assert registry.get_run(run["id"])["status"] == "cancelled"
    assert [line["text"] for line in registry.run_log(run["id"])["lines"]] == ["status running stage train"]


def test_a_cancel_the_heartbeat_learns_of_stops_the_training_at_its_next_epoch_or_stage(
        registry: RegistryClient) -> None:
    run = registry.create_run("cancelled-between-reports")
    reporter = RunSteps(registry, run["id"])
    reporter.stage("train")
    reporter.epoch(1, 30, {"loss": 0.9}, remaining_s=290.4)
    assert registry.get_run(run["id"])["remaining_seconds"] == 290.4
    reporter.start_heartbeat(interval=0.2)
    try:
        registry.cancel_run(run["id"])
        deadline = time.monotonic() + 30
        while reporter._cancelled is None:  # the heartbeat's next report is refused
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # Raised before anything is sent, even an epoch report the 1-second pacing would have skipped.
        with pytest.raises(RunCancelled, match="stopped in the registry"):
            reporter.epoch(2, 30, {"loss": 0.8}, remaining_s=280)
        with pytest.raises(RunCancelled):
            reporter.stage("export")
    finally:
        reporter.stop_heartbeat()
    texts = [line["text"] for line in registry.run_log(run["id"])["lines"]]
    assert texts == ["status running stage train", "status running epoch 1/30 about 4 min 50 s left loss=0.9"]
