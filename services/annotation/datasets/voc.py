"""`voc`: Pascal VOC XML, one `<annotation>` file per image with `<object>` boxes in pixels.

Reading: each XML names its image in `<filename>`, looked up in `JPEGImages/` beside the XML's
folder, next to the XML, at the root, then by name; failing that, an image with the XML's own
name next to it. `<xmin>`... are taken as pixel coordinates as written. An XML without objects
labels its image with nothing in it; images no XML names come in unlabeled. Writing:
`Annotations/<name>.xml` and `JPEGImages/<file>`, coordinates rounded to whole pixels.
"""

from __future__ import annotations

import posixpath
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Iterator, Sequence
from xml.sax.saxutils import escape

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


class VocFormat(DatasetFormat):
    name = "voc"
    summary = "Pascal VOC XML, one file of boxes per image"
    carries_boxes = True
    exports = frozenset({"detection"})

    def read(self, source: DatasetSource) -> DatasetRead:
        finder = ImageFinder(source.images())
        samples: dict[str, Sample] = {}
        classes: list[str] = []
        skipped: list[Skipped] = []
        found_any = False
        for path in (p for p in source.files() if p.lower().endswith(".xml")):
            try:
                root = ElementTree.fromstring(source.read(path))
            except ElementTree.ParseError as exc:
                skipped.append(Skipped(path, f"not well-formed XML ({exc})"))
                continue
            if root.tag != "annotation":
                continue
            found_any = True
            folder = posixpath.dirname(path)
            image = self._image(root, path, folder, finder)
            if image is None:
                skipped.append(Skipped(path, f"its image {root.findtext('filename')!r} is not in the dataset"))
                continue
            sample = samples.setdefault(image, Sample(image))
            for index, element in enumerate(root.iter("object")):
                name = (element.findtext("name") or "").strip()
                box = element.find("bndbox")
                try:
                    assert box is not None and name
                    x1, y1, x2, y2 = (number(box.findtext(k) or "") for k in ("xmin", "ymin", "xmax", "ymax"))
                except (AssertionError, ValueError):
                    skipped.append(Skipped(path, f"object {index + 1} has no name or no numeric bndbox"))
                    continue
                sample.boxes.append(Box(name, x1, y1, x2, y2))
                if name not in classes:
                    classes.append(name)
        if not found_any:
            raise DatasetFormatError("no Pascal VOC XML file (an <annotation> with <filename> and <object>s)")
        return DatasetRead([*samples.values(), *unlabeled_rest(sorted(finder.images), set(samples))], classes, skipped)

    @staticmethod
    def _image(root: ElementTree.Element, path: str, folder: str, finder: ImageFinder) -> str | None:
        name = (root.findtext("filename") or "").strip()
        if name:
            parent = posixpath.dirname(folder)
            found = finder.find(folder, name, also=(posixpath.join(parent, "JPEGImages"), "JPEGImages"))
            if found:
                return found
        stem = posixpath.splitext(path)[0]
        return next((image for image in sorted(finder.images) if posixpath.splitext(image)[0] == stem), None)

    def write(self, images: Iterable[ExportImage], *, project_type: str, tags: Sequence[str]) -> Iterator[Member]:
        for image in images:
            yield Member(f"JPEGImages/{image.name}", image.content(), compress=False)
            objects = "".join(
                f"  <object>\n    <name>{escape(box.tag)}</name>\n    <pose>Unspecified</pose>\n"
                f"    <truncated>0</truncated>\n    <difficult>0</difficult>\n    <bndbox>\n"
                f"      <xmin>{round(box.x1)}</xmin>\n      <ymin>{round(box.y1)}</ymin>\n"
                f"      <xmax>{round(box.x2)}</xmax>\n      <ymax>{round(box.y2)}</ymax>\n    </bndbox>\n  </object>\n"
                for box in image.boxes)
            xml = (f"<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{escape(image.name)}</filename>\n"
                   f"  <size>\n    <width>{image.width}</width>\n    <height>{image.height}</height>\n"
                   f"    <depth>3</depth>\n  </size>\n  <segmented>0</segmented>\n{objects}</annotation>\n")
            yield Member(f"Annotations/{posixpath.splitext(image.name)[0]}.xml", xml.encode())
