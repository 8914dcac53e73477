"""Which model candidates hold up, by repeated cross-validation of the shared sets: one table per data set.

For each classification set (flowers12, hotdog) every candidate the trainer's quick mode
knows is cross-validated on the same folds the trainer would deal (repeated stratified k-fold,
near-duplicates kept in one fold), with the trainer's own code: features from `FeatureSets`
(every backbone, plain and mirrored, whatever the budget), heads from `crossval`. Each row:
the out-of-fold accuracy (mean over repeats) ± its standard error (fold spread / sqrt(k)), the
fold spread, the weight decay chosen, the scoring cost per image (Lite0 = 1), whether the
default feature budget computes it for a set of this size, and whether it is within one
standard error of the best. Below each table: what the trainer's default chooses (among the
candidates its budget affords, by the one-standard-error rule) with its estimate and 95 %
interval, and the best candidate overall.

For the grocery set (shelf detection) the candidates are the detector's two schedules: quick mode
as the trainer trains it (24 epochs, its own test split held out, no refit) against the long
schedule (advanced mode's 60 epochs on every photo of the fold, what its refit exports), on the
five leave-images-out folds of `bench/training_detection.py --compare` (`make bench-detection`):
mAP@0.5 and mAP@[.5:.95] per fold, their mean ± spread, pooled over the 20 out-of-fold photos with
95 % bootstrap intervals, the quick-minus-long difference with its paired interval, and the time
ratio. Hours of CPU on 2 cores (`--detection-folds 1` runs the first fold only).

    python -m bench.models [--datasets ../shared/datasets] [--only flowers12 hotdog grocery] [--no-mlp]
                           [--detection-folds N] [--larger-inputs lite1:320 lite1:384 lite2:380]

Features are cached under --cache-dir (default ~/.cache/visiondock-bench/trainer), so a second
run costs only the head fits. Data sets whose folder is absent are skipped with a note.
`--larger-inputs` adds rows for backbones run at larger inputs than their own (same folds; not
trainer candidates): what such passes would add and what they cost. More tables are added by
putting a function in TABLES.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.shared_sets import CLASSIFICATION_SETS, DEFAULT_DATASETS, FileLoader, classification_set

DEFAULT_CACHE = Path.home() / ".cache" / "visiondock-bench" / "trainer"
# What the default must reach on new photos (judged on held-out sets kept outside the repository).
TARGETS = {"flowers12": 0.98, "hotdog": 0.95}
DETECTION_SET = "grocery"
DETECTION_TARGETS = {"map_50": 0.95, "map_50_95": 0.70}


def load_average() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def classification_table(root: Path, name: str, args: argparse.Namespace) -> None:
    from services.trainer.audit import duplicate_groups, similar_pairs
    from services.trainer.crossval import correct, cross_validate, estimate, plan_folds
    from services.trainer.feature_sets import FeatureSets
    from services.trainer.heads import DEFAULT_WEIGHT_DECAY, WEIGHT_DECAYS
    from services.trainer.options import SELECTION_BUDGET
    from services.trainer.selection import (
        MLP_MAX_IMAGES,
        Candidate,
        Evaluated,
        FeaturePass,
        affordable_passes,
        linear_candidates,
        one_standard_error,
    )
    from visiondock.vocabulary import BACKBONES, MLP

    dataset = classification_set(root, name)
    if dataset is None:
        print(f"{name}: skipped, {root / name} is absent\n")
        return
    records = dataset.records
    labels = dataset.labels
    targets = np.array([labels.index(r.tags[0]) for r in records])
    images = len(records)
    report: dict = {}
    sets = FeatureSets(FileLoader(dataset.paths), args.cache_dir, threads=args.threads, progress=False,
                       face_margin=None, report=report)
    every = [FeaturePass(b, mirrored) for mirrored in (False, True) for b in BACKBONES]
    feature_seconds = {}
    for feature_pass in every:
        started = time.perf_counter()
        sets.compute(feature_pass, records)
        feature_seconds[feature_pass] = time.perf_counter() - started
    computed = report.get("features", {}).get("computed", 0)
    first = sets.features[FeaturePass(BACKBONES[0])]
    pairs = similar_pairs(np.stack([first[r.id] for r in records]))
    groups = duplicate_groups(images, pairs)
    plan = plan_folds([r.tags[0] for r in records], list(groups), seed=args.seed)

    def matrix(candidate: Candidate) -> np.ndarray:
        blocks = []
        for backbone in candidate.backbones:
            views = [sets.features[FeaturePass(backbone, m)] for m in ((False, True) if candidate.flip else (False,))]
            blocks.append(np.mean([np.stack([v[r.id] for r in records]) for v in views], axis=0))
        return candidate.transform(np.concatenate(blocks, axis=1))

    trainable = np.ones(images, bool)
    evaluated: list[Evaluated] = []
    fit_seconds: dict[Candidate, float] = {}

    def run(candidate: Candidate) -> Evaluated:
        started = time.perf_counter()
        result = cross_validate(matrix(candidate), targets, trainable, plan, kind=candidate.head,
                                num_outputs=len(labels), multilabel=False, seed=args.seed,
                                weight_decays=[DEFAULT_WEIGHT_DECAY] if candidate.head == MLP else None)
        fit_seconds[candidate] = time.perf_counter() - started
        evaluated.append(Evaluated(candidate, result))
        return evaluated[-1]

    for candidate in linear_candidates(every):
        run(candidate)
    affordable = set(affordable_passes(BACKBONES, images, SELECTION_BUDGET))

    def affords(item: Evaluated) -> bool:
        return set(item.candidate.passes()) <= affordable and (item.candidate.head != MLP
                                                                or images <= MLP_MAX_IMAGES)

    # As the trainer does: the MLP on the best linear candidate's features (here also on the best overall).
    linear_in_budget = [e for e in evaluated if affords(e)]
    leader = max(linear_in_budget, key=lambda e: (e.result.score, -e.candidate.cost))
    overall = max(evaluated, key=lambda e: (e.result.score, -e.candidate.cost))
    mlp_rows = []
    if args.mlp:
        for source in dict.fromkeys([leader.candidate, overall.candidate]):
            mlp_rows.append(run(Candidate(source.backbones, MLP, source.flip, source.root)))
    in_budget = [e for e in evaluated if affords(e)]
    default_pool = linear_in_budget + [e for e in mlp_rows[:1] if affords(e)]
    chosen, best_default = one_standard_error(default_pool)
    _, best = one_standard_error(evaluated)
    floor = best.result.score - best.result.standard_error

    print(f"{name}: {images} photos, {len(labels)} classes; {len(plan.repeats)} x {plan.k}-fold stratified "
          f"cross-validation (seed {args.seed}), {len(pairs)} near-duplicate pairs kept in one fold; features: "
          f"{computed} computed, {images * len(every) - computed} cached; load {load_average()} on "
          f"{os.cpu_count()} cores")
    seconds = ", ".join(f"{p.backbone.removeprefix('efficientnet-')}{' mirrored' if p.mirrored else ''} "
                        f"{feature_seconds[p]:.1f}" for p in every)
    print(f"  feature passes (s, this machine now; 0 when cached): {seconds}")
    header = (f"  {'candidate':<36}{'cost':>6}{'accuracy ± SE':>18}{'fold spread':>13}{'decay':>8}"
              f"{'budget':>8}{'1 SE':>6}{'fit s':>7}")
    print(header)
    print("  " + "-" * (len(header) - 2))
    for item in sorted(evaluated, key=lambda e: -e.result.score):
        r, c = item.result, item.candidate
        mark = " <- default" if item is chosen else (" <- best" if item is best else "")
        print(f"  {c.name:<36}{c.cost:>6.2f}{r.score * 100:>10.2f} ± {r.standard_error * 100:4.2f}"
              f"{r.spread * 100:>12.2f}{r.weight_decay:>9.0e}{'yes' if item in in_budget else 'no':>7}"
              f"{'yes' if r.score >= floor - 1e-12 else '':>6}{fit_seconds[c]:>7.1f}{mark}")
    right = np.stack([correct(oof, targets, multilabel=False) for oof in chosen.result.out_of_fold])
    summary = estimate(right, source="out-of-fold", metric="accuracy")
    low, high = summary["interval"]
    passes = ", ".join(p.backbone.removeprefix("efficientnet-") + (" mirrored" if p.mirrored else "")
                       for p in affordable_passes(BACKBONES, images, SELECTION_BUDGET))
    print(f"  default: {chosen.candidate.name} (budget {SELECTION_BUDGET:g} image-passes: {passes}; "
          f"best within the budget {best_default.candidate.name} {best_default.result.score:.2%}); estimate "
          f"{summary['value']:.2%}, 95 % interval {low:.2%}-{high:.2%} on {summary['images']} photos; fold spread "
          f"{chosen.result.spread:.2%}")
    print(f"  best overall: {best.candidate.name} {best.result.score:.2%} ± {best.result.standard_error:.2%}; the "
          f"default is {'within' if chosen.result.score >= floor - 1e-12 else 'OUTSIDE'} one standard error of it; "
          f"weight decays tried {', '.join(f'{d:g}' for d in WEIGHT_DECAYS)}")
    if args.larger_inputs:
        larger_inputs_rows(dataset, args, plan, targets, len(labels), chosen.result.score, floor)
    target = TARGETS.get(name)
    if target is not None:
        print(f"  target on new photos ≥ {target:.0%}: the default's cross-validated estimate is "
              f"{summary['value']:.2%} ({'at or above' if summary['value'] >= target else 'BELOW'} it; the new "
              "photos themselves are kept outside the repository)")
    print()


def detection_table(root: Path, name: str, args: argparse.Namespace) -> None:
    from bench.training_detection import compare, print_comparison

    if not (root / name / "positive").is_dir():
        print(f"{name}: skipped, {root / name} is absent\n")
        return
    print(f"{name} (shelf detection): quick against the long schedule on leave-images-out folds", flush=True)
    report = compare(root, folds=5, threads=args.threads, candidates={}, only_folds=args.detection_folds,
                     seed=args.seed)
    print_comparison(report)
    target = report["summary"]["quick"]["estimate"]
    print(f"  targets on new photos mAP@0.5 ≥ {DETECTION_TARGETS['map_50']:.2f}, mAP@[.5:.95] ≥ "
          f"{DETECTION_TARGETS['map_50_95']:.2f}: quick's pooled out-of-fold figures are "
          f"{target['map_50']['value']:.3f} and {target['map_50_95']['value']:.3f}")
    print()


def larger_input_features(dataset: object, args: argparse.Namespace, backbone: str, size: int,
                          mirrored: bool) -> np.ndarray:
    """Pooled features of a backbone built for a larger square input (shorter side to size / 0.875, centre
    crop), cached beside the trainer's: what a larger-input pass would compute."""
    from services.trainer.backbone import PooledFeatures, load_pretrained
    from services.trainer.features import FeatureCache, FrozenRunner, run_batched
    from visiondock.preprocess import PreprocessSpec, to_tensor

    records = dataset.records  # type: ignore[attr-defined]
    spec = PreprocessSpec(size=size, resize=round(size / 0.875))
    cache = FeatureCache(args.cache_dir / "larger-inputs", {"backbone": backbone, "preprocess": spec.to_json(),
                                                             "mirrored": mirrored})
    vectors = {r.id: cache.get(r.id) for r in records}
    missing = [r for r in records if vectors[r.id] is None]
    if missing:
        loader = FileLoader(dataset.paths)  # type: ignore[attr-defined]
        images = loader.load(missing, draft_size=spec.draft_size)
        runner = FrozenRunner(lambda: PooledFeatures(load_pretrained(backbone, size)), input_size=size,
                              onnx_path=args.cache_dir / "larger-inputs" / f"{backbone}-pooled-{size}.onnx",
                              threads=args.threads)

        def prepare(image: object) -> np.ndarray:
            tensor = to_tensor(image, spec)  # type: ignore[arg-type]
            return np.ascontiguousarray(tensor[:, :, ::-1]) if mirrored else tensor

        output = run_batched(runner, [images[r.id] for r in missing], prepare, desc="", progress=False)
        for record, vector in zip(missing, output, strict=True):
            cache.put(record.id, vector)
            vectors[record.id] = vector
    return np.stack([vectors[r.id] for r in records])


