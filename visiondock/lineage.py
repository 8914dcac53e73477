"""A model version's lineage: the data it learned from, the code that trained it, and its parent.

The trainer calls `version_lineage` when it registers a version; the registry stores the
result with the version (`lineage`) and answers it at `GET …/versions/{v}/lineage`.

The dataset snapshot names every image by its id (the SHA-256 of its bytes) and the
revision of its labels, so "the same data" is checkable: its `content_hash` covers each
image's id, label revision, tags, boxes and split, and is equal for two versions exactly
when they learned from the same labeled images.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from visiondock.clients import RegistryClient, ServiceError

PACKAGE = "visiondock"
_ROOT = Path(__file__).resolve().parents[1]


def dataset_snapshot(images: Iterable[Mapping[str, Any]], splits: Mapping[str, Iterable[str]]) -> dict[str, Any]:
    """The snapshot of the labeled images a version used.

    `images`: image records with `id`, `tags`, `regions` and `label_revision`;
    `splits`: the ids each part (train, validation, test) held.
    """
    part_of = {image_id: part for part, ids in splits.items() for image_id in ids}
    entries = []
    for image in images:
        if image["id"] not in part_of:
            continue  # listed but not used (unreadable, or an image the task leaves out)
        entries.append({"id": image["id"], "label_revision": int(image.get("label_revision") or 0),
                        "tags": sorted(image.get("tags") or []), "regions": list(image.get("regions") or []),
                        "split": part_of[image["id"]]})
    entries.sort(key=lambda entry: entry["id"])
    canonical = json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()
    tag_counts = Counter(tag for entry in entries for tag in entry["tags"])
    return {
        "content_hash": f"sha256:{hashlib.sha256(canonical).hexdigest()}",
        "image_count": len(entries),
        "split_counts": dict(Counter(entry["split"] for entry in entries)),
        "tag_counts": dict(sorted(tag_counts.items())),
        "images": [{"id": e["id"], "label_revision": e["label_revision"], "split": e["split"]} for e in entries],
    }


@functools.cache
def code_version() -> dict[str, Any]:
    """The package version, and the git commit when the code runs from a checkout."""
    try:
        package = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        package = None
    commit: str | None = None
    dirty: bool | None = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_ROOT, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip() or None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_ROOT,
                                capture_output=True, text=True, timeout=5, check=True).stdout
        dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass  # not a checkout (an installed wheel, a container image): the package version says it
    return {"package": PACKAGE, "version": package, "git_commit": commit, "git_dirty": dirty}


def version_lineage(*, images: Iterable[Mapping[str, Any]], splits: Mapping[str, Iterable[str]],
                    params: Mapping[str, Any], project_id: str | None,
                    parent_version: int | None) -> dict[str, Any]:
    """What the registry stores as a version's `lineage`."""
    return {
        "project_id": project_id,
        "dataset": dataset_snapshot(images, splits),
        "params": dict(params),
        "code": code_version(),
        "parent_version": parent_version,
    }


def parent_version(registry: RegistryClient, model: str, alias: str = "production") -> int | None:
    """The version a new one follows: the one serving `alias`, else the newest registered, else none."""
    try:
        return int(registry.get_json(f"/v1/models/{model}/aliases/{alias}")["version"])
    except ServiceError as exc:
        if not exc.is_not_found:
            raise
    try:
        newest = registry.get_json(f"/v1/models/{model}/versions", params={"limit": 1})["data"]
    except ServiceError as exc:
        if not exc.is_not_found:
            raise
        return None  # the model's first version
    return int(newest[0]["version"]) if newest else None


def training_lineage(registry: RegistryClient, model: str, *, records: Iterable[Any],
                     splits: Mapping[str, Iterable[str]], params: Mapping[str, Any],
                     project_id: str | None) -> dict[str, Any]:
    """The lineage the trainer registers with a version; `records` are its image records (dataclasses)."""
    return version_lineage(images=[dataclasses.asdict(record) for record in records], splits=splits,
                           params=params, project_id=project_id, parent_version=parent_version(registry, model))
