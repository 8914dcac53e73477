"""`yolo`: YOLO txt: one `<image name>.txt` per image, a line `class cx cy w h` per box, all
fractions of the image's size; class names in `classes.txt` (one a line, the line number is the
class id from 0; also `obj.names`) or `data.yaml` (`names:` as a list or an id → name map).

Reading: labels are paired with images by path: `labels/…/x.txt` with `images/…/x.jpg`
(Ultralytics layout) or `x.txt` beside `x.jpg` (Darknet). A segmentation line
(`class x1 y1 x2 y2 x3 y3 …`) becomes its polygon's bounding box. An empty txt labels its image
with nothing in it; an image without a txt comes in unlabeled. Writing: `images/<file>`,
`labels/<name>.txt` (six decimals), `classes.txt` and `data.yaml`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import yaml

from .base import (
    Box,
    DatasetFormat,
    DatasetFormatError,
    DatasetRead,
    DatasetSource,
    ExportImage,
    Member,
    Sample,
    Skipped,
    number,
)

CLASS_FILES = ("classes.txt", "obj.names")


def _names_from_yaml(data: bytes) -> list[str] | None:
    try:
        document: Any = yaml.safe_load(data)
    except yaml.YAMLError:
        return None
    names = document.get("names") if isinstance(document, dict) else None
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict):
        try:
            ordered = sorted((int(k), str(v)) for k, v in names.items())
        except (TypeError, ValueError):
            return None
        return [name for _, name in ordered]
    return None


def _label_candidates(image: str) -> list[str]:
    stem = posixpath.splitext(image)[0]
    parts = stem.split("/")
    candidates = [f"{stem}.txt"]
    for index in range(len(parts) - 1, -1, -1):  # the last `images` folder becomes `labels`
        if parts[index] == "images":
            candidates.insert(0, "/".join([*parts[:index], "labels", *parts[index + 1:]]) + ".txt")
            break
    return candidates


class YoloFormat(DatasetFormat):
    name = "yolo"
    summary = "YOLO txt (class cx cy w h, fractions) with classes.txt or data.yaml"
    carries_boxes = True
    exports = frozenset({"detection"})

    def _classes(self, source: DatasetSource, files: list[str]) -> tuple[list[str], set[str]]:
        for path in files:
            if posixpath.basename(path) in CLASS_FILES:
                text = source.read(path).decode("utf-8", "replace")
                return [line.strip() for line in text.splitlines() if line.strip()], {path}
        for path in files:
            if path.lower().endswith((".yaml", ".yml")):
                names = _names_from_yaml(source.read(path))
                if names is not None:
                    return names, {path}
        raise DatasetFormatError("no class names: a YOLO dataset needs classes.txt (one name a line) or data.yaml "
                                 "with names")

    def read(self, source: DatasetSource) -> DatasetRead:
        files = source.files()
        classes, class_files = self._classes(source, files)
        texts = {p for p in files if p.lower().endswith(".txt") and p not in class_files}
        samples: list[Sample] = []
        skipped: list[Skipped] = []
        used: set[str] = set()
        for image in source.images():
            label_file = next((c for c in _label_candidates(image) if c in texts), None)
            if label_file is None:
                samples.append(Sample(image, labeled=False))
                continue
            used.add(label_file)
            sample = Sample(image)
            for number_, line in enumerate(source.read(label_file).decode("utf-8", "replace").splitlines(), 1):
                if not line.strip():
                    continue
                box, problem = self._box(line, classes)
                if problem:
                    skipped.append(Skipped(label_file, f"line {number_}: {problem}"))
                else:
                    assert box is not None
                    sample.boxes.append(box)
            samples.append(sample)
        skipped.extend(Skipped(p, "no image with this name") for p in sorted(texts - used))
        return DatasetRead(samples, classes, skipped)

    @staticmethod
    def _box(line: str, classes: list[str]) -> tuple[Box | None, str | None]:
        fields = line.split()
        try:
            class_id = int(fields[0])
            values = [number(v) for v in fields[1:]]
        except (ValueError, IndexError):
            return None, f"{line.strip()[:60]!r} is not 'class cx cy w h'"
        if not 0 <= class_id < len(classes):
            return None, f"class {class_id} is not in the class list (0 to {len(classes) - 1})"
        if len(values) == 4:
            cx, cy, w, h = values
            return Box(classes[class_id], cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, normalized=True), None
        if len(values) >= 6 and len(values) % 2 == 0:  # a polygon: its bounding box
            xs, ys = values[0::2], values[1::2]
            return Box(classes[class_id], min(xs), min(ys), max(xs), max(ys), normalized=True), None
        return None, f"{len(values)} numbers after the class; expected 4 (a box) or an even count of 6 or more"

    def write(self, images: Iterable[ExportImage], *, project_type: str, tags: Sequence[str]) -> Iterator[Member]:
        class_ids = {tag: index for index, tag in enumerate(tags)}
        for image in images:
            yield Member(f"images/{image.name}", image.content(), compress=False)
            lines = []
            for box in image.boxes:
                cx, cy = (box.x1 + box.x2) / 2 / image.width, (box.y1 + box.y2) / 2 / image.height
                w, h = (box.x2 - box.x1) / image.width, (box.y2 - box.y1) / image.height
                lines.append(f"{class_ids[box.tag]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
            yield Member(f"labels/{posixpath.splitext(image.name)[0]}.txt", "".join(lines).encode())
        yield Member("classes.txt", "".join(f"{tag}\n" for tag in tags).encode())
        data = {"path": ".", "train": "images", "val": "images", "nc": len(tags), "names": list(tags)}
        yield Member("data.yaml", yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode())
