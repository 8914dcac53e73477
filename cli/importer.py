"""`visiondock import`: a dataset read on this machine, sent to the annotation API in batches.

The folder (or zip file) is read with the annotation service's own format readers, so a
dataset that imports from the command line imports the same way as a zip uploaded to
`POST /v1/projects/{p}/imports`. The command sends batches of images with their labels
(`POST …/imports/samples`) rather than one zip: no archive size limit, progress as batches go,
dataset errors found before anything is sent, only the images the annotations name are sent,
and an interrupted import can simply be run again (what went in comes back as unchanged
duplicates). Two batches are in flight at once: the service stores one while the next is read
and sent. The first goes alone, so the dataset's tags exist before the others arrive.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tqdm import tqdm

from services.annotation.datasets import (
    DatasetFormatError,
    DatasetSource,
    FolderSource,
    Sample,
    ZipSource,
    get_format,
    merge_same_images,
)
from services.annotation.project import Project
from visiondock.clients import AnnotationClient

BATCH_SIZE = 32
MAX_BATCH_BYTES = 32 * 1024 * 1024
# Batches sent before the answer to the first of them is awaited.
IN_FLIGHT = 2
COUNTS = ("images", "created", "duplicates", "labeled", "unchanged", "unlabeled", "boxes")
LISTS = ("tags_created", "skipped", "conflicts", "notes")

__all__ = ["DatasetFormatError", "import_dataset"]


def _open(path: Path, stack: ExitStack) -> DatasetSource:
    if path.is_file() and zipfile.is_zipfile(path):
        source = ZipSource(stack.enter_context(path.open("rb")))
        stack.callback(source.close)
        return source
    return FolderSource(path)


def _batches(samples: list[Sample], sizes: dict[str, int]) -> Iterator[list[Sample]]:
    batch: list[Sample] = []
    size = 0
    for sample in samples:
        if batch and (len(batch) >= BATCH_SIZE or size + sizes[sample.path] > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(sample)
        size += sizes[sample.path]
    if batch:
        yield batch


def _manifest_entry(sample: Sample) -> dict[str, Any]:
    return {"path": sample.path, "tags": sample.tags, "labeled": sample.labeled,
            "boxes": [{"tag": b.tag, "x1": b.x1, "y1": b.y1, "x2": b.x2, "y2": b.y2, "normalized": b.normalized}
                      for b in sample.boxes]}


def import_dataset(client: AnnotationClient, project_id: str, path: Path, fmt_name: str, *,
                   split: str | None = None, replace_labels: bool = False, progress: bool = True) -> dict[str, Any]:
    """Import the dataset at `path` (a folder or a zip file); the report, as the API gives it."""
    fmt = get_format(fmt_name)
    if Project.of(client.get_project(project_id)).labels_with_boxes and not fmt.carries_boxes:
        raise DatasetFormatError(f"format {fmt.name} carries no boxes; a detection project needs boxes")
    with ExitStack() as stack:
        source = _open(path, stack)
        found = fmt.read(source)
        digests, sizes = [], {}
        for sample in found.samples:  # one image read twice in a dataset is sent once, with both labels
            data = source.read(sample.path)
            digests.append(hashlib.sha256(data).hexdigest())
            sizes[sample.path] = len(data)
        samples, repeats = merge_same_images(found.samples, digests)
        report: dict[str, Any] = {"format": fmt.name, **dict.fromkeys(COUNTS, 0), **{k: [] for k in LISTS}}
        report["skipped"] = [{"path": s.path, "reason": s.reason} for s in found.skipped]
        report["notes"] = [{"path": r.path, "note": r.reason} for r in repeats]
        classes = found.classes

        def send(batch: list[Sample]) -> tuple[int, Future[dict[str, Any]]]:
            nonlocal classes
            manifest = {"format": fmt.name, "classes": classes, "split": split, "replace_labels": replace_labels,
                        "samples": [_manifest_entry(s) for s in batch]}
            classes = []  # created with the first batch
            files = [(s.path, source.read(s.path)) for s in batch]  # read here, sent by a worker
            return len(batch), pool.submit(client.import_samples, project_id, files, manifest)

        with tqdm(total=len(samples), desc=f"import into {project_id}", unit="img", disable=not progress) as bar, \
                ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
            in_flight: deque[tuple[int, Future[dict[str, Any]]]] = deque()
            for number, batch in enumerate(_batches(samples, sizes)):
                in_flight.append(send(batch))
                # The first batch alone: it creates the tags the others use.
                while in_flight and (number == 0 or len(in_flight) >= IN_FLIGHT):
                    count, answer = in_flight.popleft()
                    _add_answer(report, answer.result())
                    bar.update(count)
            while in_flight:
                count, answer = in_flight.popleft()
                _add_answer(report, answer.result())
                bar.update(count)
    return report


def _add_answer(report: dict[str, Any], answer: dict[str, Any]) -> None:
    for key in COUNTS:
        report[key] += answer[key]
    for key in LISTS:
        report[key].extend(answer[key])
