"""A project as the annotation service reads it, and the rules its labels follow.

`ProjectCatalog` reads a project's document into a `Project` once per request; the image library,
the review queue, suggestions, curation and dataset import pass it on and ask it what a label may
be, rather than each testing the project's type:

- multiclass: one tag per image; an image without its tag is unlabeled ("none of these" is no class);
- multilabel: any number of tags; labeled with none, an image shows nothing of the project;
- detection: boxes (regions), each naming a tag; an image's tags are those of its boxes, and
  labeled with none it shows nothing of the project.

A model's answer proposes labels the same way (`proposed_labels`): its boxes for a detection project,
its tags for a multilabel one, its one label for a multiclass one unless that is `unknown` (a face
model's answer for a person it must not name). Whether the tags a label names exist is the
catalog's to say (`ProjectCatalog.require_tags`): tags come and go while a request runs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from visiondock.errors import InvalidInput
from visiondock.vocabulary import DETECTION, MULTICLASS, MULTILABEL, PROJECT_TYPE_OF_TASK, UNKNOWN_LABEL, ProjectType

REGION_FIELDS = ("tag", "left", "top", "width", "height")


@dataclass(frozen=True)
class Labels:
    """An image's labels: its tags and, in a detection project, its boxes (whose tags the tags are)."""

    tags: list[str] = field(default_factory=list)
    regions: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Labels:
        """The labels of an image document, a review item's suggestion or a model's suggestion."""
        return cls(list(data.get("tags") or []), [dict(r) for r in data.get("regions") or []])

    @property
    def empty(self) -> bool:
        return not self.tags and not self.regions

    def keeping(self, names: Collection[str]) -> Labels:
        """These labels without the tags, and boxes, that name none of `names`."""
        return Labels([t for t in self.tags if t in names], [r for r in self.regions if r["tag"] in names])

    def as_dict(self) -> dict[str, Any]:
        return {"tags": self.tags, "regions": self.regions}


