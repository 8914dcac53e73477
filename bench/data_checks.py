"""The trainer's data checks on the shared sets with planted faults: near-duplicates and flipped labels.

Per classification set (flowers12, hotdog):
- Planted near-duplicates: 5 % of the photos (seeded) get a copy made one of five ways (JPEG
  recompressed at quality 60, resized to 80 %, the central 90 % cropped, brightened by 15 %,
  mirrored), added with the same label. The trainer's detector (cosine similarity of Lite0's
  pooled features, `audit.similar_pairs`) runs on the lot; per threshold: recall of the planted
  pairs (overall and per way), the other pairs it finds (the set's own near-duplicates: flowers12
  holds dozens of re-encoded copies, which are right to find but were not planted), and the
  precision counting only planted pairs as right (a lower bound).
- Flipped labels: 5 % of the labels (seeded) moved to another class; the trainer's selection and
  cross-validation run on the flipped labels, and `audit.label_issues` lists the suspects. Per
  probability threshold: how many are listed, recall and precision against the flips, and the
  precision of the top k (k = the number flipped).

    python -m bench.data_checks [--datasets ../shared/datasets] [--only hotdog] [--share 0.05]

Features are cached under --cache-dir like bench.models'. Data sets that are absent are skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from bench.shared_sets import CLASSIFICATION_SETS, DEFAULT_DATASETS, FileLoader, classification_set
from services.trainer.data import ImageRecord

DEFAULT_CACHE = Path.home() / ".cache" / "visiondock-bench" / "trainer"
WAYS = ("recompressed", "resized", "cropped", "brightened", "mirrored")
SIMILARITIES = (0.80, 0.85, 0.88, 0.90, 0.92, 0.95)
PROBABILITIES = (0.05, 0.1, 0.2, 0.3, 0.5)


def load_average() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def planted_copy(data: bytes, way: str) -> bytes:
    """A near-duplicate of a photo, made as people make them."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    quality = 90
    if way == "recompressed":
        quality = 60
    elif way == "resized":
        image = image.resize((max(1, round(image.width * 0.8)), max(1, round(image.height * 0.8))),
                             Image.Resampling.BICUBIC)
    elif way == "cropped":
        dx, dy = round(image.width * 0.05), round(image.height * 0.05)
        image = image.crop((dx, dy, image.width - dx, image.height - dy))
    elif way == "brightened":
        image = ImageEnhance.Brightness(image).enhance(1.15)
    elif way == "mirrored":
        image = ImageOps.mirror(image)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def duplicates(name: str, records: list[ImageRecord], loader: FileLoader, args: argparse.Namespace) -> None:
    from services.trainer.audit import DUPLICATE_SIMILARITY, similar_pairs
    from services.trainer.feature_sets import FeatureSets
    from services.trainer.selection import FeaturePass
    from visiondock.vocabulary import DEFAULT_BACKBONE

    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(records), max(1, round(len(records) * args.share)), replace=False)
    planted: dict[tuple[str, str], str] = {}  # (original id, copy id) -> way
    copies = []
    for n, index in enumerate(sorted(chosen.tolist())):
        original = records[index]
        way = WAYS[n % len(WAYS)]
        data = planted_copy(loader.paths[original.id].read_bytes(), way)
        copy_id = hashlib.sha256(data).hexdigest()
        loader.extra[copy_id] = data
        copies.append(ImageRecord(id=copy_id, filename=f"planted/{way}/{original.filename}", tags=original.tags,
                                  regions=[], split=None))
        planted[(original.id, copy_id)] = way
    every = records + copies
    sets = FeatureSets(loader, args.cache_dir, threads=args.threads, progress=False, face_margin=None, report={})
    features = sets.compute(FeaturePass(DEFAULT_BACKBONE), every)
    x = np.stack([features[r.id] for r in every])
    pairs = similar_pairs(x, min(SIMILARITIES))
    by_way = Counter(planted.values())
    ways = ", ".join(f"{n} {w}" for w, n in by_way.items())
    print(f"  planted near-duplicates: {len(copies)} copies of {len(records)} photos ({ways}); detector: "
          f"{DEFAULT_BACKBONE} pooled features, cosine similarity")
    print(f"    {'similarity ≥':<14}{'recall':>8}{'precision*':>12}{'planted found':>15}{'other pairs':>13}"
          "   recall per way")
    for threshold in SIMILARITIES:
        found = {(every[i].id, every[j].id) for i, j, s in pairs if s >= threshold}
        found |= {(b, a) for a, b in found}
        hits = {key: way for key, way in planted.items() if key in found}
        other = sum(1 for i, j, s in pairs if s >= threshold
                    and (every[i].id, every[j].id) not in planted and (every[j].id, every[i].id) not in planted)
        total = len(hits) + other
        per_way = ", ".join(f"{w} {sum(1 for v in hits.values() if v == w)}/{n}" for w, n in by_way.items())
        mark = "  <- the trainer's" if abs(threshold - DUPLICATE_SIMILARITY) < 1e-9 else ""
        print(f"    {threshold:<14.2f}{len(hits) / len(planted):>8.2f}{len(hits) / max(total, 1):>12.2f}"
              f"{len(hits):>15}{other:>13}   {per_way}{mark}")
    print("    * counting only planted pairs as right: the set's own re-encoded copies count against it")


