"""fp32 against INT8 on the shared sets' cross-validation folds, for each way of calibrating INT8.

For each classification set and backbone, the trainer's folds (repeated stratified k-fold) and
linear heads are fitted on fp32 features once; each INT8 setting quantizes the frozen backbone
graph (`quantize.quantize_int8`, calibrated on the images with the lowest SHA-256, as the trainer
picks them) and its features of every photo go through the same fold heads. Per setting: fp32
and INT8 out-of-fold accuracy, the difference with its 95 % interval (paired, on the same
photos), the top-1 agreement of the two, and the trainer's verdict (keeps the accuracy: the
interval reaches zero and the drop is at most half a point). Also the time of the INT8 pass
against the fp32 one (ONNX Runtime, this machine, same run).

    python -m bench.int8_folds [--datasets ../shared/datasets] [--only flowers12] [--backbones efficientnet-lite0]

Features (fp32 and INT8) are cached under --cache-dir like bench.models'.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench.shared_sets import CLASSIFICATION_SETS, DEFAULT_DATASETS, FileLoader, classification_set

DEFAULT_CACHE = Path.home() / ".cache" / "visiondock-bench" / "trainer"


def load_average() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def settings_tried() -> dict[str, object]:
    from services.trainer.quantize import CLASSIFIER_INT8, Int8Settings

    return {
        "32 images, minmax, per-channel (before)": Int8Settings(),
        "128 images": Int8Settings(calibration_images=128),
        "per-tensor weights": Int8Settings(per_channel=False),
        "percentile ranges": Int8Settings(method="percentile"),
        "stem in float": Int8Settings(keep_float=("stem",)),
        "stem and head conv in float": Int8Settings(keep_float=("stem", "head")),
        "128 images, stem and head in float": Int8Settings(calibration_images=128, keep_float=("stem", "head")),
        "the trainer's default": CLASSIFIER_INT8,
    }


def table(root: Path, name: str, backbones: list[str], args: argparse.Namespace) -> None:
    from services.trainer.audit import duplicate_groups, similar_pairs
    from services.trainer.crossval import correct, cross_validate, paired_difference, plan_folds, predict_out_of_fold
    from services.trainer.feature_sets import FeatureSets, int8_recipe_name, pass_spec
    from services.trainer.features import atomic_write
    from services.trainer.quantize import MAX_INT8_DROP, Int8Settings, quantize_int8
    from services.trainer.selection import FeaturePass
    from services.trainer.tasks.base import input_tensors

    dataset = classification_set(root, name)
    if dataset is None:
        print(f"{name}: skipped, {root / name} is absent\n")
        return
    records = dataset.records
    labels = dataset.labels
    targets = np.array([labels.index(r.tags[0]) for r in records])
    sets = FeatureSets(FileLoader(dataset.paths), args.cache_dir, threads=args.threads, progress=False,
                       face_margin=None, report={})
    print(f"{name}: {len(records)} photos; load {load_average()}")
    for backbone in backbones:
        feature_pass = FeaturePass(backbone)
        started = time.perf_counter()
        fp32_features = sets.compute(feature_pass, records)
        fp32_seconds = time.perf_counter() - started
        x = np.stack([fp32_features[r.id] for r in records])
        groups = duplicate_groups(len(records), similar_pairs(x))
        plan = plan_folds([r.tags[0] for r in records], list(groups), seed=args.seed)
        cv = cross_validate(x, targets, np.ones(len(records), bool), plan, kind="linear", num_outputs=len(labels),
                            multilabel=False, seed=args.seed, keep_heads=True)
        fp32_right = correct(cv.probabilities, targets, multilabel=False)
        print(f"  {backbone}: fp32 out-of-fold accuracy {fp32_right.mean():.2%} ({len(plan.repeats)} x {plan.k}-fold, "
              f"linear head, decay {cv.weight_decay:g}); fp32 features {fp32_seconds:.1f} s (0 when cached)")
        print(f"    {'INT8 setting':<38}{'INT8':>8}{'diff':>8}{'95 % interval':>20}{'agree':>8}{'keeps':>7}"
              f"{'INT8 s':>8}")
        spec = pass_spec(feature_pass)
        ordered = sorted(records, key=lambda r: r.id)
        for label, settings in settings_tried().items():
            assert isinstance(settings, Int8Settings)
            chosen = ordered[:settings.calibration_images]
            recipe = {"pass": [backbone, None], "preprocess": spec.to_json(), "calibration": [r.id for r in chosen],
                      "settings": settings.recipe(), "bench": True}
            graph = args.cache_dir / "models" / int8_recipe_name(feature_pass, recipe)
            if not graph.exists():
                calibration = input_tensors(sets.inputs(spec).present(chosen), spec)
                fp32_graph = sets.graph(feature_pass)
                atomic_write(graph, lambda path, c=calibration, s=settings, g=fp32_graph: quantize_int8(
                    g, path, c, float_feeding_layer=False, settings=s))
            started = time.perf_counter()
            int8_features = sets.compute_int8(feature_pass, graph, records)
            int8_seconds = time.perf_counter() - started
            z = np.stack([int8_features[r.id] for r in records])
            int8 = predict_out_of_fold(cv.heads, plan, z, multilabel=False).mean(axis=0)
            int8_right = correct(int8, targets, multilabel=False)
            found = paired_difference(fp32_right, int8_right)
            low, high = found["interval"]
            keeps = high >= 0 and found["difference"] >= -MAX_INT8_DROP
            agreement = float((int8.argmax(1) == cv.probabilities.argmax(1)).mean())
            print(f"    {label:<38}{int8_right.mean():>8.2%}{found['difference']:>+8.2%}"
                  f"{f'{low:+.2%} to {high:+.2%}':>20}{agreement:>8.2%}{'yes' if keeps else 'NO':>7}"
                  f"{int8_seconds:>8.1f}")
    print()


def main(argv: list[str] | None = None) -> int:
    from visiondock.vocabulary import BACKBONES

    parser = argparse.ArgumentParser(prog="python -m bench.int8_folds", description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    parser.add_argument("--only", nargs="*", choices=CLASSIFICATION_SETS)
    parser.add_argument("--backbones", nargs="*", choices=BACKBONES, default=list(BACKBONES[:2]))
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"fp32 against INT8 on cross-validation folds; load {load_average()} on {os.cpu_count()} cores; INT8 s: "
          "the INT8 backbone's pass over every photo (0 when cached)\n")
    for name in args.only or CLASSIFICATION_SETS:
        table(args.datasets, name, args.backbones, args)
    print(f"load average at end {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
