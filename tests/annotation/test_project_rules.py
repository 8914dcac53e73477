"""What a label may be in each kind of project, as `Project` says it (no store, no HTTP)."""

from __future__ import annotations

import pytest

from services.annotation.project import Labels, Project, proposed_labels
from visiondock.errors import InvalidInput
from visiondock.vocabulary import DETECTION, FACE, MULTICLASS, MULTILABEL, UNKNOWN_LABEL

FLOWERS = Project("flowers", MULTICLASS)
SCENES = Project("scenes", MULTILABEL)
SHELF = Project("shelf", DETECTION)
BOX = {"tag": "can", "left": 0.1, "top": 0.2, "width": 0.3, "height": 0.4}


def test_a_multiclass_image_has_one_tag_and_without_it_is_unlabeled() -> None:
    assert FLOWERS.tag_labels(["rose", "rose"]) == Labels(["rose"])
    with pytest.raises(InvalidInput, match="exactly one tag; got 2: rose, tulip"):
        FLOWERS.tag_labels(["rose", "tulip"])
    assert FLOWERS.tags_problem(["a", "b"], given="the dataset gives") == \
        "a multiclass image has exactly one tag; the dataset gives 2: a, b"
    assert not FLOWERS.is_labeled([]) and FLOWERS.is_labeled(["rose"])
    # No tag in the other kinds says that the image shows nothing of the project: it is labeled.
    assert SCENES.is_labeled([]) and SHELF.is_labeled([])
    assert SCENES.tag_labels(["sky", "sea"]) == Labels(["sky", "sea"])


def test_boxes_label_detection_images_only_and_name_their_tags() -> None:
    labels = SHELF.box_labels([BOX, {**BOX, "tag": "box"}])
    assert labels.tags == ["box", "can"] and len(labels.regions) == 2
    with pytest.raises(InvalidInput, match="labeled with boxes"):
        SHELF.tag_labels(["can"])
    with pytest.raises(InvalidInput, match="labeled with boxes"):
        SHELF.tag_labels([])  # no tags either: a detection image is changed through its boxes
    with pytest.raises(InvalidInput, match="labeled with tags"):
        FLOWERS.box_labels([BOX])
    with pytest.raises(InvalidInput, match="tags are those of its boxes"):
        SHELF.check(Labels(["box"], [BOX]))
    assert SHELF.check(Labels(["can"], [BOX])) == Labels(["can"], [BOX])


def test_given_labels_take_what_is_missing_from_the_prediction() -> None:
    predicted = Labels(["rose"])
    assert FLOWERS.given_labels(None, None, otherwise=predicted) == Labels(["rose"])
    assert FLOWERS.given_labels(["tulip"], None, otherwise=predicted) == Labels(["tulip"])
    with pytest.raises(InvalidInput):
        FLOWERS.given_labels(None, [BOX], otherwise=predicted)
    boxes = Labels(["can"], [BOX])
    assert SHELF.given_labels(None, None, otherwise=boxes) == boxes
    assert SHELF.given_labels([], [], otherwise=boxes) == Labels([], [])
    with pytest.raises(InvalidInput):
        SHELF.given_labels(["can"], None, otherwise=boxes)


def test_renames_and_bulk_changes() -> None:
    moved = SHELF.renamed(Labels(["box", "can"], [BOX, {**BOX, "tag": "box"}]),
                          lambda tag: None if tag == "box" else "tin")
    assert moved == Labels(["tin"], [{**BOX, "tag": "tin"}])
    assert SCENES.renamed(Labels(["sky", "sea"]), lambda tag: "water" if tag == "sea" else tag).tags == ["sky", "water"]
    assert FLOWERS.retagged(["rose"], add=["tulip"], remove=set()) == ["tulip"]
    assert FLOWERS.retagged(["rose"], add=[], remove={"rose"}) == []
    assert SCENES.retagged(["sky"], add=["sea"], remove={"sky"}) == ["sea"]


def test_which_models_fit_and_what_their_answers_propose() -> None:
    assert FLOWERS.fits_task(FACE) and FLOWERS.fits_task(MULTICLASS) and not FLOWERS.fits_task(DETECTION)
    assert SHELF.fitting_tasks == (DETECTION,) and not SCENES.fits_task(MULTICLASS)
    assert proposed_labels(MULTICLASS, {"label": UNKNOWN_LABEL}) == Labels()
    assert proposed_labels(MULTICLASS, {"label": "rose"}) == Labels(["rose"])
    assert proposed_labels(MULTILABEL, {"tags": [{"label": "sky"}, {"label": 3}]}) == Labels(["sky"])
    found = {"detections": [{"label": "can", "score": 0.8, "region": {**BOX, "width": 2.0}},
                            {"label": "box", "region": {"left": 0, "top": 0}}]}
    proposed = proposed_labels(DETECTION, found, scores=True)
    assert proposed.tags == ["can"] and proposed.regions[0]["width"] == pytest.approx(0.9)
    assert proposed.regions[0]["score"] == 0.8 and "score" not in proposed_labels(DETECTION, found).regions[0]
    assert proposed.keeping({"box"}) == Labels()
