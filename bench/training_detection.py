"""Detection training benchmark on real photos: grocery (20 annotated shelf photos, 8 classes).

Leave-images-out cross-validation: the 20 annotated photos are shuffled once (seed 0)
and cut into folds of 4; each fold trains on the other 16 plus the 5 negative photos
(background only) and is scored on its 4 unseen photos. Hyperparameters are the
`DetectorOptions` defaults, identical across folds, with fixed seeds; no fold sees its
test photos before it is scored (no validation split: fixed epochs, default
thresholds). Prints mAP@0.5 and mAP@[.5:.95] per fold with their mean ± standard
deviation, the same metrics pooled over all 20 out-of-fold photos, per-class AP, and
wall time. Target: mAP@0.5 >= 0.90.

    python -m bench.training_detection [--folds 5] [--only-folds N] [--epochs N] [--threads N]
                                       [--as-trained [--refit-best-epoch]] [--datasets ../shared/datasets]
    python -m bench.training_detection --compare [--candidate NAME=JSON ...] [--save FILE]

`--compare` (`make bench-detection`) prints one table: per fold, today's default (advanced mode:
60 epochs on every photo of the fold, what its refit exports) beside quick mode as the trainer
trains it (the fold's photos split by the trainer's own split, so quick's held-out photos train
neither; what quick exports), each scored on the fold's unseen photos; then the means, the
pooled out-of-fold mAP with the quick-minus-default difference and its 95 % interval (paired
bootstrap over the 20 photos), and the training time of each in CPU seconds and wall seconds
with the ratio quick/default measured in the same run. `--candidate NAME=JSON` adds a recipe:
`DetectorOptions` fields over quick's (e.g. `q384={"input_size": 384, "epochs": 30}`), and
`"refit": true` for a recipe whose exported model is refitted on every photo of the fold. A long run
can be shared between processes: `--select-folds 1,2 --save a.pkl`, `--select-folds 3,4,5 --save b.pkl`,
then `--combine a.pkl b.pkl` prints the table of all folds.

`--only-folds 1` trains and scores the first fold only: a check that the benchmark runs,
in about a fifth of the time.

`--as-trained` trains each fold as `visiondock train` does: the fold's photos are split
by the trainer's own stratified split into training and validation (15 %), the detector
keeps its best validation epoch (early stopping) and the score threshold is chosen on
validation; that detector is scored, then the refit (what the trainer exports: the same
options on all the fold's photos, for the whole schedule unless `--refit-best-epoch`) is
scored on the same test photos. The refit is then the same training as the default
folds, so its rows match theirs. About twice the time.

Skips (exit 0 with a note) when the data set folder is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench.shared_sets import DEFAULT_DATASETS
from services.trainer.detection_evaluation import map_difference, map_estimate
from services.trainer.evaluation import best_f1_threshold, detection_metrics
from services.trainer.fcos import DetectionSample, DetectorOptions, choose_score_threshold, fit_detector
from services.trainer.fcos.training import detection_options, image_results
from services.trainer.options import TrainingOptions
from services.trainer.splits import rarest_label_groups, stratified_split
from services.trainer.tasks.detection import MIN_VALIDATION_IMAGES
from visiondock.vocabulary import ADVANCED, QUICK

TARGET_MAP_50 = 0.90
FOLD_SEED = 0
# Quick detection of the 25 grocery photos on 2 CPU cores, from download to registration.
QUICK_BUDGET_S = 300


def load_average() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def load_grocery(root: Path) -> tuple[list[str], list[DetectionSample], list[DetectionSample], list[str]]:
    """Photo names, annotated samples (in name order), negative samples, label names (sorted)."""
    folder = root / "positive"
    names = sorted((p.stem for p in folder.glob("*.jpg")), key=int)
    raw_labels = {name: (folder / f"{name}.bboxes.labels.tsv").read_text().split() for name in names}
    labels = sorted({label for found in raw_labels.values() for label in found})
    positives = []
    for name in names:
        boxes = np.loadtxt(folder / f"{name}.bboxes.tsv", ndmin=2, dtype=np.float32)
        with Image.open(folder / f"{name}.jpg") as image:
            rgb = image.convert("RGB")
        positives.append(DetectionSample(rgb, boxes, np.array([labels.index(x) for x in raw_labels[name]])))
    negatives = []
    for path in sorted((root / "negative").glob("*.jpg")):
        with Image.open(path) as image:
            negatives.append(DetectionSample(image.convert("RGB"), np.zeros((0, 4), np.float32),
                                             np.zeros(0, np.int64)))
    return names, positives, negatives, labels


def make_folds(count: int, folds: int, seed: int = FOLD_SEED) -> list[list[int]]:
    order = np.random.default_rng(seed).permutation(count)
    return [sorted(int(i) for i in part) for part in np.array_split(order, folds)]


def _fmt(value: float | None, digits: int = 3) -> str:
    return "  n/a" if value is None else f"{value:.{digits}f}"


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def split_for_validation(samples: list[DetectionSample], labels: list[str],
                         seed: int) -> tuple[list[DetectionSample], list[DetectionSample]]:
    """Training and validation photos as the trainer splits a project whose photos are all on the
    training side (`import --split train`): stratified by rarest tag, the default validation share."""
    groups = rarest_label_groups([[labels[int(i)] for i in s.labels] for s in samples])
    split = stratified_split(groups, ["train"] * len(samples), test_fraction=TrainingOptions.test_fraction,
                             validation_fraction=TrainingOptions.validation_fraction, seed=seed)
    return [samples[i] for i in split.train], [samples[i] for i in split.validation]


def epoch_times(fitted: Any) -> str:
    """Where a fit ran and how long its epochs took: the median, the first (the loader's workers start)
    and the median time the loop waited for the DataLoader's views (the device left unfed)."""
    history, params = fitted.history, fitted.params
    seconds = [h["seconds"] for h in history]
    waits = [h["data_wait_seconds"] for h in history]
    device = params["device"] + (f" ({torch.cuda.get_device_name()})" if params["device"] == "cuda" else "")
    return (f"{len(history)} epochs on {device} with {params['loader_workers']} loader workers: median "
            f"{statistics.median(seconds):.2f} s an epoch (first {seconds[0]:.2f} s), waiting for views "
            f"{statistics.median(waits):.2f} s")


def fit_as_trained(train: list[DetectionSample], test: list[DetectionSample], labels: list[str],
                   options: DetectorOptions, *, refit_best_epoch: bool = False) -> dict[str, Any]:
    """The trainer's path on one fold: fit with validation, score; refit on every photo, score.
    `refit_best_epoch` refits for the best validation epoch instead of the whole schedule."""
    fit_on, validation = split_for_validation(train, labels, options.seed)
    evaluated = fit_detector(fit_on, validation, labels, options, progress=False)
    print(f"    with validation: {epoch_times(evaluated)}", flush=True)
    threshold = choose_score_threshold(evaluated, validation)
    epochs = evaluated.params["best_epoch"] if refit_best_epoch else options.epochs
    refit = fit_detector(train, [], labels, replace(options, epochs=epochs), progress=False)
    print(f"    refit: {epoch_times(refit)}", flush=True)
    scored = {name: image_results(fitted, test) for name, fitted in (("evaluated", evaluated), ("refit", refit))}
    return {"validation_photos": len(validation), "best_epoch": evaluated.params["best_epoch"],
            "refit_epochs": epochs, "epochs_run": evaluated.params["epochs_run"],
            "threshold": threshold, "results": scored,
            "metrics": {name: detection_metrics(results, labels, score_threshold=threshold)
                        for name, results in scored.items()}}


def run(datasets: Path, *, folds: int, options: DetectorOptions, threads: int,
        only_folds: int | None = None, as_trained: bool = False, refit_best_epoch: bool = False) -> dict[str, Any]:
    torch.set_num_threads(threads)
    names, positives, negatives, labels = load_grocery(datasets / "grocery")
    print(f"grocery: {len(positives)} annotated photos ({sum(len(s.boxes) for s in positives)} boxes, "
          f"{len(labels)} classes), {len(negatives)} negatives; {folds}-fold leave-images-out CV", flush=True)
    print(f"options: input {options.input_size} stretch, {options.epochs} epochs, batch {options.batch_size}, "
          f"lr head {options.head_lr:g} / backbone {options.learning_rate:g}, seed {options.seed}; "
          f"torch threads {threads}; {os.cpu_count()} CPUs; load average at start {load_average()}", flush=True)
    started = time.perf_counter()
    rows, pooled = [], []
    evaluated_pooled: list[Any] = []
    for number, test_index in enumerate(make_folds(len(positives), folds)[:only_folds], start=1):
        train = [s for i, s in enumerate(positives) if i not in test_index] + negatives
        test = [positives[i] for i in test_index]
        fold_started = time.perf_counter()
        row: dict[str, Any] = {"fold": number, "test": [names[i] for i in test_index]}
        if as_trained:
            trained = fit_as_trained(train, test, labels, options, refit_best_epoch=refit_best_epoch)
            results, metrics = trained["results"]["refit"], trained["metrics"]["refit"]
            evaluated_pooled += trained["results"]["evaluated"]
            row["as_trained"] = trained
        else:
            fitted = fit_detector(train, [], labels, options, progress=False)
            print(f"    {epoch_times(fitted)}", flush=True)
            results = image_results(fitted, test)
            metrics = detection_metrics(results, labels, score_threshold=fitted.thresholds["score"])
        seconds = time.perf_counter() - fold_started
        pooled += results
        rows.append(row | {"metrics": metrics, "seconds": seconds, "load": load_average()})
        print(f"  fold {number}: mAP@0.5 {metrics['map_50']:.3f}  mAP@[.5:.95] {metrics['map_50_95']:.3f}  "
              f"train {seconds:.0f} s  (load {load_average()})", flush=True)
    wall = time.perf_counter() - started
    overall = detection_metrics(pooled, labels, score_threshold=options.score_threshold)
    evaluated = detection_metrics(evaluated_pooled, labels, score_threshold=options.score_threshold) \
        if evaluated_pooled else None
    # The served threshold a validation split would pick, here from out-of-fold detections:
    # how the default DetectorOptions.score_threshold was chosen.
    best = best_f1_threshold(pooled, len(labels), floor=0.05, ceiling=0.9)
    at_best = detection_metrics(pooled, labels, score_threshold=best)
    return {"rows": rows, "pooled": overall, "labels": labels, "wall_s": wall, "threads": threads,
            "options": options, "best_threshold": best, "at_best": at_best, "evaluated_pooled": evaluated}


def print_as_trained(report: dict[str, Any]) -> None:
    """The trainer's path per fold: the detector validation chose, then its refit on every photo."""
    rows = report["rows"]
    print()
    print("as `visiondock train` trains (validation split, best validation epoch; then the refit):")
    print(f"{'fold':<6}{'val photos':>11}{'best epoch':>11}{'run':>5}{'evaluated 0.5':>15}{'.5:.95':>8}"
          f"{'refit epochs':>14}{'refit 0.5':>11}{'.5:.95':>8}")
    for r in rows:
        t = r["as_trained"]
        e, f = t["metrics"]["evaluated"], t["metrics"]["refit"]
        print(f"{r['fold']:<6}{t['validation_photos']:>11}{t['best_epoch']:>11}{t['epochs_run']:>5}"
              f"{e['map_50']:>15.3f}{e['map_50_95']:>8.3f}{t['refit_epochs']:>14}{f['map_50']:>11.3f}"
              f"{f['map_50_95']:>8.3f}")
    for name in ("evaluated", "refit"):
        m50 = [r["as_trained"]["metrics"][name]["map_50"] for r in rows]
        m = [r["as_trained"]["metrics"][name]["map_50_95"] for r in rows]
        pooled = report["evaluated_pooled"] if name == "evaluated" else report["pooled"]
        print(f"{name:<10} per fold mAP@0.5 {statistics.mean(m50):.3f}±{_spread(m50):.3f}, mAP@[.5:.95] "
              f"{statistics.mean(m):.3f}±{_spread(m):.3f}; pooled {pooled['map_50']:.3f} / {pooled['map_50_95']:.3f}")


def print_table(report: dict[str, Any]) -> None:
    rows, labels = report["rows"], report["labels"]
    map50 = [r["metrics"]["map_50"] for r in rows]
    map_all = [r["metrics"]["map_50_95"] for r in rows]
    threshold = report["options"].score_threshold
    print()
    print(f"{'fold':<6}{'test photos':<18}{'mAP@0.5':>9}{'mAP@[.5:.95]':>14}{'P@' + str(threshold):>9}"
          f"{'R@' + str(threshold):>9}{'train s':>9}")
    for r in rows:
        m = r["metrics"]
        print(f"{r['fold']:<6}{' '.join(r['test']):<18}{m['map_50']:>9.3f}{m['map_50_95']:>14.3f}"
              f"{m['precision']:>9.3f}{_fmt(m['recall']):>9}{r['seconds']:>9.0f}")
    print(f"{'mean ± std':<24}{statistics.mean(map50):>6.3f}±{_spread(map50):.3f}"
          f"{statistics.mean(map_all):>8.3f}±{_spread(map_all):.3f}")
    print(f"{'min':<24}{min(map50):>9.3f}{min(map_all):>14.3f}")
    p = report["pooled"]
    print(f"{'pooled (all folds)':<24}{p['map_50']:>9.3f}{p['map_50_95']:>14.3f}{p['precision']:>9.3f}"
          f"{_fmt(p['recall']):>9}")
    best, at_best = report["best_threshold"], report["at_best"]
    print(f"best-F1 score threshold on the pooled out-of-fold detections: {best:.2f} "
          f"(precision {at_best['precision']:.3f}, recall {_fmt(at_best['recall'])})")
    print()
    print(f"{'class':<10}{'AP@0.5 mean':>12}{'min':>7}{'AP@[.5:.95]':>13}{'pooled AP@0.5':>15}"
          f"{'pooled AP@[.5:.95]':>20}")
    for label in labels:
        per_fold = [r["metrics"]["per_class"][label] for r in rows]
        ap50 = [c["ap_50"] for c in per_fold if c["ap_50"] is not None]
        ap = [c["ap_50_95"] for c in per_fold if c["ap_50_95"] is not None]
        pooled = p["per_class"][label]
        print(f"{label:<10}{statistics.mean(ap50):>12.3f}{min(ap50):>7.3f}{statistics.mean(ap):>13.3f}"
              f"{_fmt(pooled['ap_50']):>15}{_fmt(pooled['ap_50_95']):>20}")
    print()
    seconds = [r["seconds"] for r in rows]
    verdict = "meets" if statistics.mean(map50) >= TARGET_MAP_50 else "MISSES"
    print(f"mean mAP@0.5 {statistics.mean(map50):.3f} {verdict} the target {TARGET_MAP_50:.2f} "
          f"(the 2017 Fast R-CNN pipeline: 0.63-0.87 on its test photos)")
    print(f"wall time {report['wall_s']:.0f} s in all; training {statistics.mean(seconds):.0f} s per fold "
          f"(min {min(seconds):.0f}, max {max(seconds):.0f}) on {report['threads']} torch threads; "
          f"load average at end {load_average()} (timings are unreliable above 1.5 on this 2-core machine)")


# -- --compare: today's default against quick mode -------------------------------------------
@dataclass
class Recipe:
    """How one fold is trained: the detector options, and whether the trainer's own split holds
    photos out of the exported model (quick without a refit) or every photo trains it."""

    name: str
    options: DetectorOptions
    own_split: bool


def recipes(candidates: dict[str, dict[str, Any]], seed: int) -> list[Recipe]:
    found = [Recipe("default", detection_options(ADVANCED, seed=seed), own_split=False),
             Recipe("quick", detection_options(QUICK, seed=seed), own_split=not quick_refits())]
    for name, fields in candidates.items():
        fields = dict(fields)
        refit = fields.pop("refit", False)  # exported after a refit on every photo of the fold
        found.append(Recipe(name, replace(detection_options(QUICK, seed=seed), **fields), own_split=not refit))
    return found


def quick_refits() -> bool:
    """Whether a quick detection run exports a refit on every photo (the trainer's default)."""
    from services.trainer.tasks.detection import QUICK_REFIT

    return QUICK_REFIT


def trainer_split(samples: list[DetectionSample], labels: list[str], seed: int) -> list[int]:
    """The photos the trainer trains on from these: its stratified test split held out, and its validation
    split too small to keep (fewer than MIN_VALIDATION_IMAGES) trained on."""
    groups = rarest_label_groups([[labels[int(i)] for i in s.labels] for s in samples])
    split = stratified_split(groups, [None] * len(samples), test_fraction=TrainingOptions.test_fraction,
                             validation_fraction=TrainingOptions.validation_fraction, seed=seed)
    kept = split.train + (split.validation if len(split.validation) < MIN_VALIDATION_IMAGES else [])
    return sorted(kept)


def compare(datasets: Path, *, folds: int, threads: int, candidates: dict[str, dict[str, Any]],
            only_folds: int | None = None, selected: set[int] | None = None, seed: int = 0) -> dict[str, Any]:
    torch.set_num_threads(threads)
    names, positives, negatives, labels = load_grocery(datasets / "grocery")
    plan = recipes(candidates, seed)
    print(f"grocery: {len(positives)} annotated photos ({sum(len(s.boxes) for s in positives)} boxes, "
          f"{len(labels)} classes), {len(negatives)} negatives; {folds}-fold leave-images-out CV; "
          f"torch threads {threads}; {os.cpu_count()} CPUs; load average at start {load_average()}", flush=True)
    for recipe in plan:
        o = recipe.options
        print(f"  {recipe.name}: input {o.input_size}, {o.epochs} epochs, batch {o.batch_size}, lr backbone "
              f"{o.learning_rate:g}, frozen blocks {o.frozen_blocks}, "
              f"{'the trainer holds its test photos out' if recipe.own_split else 'every fold photo trains it'}",
              flush=True)
    rows: list[dict[str, Any]] = []
    pooled: dict[str, list[Any]] = {r.name: [] for r in plan}
    for number, test_index in enumerate(make_folds(len(positives), folds)[:only_folds], start=1):
        if selected is not None and number not in selected:
            continue
        fold = [s for i, s in enumerate(positives) if i not in test_index] + negatives
        test = [positives[i] for i in test_index]
        row: dict[str, Any] = {"fold": number, "test": [names[i] for i in test_index], "recipes": {}}
        for recipe in plan:
            train = [fold[i] for i in trainer_split(fold, labels, seed)] if recipe.own_split else fold
            load_before, wall, cpu = load_average(), time.perf_counter(), time.process_time()
            fitted = fit_detector(train, [], labels, recipe.options, progress=False)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            results = image_results(fitted, test)
            pooled[recipe.name] += results
            metrics = detection_metrics(results, labels, score_threshold=recipe.options.score_threshold)
            row["recipes"][recipe.name] = {"map_50": metrics["map_50"], "map_50_95": metrics["map_50_95"],
                                           "wall_s": wall, "cpu_s": cpu, "images": len(train),
                                           "epochs": len(fitted.history), "load": f"{load_before} -> {load_average()}"}
            print(f"  fold {number} {recipe.name:<10} mAP@0.5 {metrics['map_50']:.3f}  mAP@[.5:.95] "
                  f"{metrics['map_50_95']:.3f}  {len(train)} photos x {len(fitted.history)} epochs: "
                  f"{wall:.0f} s wall, {cpu:.0f} s CPU (load {load_before} -> {load_average()})", flush=True)
        rows.append(row)
    return summarize({"rows": rows, "pooled": pooled, "labels": labels, "recipes": [r.name for r in plan],
                      "threads": threads, "load_end": load_average()})


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """The pooled out-of-fold figures of every recipe, and each one's difference from the default."""
    pooled, labels = report["pooled"], report["labels"]
    report["summary"] = {}
    for name in report["recipes"]:
        results = pooled[name]
        summary = {"pooled": detection_metrics(results, labels, score_threshold=0.5),
                   "estimate": map_estimate(results, len(labels), source="out-of-fold")}
        if name != "default":
            summary["difference"] = map_difference(pooled["default"], results, len(labels))
        report["summary"][name] = summary
    return report


def combine(paths: list[Path]) -> dict[str, Any]:
    """One report from the saved reports of runs over different folds (`--select-folds`, `--save`)."""
    parts = [pickle.loads(path.read_bytes()) for path in paths]
    first = parts[0]
    rows = sorted((row for part in parts for row in part["rows"]), key=lambda row: row["fold"])
    pooled = {name: [r for part in parts for r in part["pooled"][name]] for name in first["recipes"]}
    return summarize({**first, "rows": rows, "pooled": pooled,
                      "load_end": ", ".join(part["load_end"] for part in parts)})


def print_comparison(report: dict[str, Any]) -> None:
    names, rows = report["recipes"], report["rows"]
    print()
    head = f"{'fold':<6}" + "".join(f"{n + ' mAP@0.5':>16}{'.5:.95':>8}{'CPU s':>8}{'wall s':>8}" for n in names)
    print(head)
    for row in rows:
        print(f"{row['fold']:<6}" + "".join(
            f"{row['recipes'][n]['map_50']:>16.3f}{row['recipes'][n]['map_50_95']:>8.3f}"
            f"{row['recipes'][n]['cpu_s']:>8.0f}{row['recipes'][n]['wall_s']:>8.0f}" for n in names))

    def column(name: str, key: str) -> list[float]:
        return [row["recipes"][name][key] for row in rows]

    print(f"{'mean':<6}" + "".join(
        f"{statistics.mean(column(n, 'map_50')):>11.3f}±{_spread(column(n, 'map_50')):.3f}"
        f"{statistics.mean(column(n, 'map_50_95')):>8.3f}{statistics.mean(column(n, 'cpu_s')):>8.0f}"
        f"{statistics.mean(column(n, 'wall_s')):>8.0f}" for n in names))
    print(f"{'pooled':<6}" + "".join(
        f"{report['summary'][n]['pooled']['map_50']:>16.3f}{report['summary'][n]['pooled']['map_50_95']:>8.3f}"
        f"{'':>16}" for n in names))
    print()
    default_cpu, default_wall = sum(column("default", "cpu_s")), sum(column("default", "wall_s"))
    for n in names:
        e = report["summary"][n]["estimate"]
        line = (f"{n:<10} pooled out-of-fold mAP@0.5 {e['map_50']['value']:.3f} "
                f"[{e['map_50']['low']:.3f}, {e['map_50']['high']:.3f}], mAP@[.5:.95] {e['map_50_95']['value']:.3f} "
                f"[{e['map_50_95']['low']:.3f}, {e['map_50_95']['high']:.3f}] on {e['image_count']} photos")
        if n != "default":
            d = report["summary"][n]["difference"]
            line += (f"; minus default {d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] "
                     f"({'within' if d['value'] >= -0.02 else 'NOT within'} 0.02); training time "
                     f"{sum(column(n, 'cpu_s')) / default_cpu:.2f}x default's in CPU s, "
                     f"{sum(column(n, 'wall_s')) / default_wall:.2f}x in wall s")
        print(line)
    print(f"torch threads {report['threads']}; load average at end {report['load_end']} (2 cores: timings above "
          "1.5 are disturbed by other work; the ratios are measured in the same run, fold by fold)")


def end_to_end(datasets: Path, *, threads: int | None) -> dict[str, Any]:
    """Quick mode as a person runs it: the 25 grocery photos imported into a project of the services
    (real processes), `run_training` with the defaults, every step from download to registration
    timed, with the time left each epoch's report estimated against the time it really took."""
    import logging
    import shutil
    import tempfile

    from cli.importer import import_dataset
    from cli.local_services import LocalServices
    from services.trainer.job import run_training
    from visiondock.clients import AnnotationClient, RegistryClient
    from visiondock.settings import LOCAL_DEV_API_KEY

    logging.getLogger("services.trainer").setLevel(logging.WARNING)
    home = Path(tempfile.mkdtemp(prefix="visiondock-bench-detection-"))
    services = LocalServices.on_free_ports(home, extra_env={"VISIONDOCK_LOG_LEVEL": "WARNING"})
    reports: list[tuple[float, dict[str, Any]]] = []
    try:
        services.start()
        with AnnotationClient(services.url("annotation"), LOCAL_DEV_API_KEY) as annotation, \
                RegistryClient(services.url("registry"), LOCAL_DEV_API_KEY) as registry:
            annotation.create_project("grocery", "detection")
            import_dataset(annotation, "grocery", datasets / "grocery", "product", progress=False)
            update = registry.update_run

            def recorded(run_id: str, **changes: Any) -> dict[str, Any]:
                reports.append((time.perf_counter(), changes))
                return update(run_id, **changes)

            registry.update_run = recorded  # type: ignore[method-assign]
            load_before, started, cpu = load_average(), time.perf_counter(), time.process_time()
            result = run_training(TrainingOptions(project="grocery", threads=threads, cache_dir=home / "cache",
                                                  progress=False), annotation, registry)
            ended = time.perf_counter()
    finally:
        services.stop()
        shutil.rmtree(home, ignore_errors=True)
    estimates = [(changes["epoch"], changes["remaining_seconds"], ended - at) for at, changes in reports
                 if changes.get("remaining_seconds") is not None and changes.get("epoch") is not None]
    return {"seconds": ended - started, "cpu_s": time.process_time() - cpu, "timings": result.report["timings"],
            "metrics": result.metrics, "variants": result.variants, "estimates": estimates,
            "load": f"{load_before} -> {load_average()}", "epochs": len(result.metrics["history"])}


def print_end_to_end(run: dict[str, Any]) -> None:
    timings = ", ".join(f"{name.removesuffix('_s')} {seconds:.0f} s" for name, seconds in run["timings"].items())
    verdict = "within" if run["seconds"] <= QUICK_BUDGET_S else "OVER"
    print()
    print(f"quick mode end to end on the 25 grocery photos (services as processes, `run_training` with the "
          f"defaults): {run['seconds']:.0f} s, {verdict} the {QUICK_BUDGET_S / 60:.0f}-minute target "
          f"({run['epochs']} epochs; {timings}); load average {run['load']}")
    estimate, metrics = run["metrics"]["estimate"], run["metrics"]
    print(f"  its version: held-out mAP@0.5 {metrics['map_50']:.3f} [{estimate['map_50']['low']:.3f}, "
          f"{estimate['map_50']['high']:.3f}] on {estimate['image_count']} test photos; variants "
          f"{', '.join(run['variants']) or 'none'}")
    shown = [e for e in run["estimates"] if e[0] in (1, 2, run["epochs"] // 2, run["epochs"])]
    print("  time left as the run reported it, against what it took: " + "; ".join(
        f"epoch {epoch}: said {said:.0f} s, took {took:.0f} s" for epoch, said, took in shown))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.training_detection", description=__doc__.split("\n")[0])
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds over the 20 photos (2 or more)")
    parser.add_argument("--only-folds", type=int, default=None, help="train and score only the first N folds")
    parser.add_argument("--epochs", type=int, default=None, help="default: DetectorOptions().epochs")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--as-trained", action="store_true",
                        help="each fold as the trainer trains it: validation split, then the refit")
    parser.add_argument("--refit-best-epoch", action="store_true",
                        help="with --as-trained, refit for the best validation epoch, not the whole schedule")
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    parser.add_argument("--compare", action="store_true",
                        help="today's default (advanced mode) against quick mode as the trainer trains it")
    parser.add_argument("--candidate", action="append", default=[], metavar="NAME=JSON",
                        help="with --compare, another recipe: DetectorOptions fields over quick's")
    parser.add_argument("--save", type=Path, help="with --compare, also keep the figures in this file (pickle)")
    parser.add_argument("--select-folds", help="with --compare, only these folds (e.g. 1,2,3: one process each "
                                               "share of a long run; then --combine their saved files)")
    parser.add_argument("--combine", type=Path, nargs="+", metavar="SAVED",
                        help="print one table from the files of --compare runs over different folds")
    parser.add_argument("--no-end-to-end", dest="end_to_end", action="store_false",
                        help="with --compare, skip the quick training of the 25 photos through the services")
    parser.add_argument("--only-end-to-end", action="store_true",
                        help="only the quick training of the 25 photos through the services")
    args = parser.parse_args(argv)
    if args.folds < 2:  # one fold would hold every annotated photo out: nothing left to train on
        parser.error("--folds must be 2 or more; --only-folds 1 runs a single fold")
    if args.combine:
        print_comparison(combine(args.combine))
        return 0
    if not (args.datasets / "grocery" / "positive").is_dir():
        print(f"skipped: no grocery data set under {args.datasets} (see shared/datasets/README.md)")
        return 0
    if args.only_end_to_end:
        print_end_to_end(end_to_end(args.datasets, threads=args.threads))
        return 0
    if args.compare:
        print("Detection training benchmark: today's default against quick mode, grocery cross-validation",
              flush=True)
        candidates = {name: json.loads(fields) for name, fields in (c.split("=", 1) for c in args.candidate)}
        selected = {int(f) for f in args.select_folds.split(",")} if args.select_folds else None
        report = compare(args.datasets, folds=args.folds, threads=args.threads, candidates=candidates,
                         only_folds=args.only_folds, selected=selected)
        if args.save:
            args.save.write_bytes(pickle.dumps(report))
        print_comparison(report)
        if args.end_to_end:
            report["end_to_end"] = end_to_end(args.datasets, threads=args.threads)
            print_end_to_end(report["end_to_end"])
        return 0
    options = DetectorOptions()
    if args.epochs is not None:
        options = replace(options, epochs=args.epochs)
    print("Detection training benchmark: grocery, leave-images-out cross-validation", flush=True)
    report = run(args.datasets, folds=args.folds, options=options, threads=args.threads,
                 only_folds=args.only_folds, as_trained=args.as_trained, refit_best_epoch=args.refit_best_epoch)
    print_table(report)
    if args.as_trained:
        print_as_trained(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
