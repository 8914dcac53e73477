"""Importing a folder of images into a project, through the annotation API.

Format `folder`: one sub-folder per class, its name the tag (`flowers/daisy/1.jpg`).
Missing tags are created; images go up in batches, with a progress bar.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from visiondock.clients import AnnotationClient, ServiceError
from visiondock.vocabulary import DETECTION

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
FORMATS = ("folder",)
BATCH_SIZE = 32
MAX_BATCH_BYTES = 32 * 1024 * 1024


class DatasetFormatError(ValueError):
    """The folder does not hold a data set in the named format."""


@dataclass
class ImportSummary:
    created: int = 0
    duplicates: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    per_tag: dict[str, int] = field(default_factory=dict)


def folder_classes(root: Path) -> dict[str, list[Path]]:
    if not root.is_dir():
        raise DatasetFormatError(f"{root} is not a folder")
    classes = {
        folder.name: sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        for folder in sorted(root.iterdir()) if folder.is_dir() and not folder.name.startswith(".")
    }
    classes = {name: files for name, files in classes.items() if files}
    if not classes:
        raise DatasetFormatError(f"{root} has no class sub-folders with images (expected {root}/<tag>/<image>.jpg)")
    return classes


def _batches(files: list[Path]) -> Iterator[list[Path]]:
    batch: list[Path] = []
    size = 0
    for path in files:
        file_size = path.stat().st_size
        if batch and (len(batch) >= BATCH_SIZE or size + file_size > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(path)
        size += file_size
    if batch:
        yield batch


def import_folder(client: AnnotationClient, project_id: str, root: Path, *, split: str | None = None,
                  progress: bool = True) -> ImportSummary:
    classes = folder_classes(root)
    project = client.get_project(project_id)
    if project["type"] == DETECTION:
        raise DatasetFormatError("a detection project needs boxes; the folder format only carries class tags")
    existing = {tag["name"] for tag in client.list_tags(project_id)}
    for name in classes:
        if name not in existing:
            client.create_tag(project_id, name)
    summary = ImportSummary()
    total = sum(len(files) for files in classes.values())
    with tqdm(total=total, desc=f"import into {project_id}", unit="img", disable=not progress) as bar:
        for tag, files in classes.items():
            for batch in _batches(files):
                answer = _upload(client, project_id, batch, tag, split)
                for result in answer:
                    if result["status"] == "created":
                        summary.created += 1
                        summary.per_tag[tag] = summary.per_tag.get(tag, 0) + 1
                    elif result["status"] == "duplicate":
                        summary.duplicates += 1
                    else:
                        summary.rejected.append((f"{tag}/{result['filename']}", result.get("error") or ""))
                bar.update(len(batch))
    return summary


def _upload(client: AnnotationClient, project_id: str, batch: list[Path], tag: str,
            split: str | None) -> list[dict[str, Any]]:
    files = [(path.name, path.read_bytes()) for path in batch]
    try:
        return client.upload_images(project_id, files, tags=[tag], split=split)["results"]
    except ServiceError as exc:
        if exc.status is None or exc.status >= 500:
            raise
        # Every file of the batch was refused: the service said why in one message.
        return [{"filename": path.name, "status": "rejected", "error": str(exc)} for path in batch]
