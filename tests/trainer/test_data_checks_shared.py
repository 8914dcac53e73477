"""The trainer's data checks on real photos with planted faults (`../shared/datasets`; skipped without it):
near-duplicates made the ways people make them are found, and flipped labels are listed as likely label
errors. `bench.data_checks` prints the same measurements for every threshold."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from services.trainer.audit import DUPLICATE_SIMILARITY, duplicate_groups, label_issues, similar_pairs
from services.trainer.crossval import cross_validate, plan_folds
from services.trainer.data import ImageLoader, ImageRecord
from services.trainer.feature_sets import FeatureSets
from services.trainer.selection import FeaturePass
from visiondock.images import decode_rgb
from visiondock.vocabulary import DEFAULT_BACKBONE

pytestmark = pytest.mark.training
# `../shared/datasets` beside the repository, or where VISIONDOCK_DATASETS says.
DATASETS = Path(os.environ.get("VISIONDOCK_DATASETS") or Path(__file__).resolve().parents[3] / "shared" / "datasets")


class Files(ImageLoader):
    """The trainer's image loader over files (and bytes made here), decoding as it does."""

    def __init__(self, data: dict[str, bytes]) -> None:
        self.data, self.progress, self.skipped, self.downloaded = data, False, [], 0

    def load(self, records: list[ImageRecord], *, draft_size: tuple[int, int] | None,  # type: ignore[override]
             desc: str = "") -> dict[str, Image.Image]:
        return {r.id: decode_rgb(self.data[r.id], draft_size=draft_size) for r in records}


def photos(name: str, classes: int | None = None) -> tuple[list[ImageRecord], dict[str, bytes]]:
    folder = DATASETS / name / "train"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent: the shared photo sets are not on this machine")
    records, data = [], {}
    for label_folder in sorted(p for p in folder.iterdir() if p.is_dir())[:classes]:
        for path in sorted(label_folder.glob("*.jpg")):
            content = path.read_bytes()
            digest = hashlib.sha256(content).hexdigest()
            data[digest] = content
            records.append(ImageRecord(id=digest, filename=f"{label_folder.name}/{path.name}",
                                       tags=[label_folder.name], regions=[], split=None))
    return records, data


def copy_of(content: bytes, way: int) -> bytes:
    image = Image.open(io.BytesIO(content)).convert("RGB")
    if way == 1:
        image = image.resize((round(image.width * 0.8), round(image.height * 0.8)), Image.Resampling.BICUBIC)
    elif way == 2:
        dx, dy = round(image.width * 0.05), round(image.height * 0.05)
        image = image.crop((dx, dy, image.width - dx, image.height - dy))
    elif way == 3:
        image = ImageEnhance.Brightness(image).enhance(1.15)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=60 if way == 0 else 90)
    return out.getvalue()


def test_planted_near_duplicates_of_real_photos_are_found(tmp_path: Path) -> None:
    records, data = photos("hotdog")
    rng = np.random.default_rng(0)
    planted: set[tuple[str, str]] = set()
    copies = []
    for n, index in enumerate(rng.choice(len(records), 12, replace=False)):
        original = records[int(index)]
        content = copy_of(data[original.id], n % 4)  # recompressed, resized, cropped, brightened
        digest = hashlib.sha256(content).hexdigest()
        data[digest] = content
        copies.append(ImageRecord(id=digest, filename=f"copy-{original.filename}", tags=original.tags, regions=[],
                                  split=None))
        planted.add((original.id, digest))
    every = records + copies
    sets = FeatureSets(Files(data), tmp_path, threads=2, progress=False, face_margin=None, report={})
    features = sets.compute(FeaturePass(DEFAULT_BACKBONE), every)
    pairs = similar_pairs(np.stack([features[r.id] for r in every]), DUPLICATE_SIMILARITY)
    found = {(every[i].id, every[j].id) for i, j, _ in pairs} | {(every[j].id, every[i].id) for i, j, _ in pairs}
    recall = len(planted & found) / len(planted)
    precision = len(planted & found) / max(len(pairs), 1)
    # Recompressed, resized and brightened copies are found; a 10 % crop is the hardest (bench.data_checks).
    assert recall >= 0.75 and precision >= 0.8, (recall, precision)
    # Each planted pair is one group, which cross-validation keeps in one fold.
    groups = duplicate_groups(len(every), pairs)
    position = {r.id: i for i, r in enumerate(every)}
    kept = sum(groups[position[a]] == groups[position[b]] for a, b in planted)
    assert kept == len(planted & found)


def test_flipped_labels_of_real_photos_are_listed_most_likely_first(tmp_path: Path) -> None:
    records, data = photos("flowers12", classes=6)
    labels = sorted({r.tags[0] for r in records})
    rng = np.random.default_rng(1)
    flipped = set(rng.choice(len(records), 18, replace=False).tolist())  # 5 %
    noisy = [ImageRecord(id=r.id, filename=r.filename, regions=[], split=None,
                         tags=[str(rng.choice([x for x in labels if x != r.tags[0]])) if i in flipped else r.tags[0]])
             for i, r in enumerate(records)]
    sets = FeatureSets(Files(data), tmp_path, threads=2, progress=False, face_margin=None, report={})
    features = sets.compute(FeaturePass(DEFAULT_BACKBONE), noisy)
    x = np.stack([features[r.id] for r in noisy])
    targets = np.array([labels.index(r.tags[0]) for r in noisy])
    plan = plan_folds([r.tags[0] for r in noisy], list(duplicate_groups(len(noisy), similar_pairs(x))), seed=0)
    result = cross_validate(x, targets, np.ones(len(noisy), bool), plan, kind="linear", num_outputs=len(labels),
                            multilabel=False, seed=0)
    issues = label_issues(noisy, labels, targets, result.probabilities, range(len(noisy)), multilabel=False)
    listed = [item["image_id"] for item in issues]
    wrong = {noisy[i].id for i in flipped}
    recall = len(wrong & set(listed)) / len(wrong)
    precision = len(wrong & set(listed)) / max(len(listed), 1)
    assert recall >= 0.9 and precision >= 0.6, (recall, precision)
    # Ranked: the top of the list is nearly all flips, and each says what the photo looks like.
    assert len(wrong & set(listed[:10])) >= 9
    truth = {noisy[i].id: records[i].tags[0] for i in flipped}
    suggested_right = sum(item["suggested"] == truth[item["image_id"]] for item in issues if item["image_id"] in truth)
    assert suggested_right >= 0.9 * len(wrong & set(listed))
