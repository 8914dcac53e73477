"""`coco`: COCO JSON: `images`, `categories` and `annotations` in one or more `*.json` files.

Reading: an annotation with a `bbox` ([x, y, width, height] in pixels) is a box; one without is
a tag of the whole image (classification). An image listed without annotations is labeled with
nothing in it. `file_name` is looked up next to the JSON file, in an `images/` folder beside it,
at the archive's root, then by its name alone. Writing: `annotations.json` and `images/<file>`;
category ids are the project's tags in order, from 1.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .base import (
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
    number,
    unlabeled_rest,
)


def _is_coco(document: Any) -> bool:
    return isinstance(document, dict) and isinstance(document.get("images"), list) and \
        isinstance(document.get("categories"), list)


class CocoFormat(DatasetFormat):
    name = "coco"
    summary = "COCO JSON (boxes, or tags of whole images)"
    carries_boxes = True
    exports = frozenset({"multiclass", "multilabel", "detection"})

    def read(self, source: DatasetSource) -> DatasetRead:
        finder = ImageFinder(source.images())
        samples: dict[str, Sample] = {}
        classes: list[str] = []
        skipped: list[Skipped] = []
        found_any = False
        for path in (p for p in source.files() if p.lower().endswith(".json")):
            try:
                document = json.loads(source.read(path))
            except (ValueError, UnicodeDecodeError) as exc:
                skipped.append(Skipped(path, f"not valid JSON ({exc})"))
                continue
            if not _is_coco(document):
                continue
            found_any = True
            self._read_document(path, document, finder, samples, classes, skipped)
        if not found_any:
            raise DatasetFormatError("no COCO JSON file (an object with 'images' and 'categories' lists)")
        rest = unlabeled_rest(sorted(finder.images), set(samples))
        return DatasetRead([*samples.values(), *rest], classes, skipped)

    @staticmethod
    def _read_document(path: str, document: dict[str, Any], finder: ImageFinder, samples: dict[str, Sample],
                       classes: list[str], skipped: list[Skipped]) -> None:
        folder = posixpath.dirname(path)
        categories: dict[Any, str] = {}
        for category in document["categories"]:
            if isinstance(category, dict) and isinstance(category.get("name"), str) and "id" in category:
                categories[category["id"]] = category["name"]
                if category["name"] not in classes:
                    classes.append(category["name"])
        by_id: dict[Any, Sample] = {}
        for entry in document["images"]:
            name = entry.get("file_name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or "id" not in entry:
                skipped.append(Skipped(path, f"an image entry without id or file_name: {str(entry)[:80]}"))
                continue
            image = finder.find(folder, name, also=(posixpath.join(folder, "images"), "images"))
            if image is None:
                skipped.append(Skipped(name, f"listed in {path} but not in the dataset"))
                continue
            sample = samples.setdefault(image, Sample(image))
            by_id[entry["id"]] = sample
        for annotation in document.get("annotations") or []:
            if not isinstance(annotation, dict):
                continue
            labeled = by_id.get(annotation.get("image_id"))
            category = categories.get(annotation.get("category_id"))
            if labeled is None or category is None:
                if labeled is not None or annotation.get("image_id") not in by_id:
                    skipped.append(Skipped(path, f"annotation {annotation.get('id')} names an unknown "
                                                 "image or category"))
                continue
            bbox = annotation.get("bbox")
            if not bbox:
                if category not in labeled.tags:
                    labeled.tags.append(category)
                continue
            try:
                x, y, width, height = (number(str(v)) for v in bbox)
            except (TypeError, ValueError):
                skipped.append(Skipped(labeled.path, f"annotation {annotation.get('id')}: bbox {bbox!r} is not "
                                                     "[x, y, width, height]"))
                continue
            labeled.boxes.append(Box(category, x, y, x + width, y + height))

    def write(self, images: Iterable[ExportImage], *, project_type: str, tags: Sequence[str]) -> Iterator[Member]:
        category_ids = {tag: index for index, tag in enumerate(tags, start=1)}
        entries: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for number_, image in enumerate(images, start=1):
            yield Member(f"images/{image.name}", image.content(), compress=False)
            entries.append({"id": number_, "file_name": image.name, "width": image.width, "height": image.height})
            if project_type == "detection":
                for box in image.boxes:
                    width, height = box.x2 - box.x1, box.y2 - box.y1
                    annotations.append({"id": len(annotations) + 1, "image_id": number_,
                                        "category_id": category_ids[box.tag],
                                        "bbox": [round(box.x1, 2), round(box.y1, 2), round(width, 2),
                                                 round(height, 2)],
                                        "area": round(width * height, 2), "iscrowd": 0})
            else:
                annotations.extend({"id": len(annotations) + 1 + i, "image_id": number_,
                                    "category_id": category_ids[tag]} for i, tag in enumerate(image.tags))
        document = {"info": {"description": f"VisionDock {project_type} export"}, "images": entries,
                    "categories": [{"id": i, "name": tag, "supercategory": ""} for tag, i in category_ids.items()],
                    "annotations": annotations}
        yield Member("annotations.json", json.dumps(document, indent=1).encode())