@dataclass(frozen=True)
class Project:
    """A project: its id, its type and the stored document (what `GET /v1/projects/{id}` answers)."""

    id: str
    type: ProjectType
    document: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, document: Mapping[str, Any]) -> Project:
        return cls(document["id"], document["type"], document)

    # -- what labels an image ------------------------------------------------------------
    @property
    def labels_with_boxes(self) -> bool:
        """Whether its images are labeled with boxes (regions) rather than with tags."""
        return self.type == DETECTION

    def is_labeled(self, tags: Sequence[str]) -> bool:
        """Whether an image given these tags counts as labeled: in a multiclass project only with its
        one tag; otherwise always (no tag or box says that it shows nothing of the project)."""
        return len(tags) == 1 if self.type == MULTICLASS else True

    def tags_problem(self, tags: Sequence[str], *, given: str = "got") -> str | None:
        """Why these tags cannot be one image's (more than one in a multiclass project); None when they can.
        `given` says where they came from ("the dataset gives")."""
        if self.type == MULTICLASS and len(tags) > 1:
            return f"a multiclass image has exactly one tag; {given} {len(tags)}: {', '.join(tags)}"
        return None

    def tag_labels(self, tags: Sequence[str]) -> Labels:
        """Tags given to an image, repeats dropped; refused in a detection project, and beyond one tag in a
        multiclass project."""
        if self.labels_with_boxes:
            raise self._not_tags()
        unique = list(dict.fromkeys(tags))
        problem = self.tags_problem(unique)
        if problem is not None:
            raise InvalidInput(problem)
        return Labels(unique, [])

    def box_labels(self, regions: Sequence[Mapping[str, Any]]) -> Labels:
        """Boxes given to an image, with the tags they name; refused unless this is a detection project."""
        if not self.labels_with_boxes:
            raise self._not_boxes()
        boxes = [dict(region) for region in regions]
        return Labels(sorted({region["tag"] for region in boxes}), boxes)

    def given_labels(self, tags: Sequence[str] | None, regions: Sequence[Mapping[str, Any]] | None, *,
                     otherwise: Labels) -> Labels:
        """The labels a caller gives as tags or as boxes, whichever the project takes; what is not given
        (None) comes from `otherwise` (a prediction's). Tags given to a detection project, or boxes to
        another, are refused."""
        if self.labels_with_boxes:
            if tags:
                raise self._not_tags()
            return self.box_labels(otherwise.regions if regions is None else regions)
        if regions:
            raise self._not_boxes()
        return self.tag_labels(otherwise.tags if tags is None else tags)

    def check(self, labels: Labels) -> Labels:
        """`labels`, when the project's images may have them (InvalidInput otherwise)."""
        if not self.labels_with_boxes:
            if labels.regions:
                raise self._not_boxes()
            return self.tag_labels(labels.tags)
        checked = self.box_labels(labels.regions)
        if sorted(set(labels.tags)) != checked.tags:
            raise InvalidInput("a detection image's tags are those of its boxes")
        return checked

    def renamed(self, labels: Labels, change: Callable[[str], str | None]) -> Labels:
        """`labels` with each tag named through `change` (its new name, or None to drop it and its boxes)."""
        if self.labels_with_boxes:
            return self.box_labels([{**r, "tag": change(r["tag"])} for r in labels.regions
                                    if change(r["tag"]) is not None])
        return Labels(list(dict.fromkeys(t for t in map(change, labels.tags) if t is not None)), [])

    def retagged(self, tags: Sequence[str], *, add: Sequence[str], remove: Collection[str]) -> list[str]:
        """An image's tags after a bulk change adds and removes some: in a multiclass project the added tag
        replaces the image's one."""
        adding = list(dict.fromkeys(add))
        kept = [] if self.type == MULTICLASS and adding else [t for t in tags if t not in remove]
        return list(dict.fromkeys([*kept, *(t for t in adding if t not in remove)]))

    # -- models ----------------------------------------------------------------------------
    def fits_task(self, task: str) -> bool:
        """Whether a model of `task` answers with labels for this project (a face model for a multiclass one)."""
        return PROJECT_TYPE_OF_TASK.get(task) == self.type

    @property
    def fitting_tasks(self) -> tuple[str, ...]:
        return tuple(task for task, project_type in PROJECT_TYPE_OF_TASK.items() if project_type == self.type)

    def _not_tags(self) -> InvalidInput:
        return InvalidInput(f"project {self.id!r} is a detection project: its images are labeled with boxes "
                            "(regions), not with tags")

    def _not_boxes(self) -> InvalidInput:
        return InvalidInput(f"project {self.id!r} is {self.type}: its images are labeled with tags, not with "
                            "boxes (regions)")


# A project, or its id where the callee is the first to read it.
ProjectRef: TypeAlias = Project | str


def proposed_labels(project_type: str, prediction: Mapping[str, Any], *, scores: bool = False) -> Labels:
    """The labels a model's prediction proposes for an image of a project of `project_type`: its boxes
    (clipped to the image; with `scores`, each with the model's score) for detection, its tags for
    multilabel, its one label otherwise unless that is `unknown`."""
    if project_type == DETECTION:
        regions = []
        for found in prediction.get("detections") or []:
            region = found.get("region") or {}
            try:
                left = min(max(float(region["left"]), 0.0), 1.0)
                top = min(max(float(region["top"]), 0.0), 1.0)
                width = min(float(region["width"]), 1.0 - left)
                height = min(float(region["height"]), 1.0 - top)
            except (KeyError, TypeError, ValueError):
                continue
            if width > 0 and height > 0 and isinstance(found.get("label"), str):
                regions.append({"tag": found["label"], "left": left, "top": top, "width": width, "height": height,
                                **({"score": float(found.get("score") or 0.0)} if scores else {})})
        return Labels(sorted({r["tag"] for r in regions}), regions)
    if project_type == MULTILABEL:
        return Labels([t["label"] for t in prediction.get("tags") or [] if isinstance(t.get("label"), str)], [])
    label = prediction.get("label")
    return Labels([label] if isinstance(label, str) and label != UNKNOWN_LABEL else [], [])
