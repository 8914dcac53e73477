"""The shared photo sets (`../shared/datasets`) as the trainer sees a project: records and a loader.

The benchmarks that compare trainer choices read the photos from disk instead of through the
annotation service, but decode them exactly as the trainer's `ImageLoader` does (JPEG draft
mode to the preprocessing's size), so the trainer's own feature code (`FeatureSets`), folds and
heads run on them unchanged.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from services.trainer.data import ImageLoader, ImageRecord
from visiondock.images import decode_rgb

ROOT = Path(__file__).resolve().parents[1]
# `../shared/datasets` beside the repository, or where VISIONDOCK_DATASETS says.
DEFAULT_DATASETS = Path(os.environ.get("VISIONDOCK_DATASETS") or ROOT.parent / "shared" / "datasets")
# The classification sets: a folder per class under <name>/train.
CLASSIFICATION_SETS = ("flowers12", "hotdog")


@dataclass
class ClassificationSet:
    name: str
    records: list[ImageRecord]
    paths: dict[str, Path]  # by record id

    @property
    def labels(self) -> list[str]:
        return sorted({r.tags[0] for r in self.records})


def classification_set(root: Path, name: str) -> ClassificationSet | None:
    """The set's photos as labeled records (id: the SHA-256 of the file, as the annotation service
    names images); None when the folder is absent."""
    folder = root / name / "train"
    if not folder.is_dir():
        return None
    records, paths = [], {}
    for label_folder in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in sorted(label_folder.glob("*.jpg")):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            records.append(ImageRecord(id=digest, filename=f"{label_folder.name}/{path.name}", tags=[label_folder.name],
                                       regions=[], split=None))
            paths[digest] = path
    return ClassificationSet(name=name, records=records, paths=paths)


class FileLoader(ImageLoader):
    """`ImageLoader` over files on disk: same decoding, no service."""

    def __init__(self, paths: dict[str, Path], *, extra: dict[str, bytes] | None = None) -> None:
        self.paths = paths
        self.extra = extra or {}  # bytes made by a benchmark (e.g. planted duplicates), by id
        self.progress = False
        self.skipped: list[dict[str, str]] = []
        self.downloaded = 0

    def load(self, records: Sequence[ImageRecord], *, draft_size: tuple[int, int] | None,
             desc: str = "download images") -> dict[str, Image.Image]:
        loaded = {}
        for record in records:
            data = self.extra[record.id] if record.id in self.extra else self.paths[record.id].read_bytes()
            loaded[record.id] = decode_rgb(data, draft_size=draft_size)
        self.downloaded += len(loaded)
        return loaded
