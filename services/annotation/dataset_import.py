"""Bringing a dataset into a project: images, tags and labels, with a report of what happened.

The same logic serves a zip archive read on the server and batches of images a client read
with the same readers (`visiondock import`). Images go in through `ImageLibrary.add` by batches
of IMPORT_BATCH, new ones with their labels in the same write (so an image already in the project
is a duplicate, never a copy); a duplicate gets the dataset's labels through
`ImageLibrary.set_labels`. Importing the same data again changes nothing: a
duplicate whose labels already match is left alone, and one labeled differently keeps its
labels unless the import says `replace_labels`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from visiondock.errors import Conflict, DomainError, InvalidInput
from visiondock.storage import PreconditionFailedError

from .datasets import Box, DatasetFormat, DatasetFormatError, DatasetRead, Sample, merge_same_images
from .history import LabelChange
from .images import ImageLibrary, NewImage, UploadOutcome
from .project import Labels, Project, ProjectRef
from .projects import ProjectCatalog
from .schemas import TagName

_TAG_NAME: TypeAdapter[str] = TypeAdapter(TagName)
# Two boxes within this many pixels on every side are the same box.
SAME_BOX_PIXELS = 0.5
# Images stored together (the progress events of a batch come once it is stored).
IMPORT_BATCH = 32


@dataclass
class ImportReport:
    format: str
    images: int = 0
    created: int = 0
    duplicates: int = 0
    labeled: int = 0
    unchanged: int = 0
    unlabeled: int = 0
    boxes: int = 0
    tags_created: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    conflicts: list[dict[str, str]] = field(default_factory=list)
    notes: list[dict[str, str]] = field(default_factory=list)

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append({"path": path, "reason": reason})

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ImportOptions:
    split: str | None = None
    replace_labels: bool = False


Loader = Callable[[str], bytes]


def _valid_tag(name: str) -> bool:
    try:
        _TAG_NAME.validate_python(name)
    except ValidationError:
        return False
    return True


def _to_region(box: Box, width: int, height: int) -> dict[str, Any] | None:
    """A stored region (fractions, clipped to the image) from a box; None when nothing is left."""
    sx, sy = (1.0, 1.0) if box.normalized else (1.0 / width, 1.0 / height)
    x1, x2 = sorted((box.x1 * sx, box.x2 * sx))
    y1, y2 = sorted((box.y1 * sy, box.y2 * sy))
    left, top = min(max(x1, 0.0), 1.0), min(max(y1, 0.0), 1.0)
    right, bottom = min(max(x2, 0.0), 1.0), min(max(y2, 0.0), 1.0)
    if right - left <= 0 or bottom - top <= 0:
        return None
    return {"tag": box.tag, "left": left, "top": top, "width": right - left, "height": bottom - top}


def _same_regions(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], width: int, height: int) -> bool:
    def key(region: dict[str, Any]) -> tuple[Any, ...]:
        return (region["tag"], region["left"] * width, region["top"] * height, region["width"] * width,
                region["height"] * height)

    if len(a) != len(b):
        return False
    left, right = sorted(map(key, a)), sorted(map(key, b))
    return all(x[0] == y[0] and all(abs(p - q) <= SAME_BOX_PIXELS for p, q in zip(x[1:], y[1:], strict=True))
               for x, y in zip(left, right, strict=True))


class DatasetImporter:
    def __init__(self, library: ImageLibrary, projects: ProjectCatalog, *, who: str = LabelChange().who) -> None:
        self.library = library
        self.projects = projects
        # The label history names who imported (the caller's key).
        self.change = LabelChange(who=who, source="import")

    def check_format(self, project: ProjectRef, fmt: DatasetFormat) -> Project:
        project = self.projects.resolve(project)
        if project.labels_with_boxes and not fmt.carries_boxes:
            raise InvalidInput(f"format {fmt.name} carries no boxes; a detection project needs a format with boxes "
                             "(coco, voc, yolo, csv, product)")
        return project

    def run(self, project: ProjectRef, fmt: DatasetFormat, found: DatasetRead, load: Loader,
            options: ImportOptions | None = None, change: LabelChange | None = None) -> dict[str, Any]:
        """Import everything and return the report."""
        report: dict[str, Any] = {}
        for event in self.events(project, fmt, found, load, options, change):
            if event["event"] == "report":
                report = event["report"]
        return report

    def events(self, project: ProjectRef, fmt: DatasetFormat, found: DatasetRead, load: Loader,
               options: ImportOptions | None = None, change: LabelChange | None = None) -> Iterator[dict[str, Any]]:
        """`{"event": "progress", "done", "total"}` as images go in, then `{"event": "report", ...}`.
        The labels it gives are recorded in the label history as `change` (by default an import by the caller)."""
        options = options or ImportOptions()
        change = change or self.change
        project = self.check_format(project, fmt)
        report = ImportReport(fmt.name)
        for item in found.skipped:
            report.skip(item.path, item.reason)
        samples = self._distinct(found.samples, load, report)
        report.images = len(samples)
        self._create_tags(project, found.classes, samples, report)
        total = len(samples)
        yield {"event": "progress", "done": 0, "total": total}
        for start in range(0, total, IMPORT_BATCH):
            batch = samples[start:start + IMPORT_BATCH]
            self._import_batch(project, batch, load, options, change, report)
            # One line per image, as the API promises; a batch's come together once it is stored.
            for done in range(start + 1, start + len(batch) + 1):
                yield {"event": "progress", "done": done, "total": total}
        yield {"event": "report", "report": report.as_dict()}

    # -- steps -----------------------------------------------------------------------
    @staticmethod
    def _distinct(samples: Sequence[Sample], load: Loader, report: ImportReport) -> list[Sample]:
        digests: list[str | None] = []
        readable: list[Sample] = []
        for sample in samples:
            try:
                digests.append(hashlib.sha256(load(sample.path)).hexdigest())
            except DatasetFormatError as exc:
                report.skip(sample.path, str(exc))
                continue
            readable.append(sample)
        merged, repeats = merge_same_images(readable, digests)
        report.notes.extend({"path": r.path, "note": r.reason} for r in repeats)
        return merged

    def _create_tags(self, project: Project, classes: Sequence[str], samples: Sequence[Sample],
                     report: ImportReport) -> None:
        wanted = list(dict.fromkeys([*classes, *(t for s in samples for t in s.all_tags())]))
        existing = self.projects.tag_names(project)
        for name in wanted:
            if name in existing:
                continue
            if not _valid_tag(name):
                report.notes.append({"path": "", "note": f"tag {name!r} is not a valid tag name (letters, digits, "
                                                         "' ', '.', '+', '-', '_'; at most 64): its labels are "
                                                         "skipped"})
                continue
            try:
                self.projects.create_tag(project, name)
            except Conflict:
                continue  # created meanwhile (another batch of this import, or a person)
            report.tags_created.append(name)

    def _labels(self, project: Project, sample: Sample) -> tuple[list[str], list[Box]] | str:
        """The tags and boxes to give the image, or why it cannot be imported as labeled."""
        bad = [t for t in sample.all_tags() if not _valid_tag(t)]
        if bad:
            return f"invalid tag name(s): {', '.join(map(repr, bad))}"
        if project.labels_with_boxes:
            if sample.tags and not sample.boxes:
                return f"tags without boxes ({', '.join(sample.tags)}): a detection project labels with boxes"
            return [], sample.boxes
        tags = sample.all_tags()
        return project.tags_problem(tags, given="the dataset gives") or (tags, [])

    def _import_batch(self, project: Project, samples: Sequence[Sample], load: Loader,
                      options: ImportOptions, change: LabelChange, report: ImportReport) -> None:
        additions: list[NewImage] = []
        planned: list[tuple[Sample, Labels]] = []
        for sample in samples:
            found = self._labels(project, sample) if sample.labeled else ([], [])
            if isinstance(found, str):
                report.skip(sample.path, found)
                continue
            try:
                image = self.library.check(sample.path, load(sample.path))
            except (DatasetFormatError, DomainError) as exc:
                report.skip(sample.path, str(exc))
                continue
            tags, boxes = found
            regions = self._regions(sample, boxes, image.facts.width, image.facts.height, report)
            labels = project.box_labels(regions) if project.labels_with_boxes else Labels(tags)
            # A multiclass image without a tag stays unlabeled: "none of these" is not a class.
            wanted = sample.labeled and project.is_labeled(labels.tags)
            additions.append(NewImage(image, labels if wanted else None, options.split))
            planned.append((sample, labels))
        try:
            outcomes = self.library.add(project, additions, change=change)
        except DomainError:
            # Labels the project's rules refuse (a tag deleted meanwhile), found before anything was
            # written: image by image, so only those are skipped.
            outcomes = [self._add_one(project, addition, change) for addition in additions]
        for (sample, labels), addition, outcome in zip(planned, additions, outcomes, strict=True):
            if outcome.image is None:
                report.skip(sample.path, outcome.error or "refused")
                continue
            if outcome.status == "created":
                report.created += 1
                if addition.labels is None:
                    report.unlabeled += 1
                else:
                    report.labeled += 1
                    report.boxes += len(labels.regions)
                continue
            report.duplicates += 1
            try:
                self._label_duplicate(project, sample, outcome.image, labels, addition.labels is not None,
                                      options, change, report)
            except DomainError as exc:
                report.skip(sample.path, str(exc))

    def _add_one(self, project: Project, addition: NewImage, change: LabelChange) -> UploadOutcome:
        try:
            return self.library.add(project, [addition], change=change)[0]
        except DomainError as exc:
            return UploadOutcome(addition.image.filename, "rejected", problem=exc)

    @staticmethod
    def _regions(sample: Sample, boxes: Sequence[Box], width: int, height: int,
                 report: ImportReport) -> list[dict[str, Any]]:
        regions = []
        for box in boxes:
            region = _to_region(box, width, height)
            if region is None:
                report.notes.append({"path": sample.path, "note": f"a {box.tag} box lies outside the image: left out"})
            else:
                regions.append(region)
        return regions

    def _label_duplicate(self, project: Project, sample: Sample, image: dict[str, Any], labels: Labels, wanted: bool,
                         options: ImportOptions, change: LabelChange, report: ImportReport) -> None:
        """Give an image the project had already the dataset's labels, unless it has others."""
        if not wanted:
            report.unlabeled += int(not image["labeled"])
            report.unchanged += int(image["labeled"])
            return
        if image["labeled"]:
            same = (_same_regions(image["regions"], labels.regions, image["width"], image["height"])
                    if project.labels_with_boxes else sorted(image["tags"]) == sorted(labels.tags))
            if same:
                report.unchanged += 1
                return
            if not options.replace_labels:
                report.conflicts.append({"path": sample.path, "image_id": image["id"],
                                         "reason": "already in the project with other labels; kept them "
                                                   "(import with replace_labels to take the dataset's)"})
                return
        try:
            self.library.set_labels(project, image["id"], labels, if_match=image["etag"], change=change)
        except PreconditionFailedError:
            report.conflicts.append({"path": sample.path, "image_id": image["id"],
                                     "reason": "someone changed its labels during the import; kept theirs"})
            return
        report.labeled += 1
        report.boxes += len(labels.regions)
