"""A version's lineage as the API answers it: what the trainer recorded, and how its data
differs from its parent version's (images added, removed, relabeled)."""

from __future__ import annotations

from typing import Any

from visiondock.errors import NotFound

from .catalog import ModelCatalog


def _images(lineage: dict[str, Any]) -> dict[str, int]:
    return {image["id"]: image["label_revision"] for image in lineage.get("dataset", {}).get("images", [])}


def changes_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """How `after`'s data and parameters differ from `before`'s."""
    mine, theirs = _images(after), _images(before)
    params_before, params_after = before.get("params", {}), after.get("params", {})
    return {
        "same_data": after["dataset"]["content_hash"] == before["dataset"]["content_hash"],
        "images_added": len(mine.keys() - theirs.keys()),
        "images_removed": len(theirs.keys() - mine.keys()),
        "images_relabeled": sum(1 for i in mine.keys() & theirs.keys() if mine[i] != theirs[i]),
        "params_changed": sorted(k for k in params_before.keys() | params_after.keys()
                                 if params_before.get(k) != params_after.get(k)),
    }


def lineage_of(catalog: ModelCatalog, model: str, version: int) -> dict[str, Any]:
    found = catalog.get_version(model, version)
    lineage = found.get("lineage") or {}
    if not lineage:
        raise NotFound(f"model {model!r} version {version} was registered without lineage (by a trainer older "
                       f"than lineage records, or by hand)", code="no_lineage")
    answer: dict[str, Any] = {"model": model, "version": version, "created_at": found["created_at"],
                              "run_id": found.get("run_id"), **lineage, "changes_from_parent": None}
    parent = lineage.get("parent_version")
    if parent is not None:
        try:
            parent_lineage = catalog.get_version(model, int(parent)).get("lineage") or {}
        except NotFound:
            parent_lineage = {}
        if parent_lineage:
            answer["changes_from_parent"] = changes_between(parent_lineage, lineage)
    return answer
