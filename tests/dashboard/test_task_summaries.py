"""Each task's lines of `visiondock train` and `visiondock models MODEL` come from its own summary
(cli/version_summary.py), in process: the metric layouts a detector and a classifier store differ."""

from __future__ import annotations

from cli.version_summary import TASK_SUMMARIES, print_training_result, summary_of
from services.trainer.job import TrainingResult
from visiondock.vocabulary import DETECTION, MODEL_TASKS, MULTICLASS, MULTILABEL


def _printed(result: TrainingResult) -> str:
    lines: list[str] = []
    print_training_result(result, lines.append)
    return "\n".join(lines)


def test_every_task_has_a_summary() -> None:
    assert set(TASK_SUMMARIES) == set(MODEL_TASKS)


def test_a_detector_prints_its_map_and_per_class_boxes() -> None:
    metrics = {"map_50": 0.812, "map_50_95": 0.5, "test_count": 10, "train_count": 40, "thresholds": {"box": 0.3},
               "per_class": {"cup": {"ap_50": 0.8, "precision": 0.9, "recall": 0.7, "box_count": 12}}}
    text = _printed(TrainingResult("mugs", 3, metrics, [], 12.0, run_id="r1", task=DETECTION))
    assert text.splitlines()[0] == "registered mugs version 3 in 12.0 s (run r1)"
    assert "held-out mAP@0.5 0.812, mAP@[.5:.95] 0.500 on 10 images (trained on 40)" in text
    assert "cup" in text and "12" in text.splitlines()[3]
    assert text.splitlines()[-1] == "promote it with: visiondock promote mugs 3 --alias production"
    assert summary_of(DETECTION).headline(metrics) == "mAP@0.5 0.812"


def test_a_classifier_prints_its_accuracy_by_its_evaluation() -> None:
    row = {"precision": 1.0, "recall": 0.5, "f1": 0.67, "ap": None, "support": 4}
    metrics = {"accuracy": 0.75, "test_count": 8, "train_count": 8, "per_class": {"rose": row},
               "evaluation": {"method": "cross-validation", "folds": 2, "repeats": 3}}
    text = _printed(TrainingResult("flowers", 1, metrics, [], 1.0, task=MULTILABEL))
    assert "3 x 2-fold cross-validated exact-match accuracy 75.0% over 8 images" in text
    held_out = {**metrics, "evaluation": {"method": "held-out"}}
    text = _printed(TrainingResult("flowers", 1, held_out, [], 1.0, task=MULTICLASS))
    assert "held-out accuracy 75.0% on 8 images (trained on 8)" in text
    assert summary_of(MULTICLASS).headline({"accuracy": 0.75}) == "accuracy 75.0% (no interval)"


def test_the_chosen_candidate_is_shown_however_far_down_the_table_it_ranks() -> None:
    """Many candidates tie on a few images, and the rule takes the cheapest within one standard error:
    the chosen one may rank below the rows `visiondock train` prints, and is printed anyway."""
    from cli.version_summary import print_selection

    rows = [{"name": f"candidate {i}", "cost": 1.0 + i, "score": 0.9, "standard_error": 0.05, "spread": 0.1,
             "chosen": False} for i in range(8)]
    rows.append({"name": "lite0 linear", "cost": 1.0, "score": 0.85, "standard_error": 0.05, "spread": 0.1,
                 "chosen": True})
    params = {"selection": {"candidates": rows, "repeats": 5, "folds": 2, "images": 12, "best": "candidate 0",
                            "rule": "cheapest within one standard error of the best", "standard_error": 0.05,
                            "metric": "accuracy"}}
    lines: list[str] = []
    print_selection(params, lines.append, limit=4)
    text = "\n".join(lines)
    assert "lite0 linear" in text and "<- chosen" in text
    assert "... 4 more" in text and "candidate 5" not in text