def label_flips(name: str, records: list[ImageRecord], loader: FileLoader, args: argparse.Namespace) -> None:
    from services.trainer.audit import LABEL_ISSUE_PROBABILITY, duplicate_groups, label_issues, similar_pairs
    from services.trainer.crossval import plan_folds
    from services.trainer.feature_sets import FeatureSets
    from services.trainer.options import SELECTION_BUDGET
    from services.trainer.selection import Candidate, affordable_passes, linear_candidates, select
    from visiondock.vocabulary import BACKBONES

    labels = sorted({r.tags[0] for r in records})
    rng = np.random.default_rng(args.seed + 1)
    flipped = set(rng.choice(len(records), max(1, round(len(records) * args.share)), replace=False).tolist())
    noisy = []
    for i, record in enumerate(records):
        tag = record.tags[0]
        if i in flipped:
            tag = str(rng.choice([label for label in labels if label != tag]))
        noisy.append(ImageRecord(id=record.id, filename=record.filename, tags=[tag], regions=[], split=None))
    targets = np.array([labels.index(r.tags[0]) for r in noisy])
    sets = FeatureSets(loader, args.cache_dir, threads=args.threads, progress=False, face_margin=None, report={})
    passes = affordable_passes(BACKBONES, len(noisy), SELECTION_BUDGET)
    for feature_pass in passes:
        sets.compute(feature_pass, noisy)
    first = sets.features[passes[0]]
    groups = duplicate_groups(len(noisy), similar_pairs(np.stack([first[r.id] for r in noisy])))
    plan = plan_folds([r.tags[0] for r in noisy], list(groups), seed=args.seed)

    def matrix(candidate: Candidate) -> np.ndarray:
        blocks = []
        for backbone in candidate.backbones:
            views = [p for p in candidate.passes() if p.backbone == backbone]
            blocks.append(np.mean([np.stack([sets.features[p][r.id] for r in noisy]) for p in views], axis=0))
        return candidate.transform(np.concatenate(blocks, axis=1))

    selection = select(linear_candidates(passes), matrix, targets, np.ones(len(noisy), bool), plan,
                       num_outputs=len(labels), multilabel=False, seed=args.seed, weight_decay=None, mlp=False,
                       images=len(noisy))
    probabilities = selection.chosen.result.probabilities
    truth = np.zeros(len(noisy), bool)
    truth[sorted(flipped)] = True
    print(f"  flipped labels: {len(flipped)} of {len(noisy)} ({args.share:.0%}); the trainer's selection on the "
          f"flipped labels chose {selection.chosen.candidate.name} (out-of-fold accuracy against the flipped labels "
          f"{selection.chosen.result.score:.2%})")
    print(f"    {'p(given) <':<12}{'listed':>8}{'recall':>8}{'precision':>11}")
    for threshold in PROBABILITIES:
        issues = label_issues(noisy, labels, targets, probabilities, range(len(noisy)), multilabel=False,
                              threshold=threshold)
        listed = {item["image_id"] for item in issues}
        hits = sum(1 for i in flipped if noisy[i].id in listed)
        mark = "  <- the trainer's" if abs(threshold - LABEL_ISSUE_PROBABILITY) < 1e-9 else ""
        print(f"    {threshold:<12.2f}{len(listed):>8}{hits / len(flipped):>8.2f}"
              f"{hits / max(len(listed), 1):>11.2f}{mark}")
    given = probabilities[np.arange(len(noisy)), targets]
    top = np.argsort(given)[:len(flipped)]
    print(f"    precision of the {len(flipped)} most suspect: {truth[top].mean():.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data_checks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    parser.add_argument("--only", nargs="*", choices=CLASSIFICATION_SETS)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--share", type=float, default=0.05, help="share of photos copied, and of labels flipped")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"data checks with planted faults; load {load_average()} on {os.cpu_count()} cores\n")
    for name in args.only or CLASSIFICATION_SETS:
        dataset = classification_set(args.datasets, name)
        if dataset is None:
            print(f"{name}: skipped, {args.datasets / name} is absent\n")
            continue
        print(f"{name}: {len(dataset.records)} photos")
        duplicates(name, dataset.records, FileLoader(dataset.paths), args)
        label_flips(name, dataset.records, FileLoader(dataset.paths), args)
        print()
    print(f"load average at end {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
