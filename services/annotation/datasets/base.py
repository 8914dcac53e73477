"""What every dataset format shares: the samples a reader finds, the images a writer gets, and
the one interface each format implements (`DatasetFormat`: `read` and `write`).

Readers see a dataset through a `DatasetSource` (a folder on disk for the CLI, a zip archive for
the API) and never decode images; writers yield archive members whose image bytes stream from
storage. Nothing here imports torch or knows about HTTP.
"""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
SUFFIX_BY_CONTENT_TYPE = {"image/jpeg": ".jpg", "image/png": ".png", "image/bmp": ".bmp", "image/gif": ".gif",
                          "image/webp": ".webp"}
# A multilabel cell of a CSV file (`cat;dog`): tag names never contain ';'.
TAG_SEPARATOR = ";"


class DatasetFormatError(ValueError):
    """The files do not hold a data set in the named format; the message says what was expected."""


@dataclass
class Box:
    """A labeled box: pixels of the image, or fractions of its width and height when `normalized`."""

    tag: str
    x1: float
    y1: float
    x2: float
    y2: float
    normalized: bool = False


@dataclass
class Sample:
    """One image of a dataset and what the dataset says about it.

    `labeled` False: the dataset says nothing (the image comes in unlabeled). True with no tags
    and no boxes: the dataset says there is nothing to see (a negative)."""

    path: str
    tags: list[str] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    labeled: bool = True

    def all_tags(self) -> list[str]:
        """The tags, then the tags of the boxes, each once."""
        return list(dict.fromkeys([*self.tags, *(box.tag for box in self.boxes)]))


@dataclass
class Skipped:
    path: str
    reason: str


@dataclass
class DatasetRead:
    """What a reader found: the images with their labels, the class names the dataset declares
    (in its order, used or not), and what it left out and why."""

    samples: list[Sample]
    classes: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass
class ExportImage:
    """A labeled image to write: `name` is its unique file name in the export, boxes are pixels."""

    id: str
    name: str
    width: int
    height: int
    tags: list[str]
    boxes: list[Box]
    content: Callable[[], Iterable[bytes]]


@dataclass
class Member:
    """A file of an export archive; images are stored as they are, text is compressed."""

    path: str
    content: bytes | Iterable[bytes]
    compress: bool = True


class DatasetSource(ABC):
    """The files of a dataset by relative '/'-separated path (a folder, or a zip archive)."""

    @abstractmethod
    def files(self) -> list[str]:
        """Every regular file, sorted; hidden files and macOS resource forks left out."""

    @abstractmethod
    def read(self, path: str) -> bytes:
        """A file's bytes (raises DatasetFormatError when it is over the source's limits)."""

    def images(self) -> list[str]:
        return [path for path in self.files() if is_image(path)]


class DatasetFormat(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    # A format without boxes cannot label a detection project.
    carries_boxes: ClassVar[bool]
    # Whether it can say "labeled, nothing here" (a multilabel image without tags, a detection image
    # without boxes); a format that cannot leaves such images out of an export.
    carries_negatives: ClassVar[bool] = True
    # Project types it writes; any format reads into any project its labels fit.
    exports: ClassVar[frozenset[str]]

    @abstractmethod
    def read(self, source: DatasetSource) -> DatasetRead: ...

    @abstractmethod
    def write(self, images: Iterable[ExportImage], *, project_type: str, tags: Sequence[str]) -> Iterator[Member]:
        """Archive members: each image (streamed) with its annotation files, shared files last."""


# -- paths --------------------------------------------------------------------------
def is_image(path: str) -> bool:
    return posixpath.splitext(path)[1].lower() in IMAGE_SUFFIXES


def is_hidden(path: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in path.split("/"))


def join(folder: str, reference: str) -> str | None:
    """`reference` (as written in an annotation file) relative to `folder`; None when it leaves the dataset."""
    reference = reference.strip().replace("\\", "/")
    if not reference or reference.startswith("/") or (len(reference) > 1 and reference[1] == ":"):
        return None
    joined = posixpath.normpath(posixpath.join(folder, reference))
    return None if joined == ".." or joined.startswith("../") else joined


class ImageFinder:
    """Finds the image an annotation file names: next to it, in the usual image folders, at the
    dataset's root, or by its file name alone when exactly one image has it."""

    def __init__(self, images: Iterable[str]) -> None:
        self.images = set(images)
        self._by_name: dict[str, list[str]] = {}
        for path in sorted(self.images):
            self._by_name.setdefault(posixpath.basename(path), []).append(path)

    def find(self, folder: str, reference: str, *, also: Sequence[str] = ()) -> str | None:
        for base in (folder, *also, ""):
            candidate = join(base, reference)
            if candidate in self.images:
                return candidate
        same_name = self._by_name.get(posixpath.basename(reference.replace("\\", "/")), [])
        return same_name[0] if len(same_name) == 1 else None


def unlabeled_rest(images: Iterable[str], used: set[str]) -> list[Sample]:
    """The images no annotation mentions: they come in without labels."""
    return [Sample(path, labeled=False) for path in images if path not in used]


def number(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def fmt_number(value: float) -> str:
    """Pixels with two decimals, without trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def merge_same_images(samples: Sequence[Sample], digests: Sequence[str | None]) -> tuple[list[Sample], list[Skipped]]:
    """One sample per distinct image (by content digest): a dataset that lists the same photo twice
    (two class folders, two CSV rows with different paths) gives it the union of both labels."""
    merged: dict[str, Sample] = {}
    duplicates: list[Skipped] = []
    out: list[Sample] = []
    for sample, digest in zip(samples, digests, strict=True):
        if digest is None:
            out.append(sample)
            continue
        first = merged.get(digest)
        if first is None:
            copy = Sample(sample.path, list(sample.tags), list(sample.boxes), sample.labeled)
            merged[digest] = copy
            out.append(copy)
            continue
        first.labeled = first.labeled or sample.labeled
        first.tags = list(dict.fromkeys([*first.tags, *sample.tags]))
        first.boxes.extend(box for box in sample.boxes if box not in first.boxes)
        duplicates.append(Skipped(sample.path, f"the same image as {first.path}; its labels were added to it"))
    return out, duplicates
