"""What the command line says about a version: its estimate on new photos, how it was chosen, its
INT8 verdict and the label issues its training found. Read from the version's stored metrics and
params (the registry's fields), so `visiondock train` and `visiondock models MODEL VERSION` print
the same thing.

Each task's metric layout is known here only, in its `TaskSummary` (`TASK_SUMMARIES`, keyed by the
version's task): the one-cell headline of a version list and what `visiondock train` prints after
training. A new task adds its entry; the commands stay as they are."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visiondock.vocabulary import CROSS_VALIDATION, DETECTION, FACE, MULTICLASS, MULTILABEL

if TYPE_CHECKING:  # the trainer's modules load only where a training ran
    from services.trainer.job import TrainingResult

Say = Callable[[str], None]


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _figure(metric: str, value: float | None) -> str:
    """Accuracy as a percentage; mAP (a detector's) as the number it is conventionally given as."""
    if value is None:
        return "-"
    return f"{value:.3f}" if metric.startswith("mAP") else percent(value)


def estimate_text(metrics: dict[str, Any]) -> str | None:
    """'expected accuracy on new photos 97.9 % (95 % interval 96.6-98.7 %) from 720 images, out-of-fold';
    for a detector its mAP@0.5 and mAP@[.5:.95] with their intervals and the boxes counted."""
    found = metrics.get("estimate")
    if not found or found.get("value") is None:
        return None
    metric = found["metric"]
    low, high = found["interval"]
    source = {"out-of-fold": "out-of-fold predictions of repeated cross-validation",
              "held-out": "held-out test images"}.get(found["source"], found["source"])
    text = (f"expected {metric} on new photos {_figure(metric, found['value'])} (95 % interval "
            f"{_figure(metric, low)}-{_figure(metric, high)})")
    coco = found.get("map_50_95")
    if coco and coco.get("value") is not None:
        text += (f", mAP@[.5:.95] {_figure(metric, coco['value'])} (95 % interval {_figure(metric, coco['low'])}-"
                 f"{_figure(metric, coco['high'])})")
    boxes = f", {found['boxes']} boxes" if "boxes" in found else ""
    return f"{text} from {found['images']} images{boxes} ({source})"


def short_estimate(metrics: dict[str, Any]) -> str:
    """'accuracy 97.9 % [96.6-98.7] n=720' (or 'mAP@0.5 0.931 [0.88-0.97] n=9') for one row of a version list."""
    found = metrics.get("estimate")
    if not found or found.get("value") is None:
        value = metrics.get("accuracy", metrics.get("map_50"))
        name = "accuracy" if "accuracy" in metrics else "mAP@0.5"
        return f"{name} {_figure(name, value)} (no interval)" if isinstance(value, float) else f"{name} -"
    metric = found["metric"]
    low, high = found["interval"]
    if metric.startswith("mAP"):
        return f"{metric} {found['value']:.3f} [{low:.3f}-{high:.3f}] n={found['images']}"
    return f"{metric} {percent(found['value'])} [{low:.1%}-{high:.1%}] n={found['images']}"


def detection_notes(metrics: dict[str, Any]) -> list[str]:
    """What a detection version's figures rest on beyond the estimate (its served threshold's choice)."""
    note = metrics.get("threshold_selection", {}).get("note")
    return [f"note: {note}"] if note else []


def print_selection(params: dict[str, Any], say: Say = print, *, limit: int | None = None) -> None:
    """The candidates compared by cross-validation, best first, the chosen one marked."""
    selection = params.get("selection") or {}
    rows = selection.get("candidates")
    if not rows:
        if selection.get("skipped"):
            say(f"  nothing was chosen: {selection['skipped']}")
        return
    say(f"  chosen by {selection['repeats']} x {selection['folds']}-fold cross-validation on {selection['images']} "
        f"images ({selection['rule']}; standard error {percent(selection['standard_error'])}):")
    say(f"    {'candidate':<32}{'cost':>6}{selection['metric'] + ' ± SE':>22}{'fold spread':>13}")
    ordered = sorted(rows, key=lambda row: -row["score"])
    shown = ordered[:limit] if limit else ordered
    # The chosen one is always shown: the rule takes the cheapest within one standard error, which can
    # rank below the first rows when many candidates tie.
    shown += [row for row in ordered[len(shown):] if row["chosen"]]
    for row in shown:
        mark = "  <- chosen" if row["chosen"] else ("  (best)" if row["name"] == selection["best"] else "")
        say(f"    {row['name']:<32}{row['cost']:>6.2f}{row['score']:>14.2%} ± {row['standard_error']:.2%}"
            f"{row['spread']:>13.2%}{mark}")
    if len(rows) > len(shown):
        say(f"    ... {len(rows) - len(shown)} more (visiondock models MODEL VERSION shows them all)")
    for note in selection.get("notes", []):
        say(f"    note: {note}")


def variant_text(name: str, checked: dict[str, Any]) -> str:
    if checked.get("registered"):
        verdict = "registered"
    elif "error" in checked:
        verdict = f"not made: {checked['error']}"
    elif "keeps_accuracy" in checked:
        verdict = "not registered (it loses accuracy)"
    elif "map_50_difference" in checked:
        verdict = "not registered (it loses mAP@0.5)"
    else:
        verdict = "not registered (disagrees with fp32)"
    if "keeps_accuracy" in checked:
        low, high = checked["difference_interval"]
        verdict += (f": {percent(checked['accuracy_int8'])} against fp32's {percent(checked['accuracy_fp32'])} on "
                    f"{checked['judged_on']}, difference {checked['difference']:+.2%} (95 % interval {low:+.2%} to "
                    f"{high:+.2%})")
    difference = checked.get("map_50_difference")
    if difference and difference["value"] is not None:
        verdict += (f": mAP@0.5 against fp32 {difference['value']:+.3f} (95 % interval {difference['low']:+.3f} to "
                    f"{difference['high']:+.3f}) on {difference['image_count']} labeled images")
    return f"{name} variant {verdict}"


def print_checks(metrics: dict[str, Any], model: str, version: int, say: Say = print) -> None:
    """Near-duplicates and the label issues the out-of-fold predictions found."""
    duplicates = metrics.get("near_duplicates")
    if duplicates and duplicates.get("groups"):
        kept = len(duplicates.get("kept_out_of_estimate", []))
        say(f"  near-duplicates: {duplicates['images']} images in {duplicates['groups']} groups (features at cosine "
            f"≥ {duplicates['threshold']}), each kept in one fold" + (f"; {kept} test images kept out of the estimate"
                                                                      if kept else ""))
    issues = metrics.get("label_issues")
    if issues:
        say(f"  likely label errors: {issues['count']} of {issues['checked']} images (given label at out-of-fold "
            f"probability < {issues['threshold']}); list them: visiondock label-issues {model} {version}")


def _print_variants(metrics: dict[str, Any], say: Say) -> None:
    for variant, name in (("int8", "INT8"), ("fp16", "fp16")):
        if variant in metrics:
            say(f"  {variant_text(name, metrics[variant])}")


def print_version(version: dict[str, Any], model: str, number: int, say: Say = print) -> None:
    """One registered version (`visiondock models MODEL VERSION`): estimate, selection, variants, checks."""
    metrics, params = version.get("metrics", {}), version.get("params", {})
    backbones = "+".join(params.get("backbones") or [params.get("backbone", "?")])
    views = " with flip" if params.get("flip") else ""
    views += f"{' and' if views else ' on'} square-rooted features" if params.get("sqrt") else ""
    if version["task"] == DETECTION:
        built = f"{params.get('architecture', 'detector')} on {backbones}, {params.get('epochs_run', '?')} epochs"
    else:
        built = f"{backbones}{views}, {params.get('head', '?')} head"
    say(f"{model} version {number}: {version['task']}, {built}, {params.get('mode', '?')} mode; registered "
        f"{version['created_at']}")
    estimate = estimate_text(metrics)
    say(f"  {estimate}" if estimate else "  no estimate with an interval (trained before versions had one)")
    for note in detection_notes(metrics):
        say(f"  {note}")
    print_selection(params, say)
    _print_variants(metrics, say)
    print_checks(metrics, model, number, say)


# -- each task's metric layout -------------------------------------------------------------------
def _classifier_headline(metrics: dict[str, Any]) -> str:
    return short_estimate(metrics)


def _detector_headline(metrics: dict[str, Any]) -> str:
    if metrics.get("estimate"):
        return short_estimate(metrics)
    value = metrics.get("map_50")  # a version from before detection estimates had an interval
    return f"mAP@0.5 {value:.3f}" if isinstance(value, float) else "mAP@0.5 -"


def _classifier_result(result: TrainingResult, say: Say) -> None:
    """Accuracy (held-out or cross-validated), the estimate, the selection, the data checks, per class."""
    metrics = result.metrics
    name = "exact-match accuracy" if result.task == MULTILABEL else "accuracy"
    evaluation = metrics.get("evaluation", {})
    if evaluation.get("method") == CROSS_VALIDATION:
        say(f"{evaluation.get('repeats', 1)} x {evaluation['folds']}-fold cross-validated {name} "
            f"{metrics['accuracy']:.1%} over {metrics['test_count']} images")
    else:
        say(f"held-out {name} {metrics['accuracy']:.1%} on {metrics['test_count']} images "
            f"(trained on {metrics['train_count']})")
    estimate = estimate_text(metrics)
    if estimate:
        say(f"  {estimate}")
    if metrics.get("refit"):
        say(f"  the registered model learned from all {metrics['refit']['images']} labeled images")
    print_selection(result.params, say, limit=8)
    for warning in result.report.get("warnings", []):
        say(f"  warning: {warning}")
    print_checks(metrics, result.model, result.version, say)
    say(f"  {'class':<24}{'precision':>10}{'recall':>8}{'f1':>8}{'AP':>7}{'images':>8}")
    for label, row in metrics["per_class"].items():
        ap = f"{row['ap']:.2f}" if row.get("ap") is not None else "-"
        say(f"  {label:<24}{row['precision']:>10.2f}{row['recall']:>8.2f}{row['f1']:>8.2f}{ap:>7}"
            f"{row['support']:>8}")


def _detector_result(result: TrainingResult, say: Say) -> None:
    """Held-out mAP, the estimate with its intervals, and per class AP, precision, recall and the errors."""
    metrics = result.metrics
    say(f"held-out mAP@0.5 {metrics.get('map_50') or 0:.3f}, mAP@[.5:.95] {metrics.get('map_50_95') or 0:.3f} "
        f"on {metrics['test_count']} images (trained on {metrics['train_count']})")
    for line in filter(None, [estimate_text(metrics), *detection_notes(metrics)]):
        say(f"  {line}")
    errors = metrics.get("errors", {}).get("per_class", {})
    say(f"  {'class':<24}{'AP@0.5':>8}{'AP@.5:.95':>10}{'precision':>10}{'recall':>8}{'boxes':>7}"
        f"{'missed':>8}{'misloc.':>8}{'wrong':>7}{'false+':>7}")
    for label, row in metrics["per_class"].items():
        e = errors.get(label, {})
        say(f"  {label:<24}{row['ap_50'] or 0:>8.3f}{row.get('ap_50_95') or 0:>10.3f}{row['precision']:>10.2f}"
            f"{row['recall'] or 0:>8.2f}{row['box_count']:>7}{e.get('missed', '-'):>8}"
            f"{e.get('mislocated', '-'):>8}{e.get('wrong_class', '-'):>7}{e.get('false_positives', '-'):>7}")


@dataclass(frozen=True)
class TaskSummary:
    headline: Callable[[dict[str, Any]], str]  # a version's metrics in one cell of `visiondock models MODEL`
    result: Callable[[TrainingResult, Say], None]  # the task's own lines of `visiondock train`


CLASSIFIER_SUMMARY = TaskSummary(_classifier_headline, _classifier_result)
TASK_SUMMARIES: dict[str, TaskSummary] = {
    MULTICLASS: CLASSIFIER_SUMMARY,
    MULTILABEL: CLASSIFIER_SUMMARY,
    FACE: CLASSIFIER_SUMMARY,
    DETECTION: TaskSummary(_detector_headline, _detector_result),
}


def summary_of(task: str) -> TaskSummary:
    return TASK_SUMMARIES.get(task, CLASSIFIER_SUMMARY)


def print_training_result(result: TrainingResult, say: Say = print) -> None:
    """What `visiondock train` prints once the version is registered."""
    say(f"registered {result.model} version {result.version} in {result.seconds:.1f} s (run {result.run_id})")
    summary_of(result.task).result(result, say)
    say(f"  thresholds: {json.dumps(result.metrics.get('thresholds', {}))}")
    _print_variants(result.metrics, say)
    for item in result.skipped:
        say(f"  skipped {item['filename']}: {item['reason']}")
    for item in result.report.get("no_face", []):
        say(f"  no face found in {item['filename']} ({item['split']})")
    say(f"promote it with: visiondock promote {result.model} {result.version} --alias production")
