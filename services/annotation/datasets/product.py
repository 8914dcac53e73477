"""`product`: the 2017 product-detection layout (`N.jpg`, `N.bboxes.tsv`, `N.bboxes.labels.tsv`).

`N.bboxes.tsv` holds one box a line, `x1<TAB>y1<TAB>x2<TAB>y2` in pixels of the original image;
`N.bboxes.labels.tsv` one label a line, in the same order. An image without box files (e.g. under
`negative/`) is labeled with nothing in it. Writing: `positive/<name>` with its two files, and
images without boxes under `negative/`; coordinates rounded to whole pixels.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Sequence

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

BOXES, LABELS = ".bboxes.tsv", ".bboxes.labels.tsv"


def _lines(data: bytes) -> list[str]:
    return [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]


class ProductFormat(DatasetFormat):
    name = "product"
    summary = "product detection 2017: N.jpg + N.bboxes.tsv (x1 y1 x2 y2 pixels) + N.bboxes.labels.tsv"
    carries_boxes = True
    exports = frozenset({"detection"})

    def read(self, source: DatasetSource) -> DatasetRead:
        files = set(source.files())
        if not any(path.endswith(BOXES) for path in files):
            raise DatasetFormatError(f"no box files: expected N.jpg with N{BOXES} and N{LABELS}")
        samples: list[Sample] = []
        classes: list[str] = []
        skipped: list[Skipped] = []
        for image in source.images():
            stem = posixpath.splitext(image)[0]
            boxes_file, labels_file = stem + BOXES, stem + LABELS
            if boxes_file not in files and labels_file not in files:
                samples.append(Sample(image))  # a negative: nothing to find here
                continue
            if boxes_file not in files or labels_file not in files:
                missing = boxes_file if boxes_file not in files else labels_file
                skipped.append(Skipped(image, f"{missing} is missing"))
                continue
            corners, labels = _lines(source.read(boxes_file)), _lines(source.read(labels_file))
            if len(corners) != len(labels):
                skipped.append(Skipped(image, f"{len(corners)} boxes but {len(labels)} labels"))
                continue
            sample = Sample(image)
            for line, (values, label) in enumerate(zip(corners, labels, strict=True), 1):
                try:
                    x1, y1, x2, y2 = (number(v) for v in values.split())
                except ValueError:
                    skipped.append(Skipped(boxes_file, f"line {line}: {values!r} is not x1 y1 x2 y2"))
                    continue
                sample.boxes.append(Box(label, x1, y1, x2, y2))
                if label not in classes:
                    classes.append(label)
            samples.append(sample)
        return DatasetRead(samples, sorted(classes), skipped)

    def write(self, images: Iterable[ExportImage], *, project_type: str, tags: Sequence[str]) -> Iterator[Member]:
        for image in images:
            if not image.boxes:
                yield Member(f"negative/{image.name}", image.content(), compress=False)
                continue
            stem = f"positive/{posixpath.splitext(image.name)[0]}"
            yield Member(f"positive/{image.name}", image.content(), compress=False)
            yield Member(stem + BOXES, "".join(f"{round(b.x1)}\t{round(b.y1)}\t{round(b.x2)}\t{round(b.y2)}\n"
                                               for b in image.boxes).encode())
            yield Member(stem + LABELS, "".join(f"{b.tag}\n" for b in image.boxes).encode())
