"""Detection training benchmark on real photos: grocery (20 annotated shelf photos, 8 classes).

Leave-images-out cross-validation: the 20 annotated photos are shuffled once (seed 0)
and cut into folds of 4; each fold trains on the other 16 plus the 5 negative photos
(background only) and is scored on its 4 unseen photos. Hyperparameters are the
`DetectorOptions` defaults, identical across folds, with fixed seeds; no fold sees its
test photos before it is scored (no validation split: fixed epochs, default
thresholds). Prints mAP@0.5 and mAP@[.5:.95] per fold with their mean ± standard
deviation, the same metrics pooled over all 20 out-of-fold photos, per-class AP, and
wall time. Target: mAP@0.5 >= 0.90.

    python -m bench.training_detection [--folds 5] [--epochs N] [--threads N] [--datasets ../shared/datasets]

Skips (exit 0 with a note) when the data set folder is absent.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from services.trainer.detector import DetectionSample, DetectorOptions, fit_detector
from services.trainer.detector.training import image_results
from services.trainer.evaluation import best_f1_threshold, detection_metrics

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASETS = ROOT.parent / "shared" / "datasets"
TARGET_MAP_50 = 0.90
FOLD_SEED = 0


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


def run(datasets: Path, *, folds: int, options: DetectorOptions, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    names, positives, negatives, labels = load_grocery(datasets / "grocery")
    print(f"grocery: {len(positives)} annotated photos ({sum(len(s.boxes) for s in positives)} boxes, "
          f"{len(labels)} classes), {len(negatives)} negatives; {folds}-fold leave-images-out CV", flush=True)
    print(f"options: input {options.input_size} stretch, {options.epochs} epochs, batch {options.batch_size}, "
          f"lr head {options.head_lr:g} / backbone {options.learning_rate:g}, seed {options.seed}; "
          f"torch threads {threads}; {os.cpu_count()} CPUs; load average at start {load_average()}", flush=True)
    started = time.perf_counter()
    rows, pooled = [], []
    for number, test_index in enumerate(make_folds(len(positives), folds), start=1):
        train = [s for i, s in enumerate(positives) if i not in test_index] + negatives
        test = [positives[i] for i in test_index]
        fold_started = time.perf_counter()
        fitted = fit_detector(train, [], labels, options, progress=False)
        seconds = time.perf_counter() - fold_started
        results = image_results(fitted, test)
        metrics = detection_metrics(results, labels, score_threshold=fitted.thresholds["score"])
        pooled += results
        rows.append({"fold": number, "test": [names[i] for i in test_index], "metrics": metrics,
                     "seconds": seconds, "load": load_average()})
        print(f"  fold {number}: mAP@0.5 {metrics['map_50']:.3f}  mAP@[.5:.95] {metrics['map_50_95']:.3f}  "
              f"train {seconds:.0f} s  (load {load_average()})", flush=True)
    wall = time.perf_counter() - started
    overall = detection_metrics(pooled, labels, score_threshold=options.score_threshold)
    # The served threshold a validation split would pick, here from out-of-fold detections:
    # how the default DetectorOptions.score_threshold was chosen.
    best = best_f1_threshold(pooled, len(labels), floor=0.05, ceiling=0.9)
    at_best = detection_metrics(pooled, labels, score_threshold=best)
    return {"rows": rows, "pooled": overall, "labels": labels, "wall_s": wall, "threads": threads,
            "options": options, "best_threshold": best, "at_best": at_best}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.training_detection", description=__doc__.split("\n")[0])
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds over the 20 photos")
    parser.add_argument("--epochs", type=int, default=None, help="default: DetectorOptions().epochs")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    args = parser.parse_args(argv)
    if not (args.datasets / "grocery" / "positive").is_dir():
        print(f"skipped: no grocery data set under {args.datasets} (see shared/datasets/README.md)")
        return 0
    options = DetectorOptions()
    if args.epochs is not None:
        options = replace(options, epochs=args.epochs)
    print("Detection training benchmark: grocery, leave-images-out cross-validation", flush=True)
    print_table(run(args.datasets, folds=args.folds, options=options, threads=args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