def larger_inputs_rows(dataset: object, args: argparse.Namespace, plan: object, targets: np.ndarray, classes: int,
                       default_score: float, floor: float) -> None:
    """Backbones at larger inputs than their own, on the same folds: each alone (plain or flip, features or
    their square roots) and all of them side by side. Not trainer candidates: what they would add."""
    from services.trainer.backbone import backbone_spec
    from services.trainer.crossval import cross_validate
    from services.trainer.selection import root_features

    sizes = [(f"efficientnet-{item.split(':')[0]}", int(item.split(":")[1])) for item in args.larger_inputs]
    views = {}
    for backbone, size in sizes:
        plain = larger_input_features(dataset, args, backbone, size, False)
        views[(backbone, size)] = (plain, (plain + larger_input_features(dataset, args, backbone, size, True)) / 2)
    rows = []

    def add(label: str, cost: float, matrix: np.ndarray) -> None:
        result = cross_validate(matrix, targets, np.ones(len(targets), bool), plan, kind="linear",  # type: ignore
                                num_outputs=classes, multilabel=False, seed=args.seed)
        rows.append((label, cost, result))

    for (backbone, size), (plain, flipped) in views.items():
        cost = backbone_spec(backbone).relative_cost * (size / backbone_spec(backbone).image_size) ** 2
        short = f"{backbone.removeprefix('efficientnet-')}@{size}"
        for flip, matrix in ((False, plain), (True, flipped)):
            for root in (False, True):
                add(f"{short}{' flip' if flip else ''}{' sqrt' if root else ''} linear", cost * (2 if flip else 1),
                    root_features(matrix) if root else matrix)
    if len(views) > 1:
        total = sum(backbone_spec(b).relative_cost * (s / backbone_spec(b).image_size) ** 2 for b, s in views)
        label = "+".join(f"{b.removeprefix('efficientnet-')}@{s}" for b, s in views)
        add(f"{label} flip sqrt linear", 2 * total, root_features(np.concatenate([f for _, f in views.values()], 1)))
    print("  larger inputs than each backbone's own (not trainer candidates; cost: area-scaled, Lite0 = 1):")
    for label, cost, result in sorted(rows, key=lambda row: -row[2].score):
        mark = " above the default's" if result.score > default_score else ""
        print(f"  {label:<36}{cost:>6.2f}{result.score * 100:>10.2f} ± {result.standard_error * 100:4.2f}"
              f"{result.spread * 100:>12.2f}{result.weight_decay:>9.0e}{'':>7}"
              f"{'yes' if result.score >= floor - 1e-12 else '':>6}{'':>7}{mark}")


TABLES: dict[str, Callable[[Path, str, argparse.Namespace], None]] = {
    **{name: classification_table for name in CLASSIFICATION_SETS}, DETECTION_SET: detection_table}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.models", description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    parser.add_argument("--only", nargs="*", choices=sorted(TABLES), help="data sets to run (default: all)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--larger-inputs", nargs="*", default=[], metavar="LITEN:SIZE",
                        help="also cross-validate backbones at larger inputs, e.g. lite1:320 lite1:384 lite2:380")
    parser.add_argument("--no-mlp", dest="mlp", action="store_false",
                        help="leave out the MLP-head rows (the MLP on the best linear features; slow)")
    parser.add_argument("--detection-folds", type=int, default=None, metavar="N",
                        help="grocery: train and score only the first N of the five folds (default: all)")
    args = parser.parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"cross-validated model candidates; load {load_average()} on {os.cpu_count()} cores\n")
    for name in args.only or list(TABLES):
        TABLES[name](args.datasets, name, args)
    print(f"load average at end {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
