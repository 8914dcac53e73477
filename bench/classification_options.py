"""Which classification options win on real photos: flowers12 (12 species x 60 photos).

One FIXED held-out split (20 % of each class, seed 0) is never used to choose
anything; every option is scored on it. Seeds vary what the training side is cut
into (validation images for the regularisation choice) and the head's start, so
"mean ± std over seeds" is the option's spread, not the test split's.

Features are computed once per (backbone, view) with the trainer's own backbone
runner and kept under `--cache-dir`, so the options (head, L2-normalised features,
flipped and multi-crop views, refitting on every training image, ensembles of
backbones) cost only the head fits. Prints one table per group and the targets met
or missed.

    python -m bench.classification_options [--seeds 5] [--datasets ../shared/datasets]

Skips (exit 0 with a note) when the data set folder is absent.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.training_classification import DEFAULT_DATASETS, flower_files, load_average

TEST_SHARE = 0.2
HELD_OUT_SEED = 0
TARGET_ACCURACY = 0.98
BACKBONES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
# The views each image's features are computed for: the scoring crop (what the service
# sees), its mirror image, and a wider crop (the whole shorter side) and its mirror.
VIEWS = ("center", "center-flip", "wide", "wide-flip")


def held_out_split(labels: np.ndarray, share: float = TEST_SHARE, seed: int = HELD_OUT_SEED) -> tuple[
        np.ndarray, np.ndarray]:
    """(train indices, test indices): `share` of each class held out, the same for every run."""
    rng = np.random.default_rng(seed)
    test: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        test += rng.permutation(members)[:round(len(members) * share)].tolist()
    test_set = set(test)
    return np.array([i for i in range(len(labels)) if i not in test_set]), np.array(sorted(test))


def view_image(image: Image.Image, view: str, size: int, resize: int) -> np.ndarray:
    from visiondock.preprocess import PreprocessSpec, fit

    spec = PreprocessSpec(size=size, resize=size if view.startswith("wide") else resize)
    fitted = fit(image, spec)
    return np.ascontiguousarray(fitted[:, ::-1]) if view.endswith("flip") else fitted


def compute_features(files: Sequence[Path], backbone: str, cache_dir: Path, threads: int) -> dict[str, np.ndarray]:
    """{view: N x D features} for every file, cached on disk per (backbone, view, files)."""
    from services.trainer.backbone import PooledFeatures, default_preprocess, load_pretrained
    from services.trainer.features import CACHE_FORMAT, FrozenRunner, run_batched
    from visiondock.images import decode_rgb
    from visiondock.preprocess import PreprocessSpec, normalize

    spec = default_preprocess(backbone)
    key = hashlib.sha256("\n".join(str(f) for f in files).encode()).hexdigest()[:12]
    wanted = {view: cache_dir / f"{backbone}-{view}-{key}.npy" for view in VIEWS}
    if all(path.exists() for path in wanted.values()):
        return {view: np.load(path) for view, path in wanted.items()}
    runner = FrozenRunner(lambda: PooledFeatures(load_pretrained(backbone)), input_size=spec.size, threads=threads,
                          onnx_path=cache_dir / f"{backbone}-pooled-{spec.size}-f{CACHE_FORMAT}.onnx")
    images = [decode_rgb(path.read_bytes(), draft_size=(spec.resize, spec.resize)) for path in files]
    plain = PreprocessSpec(size=spec.size, resize=spec.resize)
    out = {}
    for view, path in wanted.items():
        started = time.perf_counter()
        out[view] = run_batched(runner, images,
                                lambda img, v=view: normalize(np.asarray(view_image(img, v, spec.size, spec.resize),
                                                                         dtype=np.uint8), plain),
                                desc=f"{backbone} {view}", progress=False)
        np.save(path, out[view])
        print(f"  features {backbone} {view}: {len(files)} images in {time.perf_counter() - started:.1f} s "
              f"(load {load_average()})", flush=True)
    return out


@dataclass(frozen=True)
class Option:
    name: str
    backbones: tuple[str, ...] = ("efficientnet-lite0",)
    head: str = "linear"
    l2: bool = False
    train_views: tuple[str, ...] = ("center",)
    test_views: tuple[str, ...] = ("center",)
    refit: bool = True
    weight_decays: tuple[float, ...] | None = None  # None: the trainer's own choice


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def training_side_folds(labels: np.ndarray, train: np.ndarray, folds: int, seed: int = 1) -> list[np.ndarray]:
    """`folds` stratified folds of the training side: how an option is chosen without the test images."""
    rng = np.random.default_rng(seed)
    dealt: list[list[int]] = [[] for _ in range(folds)]
    for label in np.unique(labels[train]):
        for position, index in enumerate(rng.permutation(train[labels[train] == label])):
            dealt[position % folds].append(int(index))
    return [np.array(sorted(fold)) for fold in dealt]


def evaluate(option: Option, features: dict[str, dict[str, np.ndarray]], labels: np.ndarray, train: np.ndarray,
             test: np.ndarray, seed: int, fit: Callable[..., np.ndarray]) -> float:
    """Held-out accuracy of one option for one seed; probabilities averaged over backbones."""
    probabilities = np.zeros((len(test), labels.max() + 1))
    for backbone in option.backbones:
        views = features[backbone]

        def prepare(x: np.ndarray) -> np.ndarray:
            return _l2(x) if option.l2 else x

        train_x = [prepare(views[v][train]) for v in option.train_views]
        test_x = np.mean([prepare(views[v][test]) for v in option.test_views], axis=0)
        probabilities += fit(train_x, labels[train], test_x, option=option, seed=seed)
    return float((probabilities.argmax(1) == labels[test]).mean())


def fit_and_predict(train_views: list[np.ndarray], train_y: np.ndarray, test_x: np.ndarray, *, option: Option,
                    seed: int) -> np.ndarray:
    """The trainer's head fit: validation carved from the training side by `seed` chooses the
    regularisation, then (refit) the chosen settings learn from every training image."""
    from services.trainer.heads import activate, fit_head, head_logits

    rng = np.random.default_rng(seed)
    val: list[int] = []
    for label in np.unique(train_y):
        members = np.flatnonzero(train_y == label)
        val += rng.permutation(members)[:max(1, round(len(members) * 0.15))].tolist()
    val_mask = np.zeros(len(train_y), bool)
    val_mask[val] = True
    fit_x = np.concatenate([x[~val_mask] for x in train_views])
    fit_y = np.concatenate([train_y[~val_mask]] * len(train_views))
    num = int(train_y.max()) + 1
    chosen = fit_head(fit_x, fit_y, train_views[0][val_mask], train_y[val_mask], kind=option.head,
                      num_outputs=num, multilabel=False, seed=seed, weight_decays=option.weight_decays)
    head = chosen.head
    if option.refit:
        all_x = np.concatenate(train_views)
        all_y = np.concatenate([train_y] * len(train_views))
        head = fit_head(all_x, all_y, all_x[:0], all_y[:0], kind=option.head, num_outputs=num, multilabel=False,
                        seed=seed, weight_decay=chosen.weight_decay, epochs=chosen.epochs).head
    return activate(head_logits(head, test_x), multilabel=False)


OPTIONS = (
    Option("lite0 linear (no refit)", refit=False),
    Option("lite0 linear"),
    Option("lite0 linear L2", l2=True),
    Option("lite0 linear +flip train", train_views=("center", "center-flip")),
    Option("lite0 linear +flip train/test", train_views=("center", "center-flip"),
           test_views=("center", "center-flip")),
    Option("lite0 linear +4 views train", train_views=VIEWS),
    Option("lite0 mlp", head="mlp"),
    Option("lite1 linear", backbones=("efficientnet-lite1",)),
    Option("lite2 linear", backbones=("efficientnet-lite2",)),
    Option("lite2 linear +flip train", backbones=("efficientnet-lite2",), train_views=("center", "center-flip")),
    Option("lite0+lite2 ensemble", backbones=("efficientnet-lite0", "efficientnet-lite2")),
    Option("lite0+1+2 ensemble", backbones=BACKBONES),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "visiondock-bench")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", nargs="*", help="option names to run (default: all)")
    parser.add_argument("--cv-folds", type=int, default=5,
                        help="also score each option by k-fold cross-validation of the training side (0: skip)")
    args = parser.parse_args(argv)
    if not (args.datasets / "flowers12" / "train").is_dir():
        print(f"classification options benchmark skipped: {args.datasets / 'flowers12'} is absent")
        return 0
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    classes = flower_files(args.datasets)
    files = [f for name in classes for f in classes[name]]
    labels = np.array([i for i, name in enumerate(classes) for _ in classes[name]])
    train, test = held_out_split(labels)
    print(f"flowers12: {len(files)} photos, {len(classes)} classes; fixed held-out split: {len(train)} train, "
          f"{len(test)} test (20 % per class, seed {HELD_OUT_SEED}); load {load_average()} on {os.cpu_count()} cores")
    options = [o for o in OPTIONS if not args.only or o.name in args.only]
    needed = sorted({b for o in options for b in o.backbones})
    features = {b: compute_features(files, b, args.cache_dir, args.threads) for b in needed}
    folds = training_side_folds(labels, train, args.cv_folds) if args.cv_folds > 1 else []
    cv_header = f"{f'{args.cv_folds}-fold CV (train side)':>24}" if folds else ""
    print(f"\n{'option':<38} {'held-out accuracy':>20} {'fit s':>7}{cv_header}")
    results, chosen_by = {}, {}
    for option in options:
        started = time.perf_counter()
        scores = [evaluate(option, features, labels, train, test, seed, fit_and_predict) for seed in range(args.seeds)]
        seconds = (time.perf_counter() - started) / args.seeds
        mean, std = statistics.fmean(scores), statistics.pstdev(scores)
        results[option.name] = mean
        cv = ""
        if folds:
            right = sum(evaluate(option, features, labels, np.setdiff1d(train, fold), fold, 0, fit_and_predict)
                        * len(fold) for fold in folds)
            chosen_by[option.name] = right / len(train)
            cv = f"{chosen_by[option.name] * 100:>22.2f} %"
        print(f"{option.name:<38} {mean * 100:>12.2f} ± {std * 100:4.2f} % {seconds:>7.2f}{cv}", flush=True)
    best = max(results, key=results.__getitem__)
    verdict = "met" if results[best] >= TARGET_ACCURACY else "MISSED"
    print(f"\ntarget ≥ {TARGET_ACCURACY * 100:.0f} % held-out: {verdict} (best: {best}, {results[best] * 100:.2f} %); "
          f"load {load_average()}")
    if chosen_by:
        pick = max(chosen_by, key=chosen_by.__getitem__)
        print(f"chosen on the training side only ({args.cv_folds}-fold CV): {pick}, {results[pick] * 100:.2f} % "
              f"held-out (the held-out split is {len(test)} photos: one photo is {100 / len(test):.2f} points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
