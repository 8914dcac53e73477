"""`csv`: one CSV file of image paths and labels (paths relative to the CSV file).

Three forms, told apart by the header row (or, without one, by the number of columns):

    path,label                  one tag per row; several rows of one path give it several tags
    path,labels                 every tag of an image in one cell, separated by ';' (`cat;dog`)
    path,label,x1,y1,x2,y2      one box per row, in pixels (x1,y1 the top left corner)

Header names are case-insensitive; `filename`/`file`/`image` also name the path column, `tag`/`tags`
the label column, `xmin,ymin,xmax,ymax` the box. A label cell may hold several tags separated by
';' in every form. A row with an empty label (and empty box) labels its image with nothing in it;
images no row names come in unlabeled. Writing: `labels.csv` (with a header) and `images/<file>`.
"""

from __future__ import annotations

import csv
import io
import posixpath
from collections.abc import Iterable, Iterator, Sequence

from .base import (
    TAG_SEPARATOR,
    Box,
    DatasetFormat,
    DatasetFormatError,
    DatasetRead,
    DatasetSource,
    ExportImage,
    ImageFinder,
    Member,
    Sample,
    Skipped,
    fmt_number,
    number,
    unlabeled_rest,
)

PATH_NAMES = ("path", "filename", "file", "image", "image_path")
LABEL_NAMES = ("label", "labels", "tag", "tags")
BOX_NAMES = (("x1", "y1", "x2", "y2"), ("xmin", "ymin", "xmax", "ymax"))


def _columns(first: list[str]) -> tuple[dict[str, int], bool]:
    """Column positions by role, and whether the first row is a header."""
    names = [cell.strip().lower() for cell in first]
    if names and names[0] in PATH_NAMES:
        columns = {"path": 0}
        label = next((i for i, n in enumerate(names) if n in LABEL_NAMES), None)
        if label is not None:
            columns["label"] = label
        for box_names in BOX_NAMES:
            if all(n in names for n in box_names):
                columns.update({role: names.index(n) for role, n in zip(("x1", "y1", "x2", "y2"), box_names,
                                                                         strict=True)})
        return columns, True
    if len(first) == 2:
        return {"path": 0, "label": 1}, False
    if len(first) == 6:
        return {"path": 0, "label": 1, "x1": 2, "y1": 3, "x2": 4, "y2": 5}, False
    raise DatasetFormatError(f"a CSV row of {len(first)} columns; expected path,label or path,label,x1,y1,x2,y2 "
                             "(or a header row naming the columns)")


class CsvFormat(DatasetFormat):
    name = "csv"
    summary = "CSV: path,label / path,labels (a;b) / path,label,x1,y1,x2,y2 (pixels)"
    carries_boxes = True
    exports = frozenset({"multiclass", "multilabel", "detection"})

    def read(self, source: DatasetSource) -> DatasetRead:
        tables = [p for p in source.files() if p.lower().endswith(".csv")]
        if not tables:
            raise DatasetFormatError("no CSV file (.csv) in the dataset")
        finder = ImageFinder(source.images())
        samples: dict[str, Sample] = {}
        classes: list[str] = []
        skipped: list[Skipped] = []
        for table in tables:
            text = source.read(table).decode("utf-8-sig", "replace")
            rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
            if not rows:
                continue
            columns, header = _columns(rows[0])
            for line, row in enumerate(rows[1:] if header else rows, start=2 if header else 1):
                self._row(table, line, row, columns, finder, samples, classes, skipped)
        return DatasetRead([*samples.values(), *unlabeled_rest(sorted(finder.images), set(samples))], classes, skipped)

    @staticmethod
    def _row(table: str, line: int, row: list[str], columns: dict[str, int], finder: ImageFinder,
             samples: dict[str, Sample], classes: list[str], skipped: list[Skipped]) -> None:
        def cell(role: str) -> str:
            index = columns.get(role)
            return row[index].strip() if index is not None and index < len(row) else ""

        where = f"{table} line {line}"
        image = finder.find(posixpath.dirname(table), cell("path"))
        if image is None:
            skipped.append(Skipped(cell("path") or where, f"{where}: no such image in the dataset"))
            return
        tags = [t.strip() for t in cell("label").split(TAG_SEPARATOR) if t.strip()]
        corners = [cell(role) for role in ("x1", "y1", "x2", "y2")]
        sample = samples.setdefault(image, Sample(image))
        classes.extend(t for t in tags if t not in classes)
        if not any(corners):
            sample.tags.extend(t for t in tags if t not in sample.tags)
            return
        if len(tags) != 1:
            skipped.append(Skipped(image, f"{where}: a box needs exactly one label, got {cell('label')!r}"))
            return
        try:
            x1, y1, x2, y2 = (number(c) for c in corners)
        except ValueError:
            skipped.append(Skipped(image, f"{where}: box {','.join(corners)} is not four numbers"))
            return
        sample.boxes.append(Box(tags[0], x1, y1, x2, y2))

    def write(self, images: Iterable[ExportImage], *, project_type: str, tags: Sequence[str]) -> Iterator[Member]:
        table = io.StringIO()
        writer = csv.writer(table, lineterminator="\n")
        writer.writerow({"multiclass": ["path", "label"], "multilabel": ["path", "labels"]}.get(
            project_type, ["path", "label", "x1", "y1", "x2", "y2"]))
        for image in images:
            path = f"images/{image.name}"
            yield Member(path, image.content(), compress=False)
            if project_type != "detection":
                writer.writerow([path, TAG_SEPARATOR.join(image.tags)])
            elif not image.boxes:
                writer.writerow([path, "", "", "", "", ""])
            else:
                writer.writerows([path, box.tag, *(fmt_number(v) for v in (box.x1, box.y1, box.x2, box.y2))]
                                 for box in image.boxes)
        yield Member("labels.csv", table.getvalue().encode())
