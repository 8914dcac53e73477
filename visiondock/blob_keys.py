"""Where each kind of blob lives in the BlobStore, spelled once.

One function builds each kind of key, and where `visiondock fsck` must tell a blob's owner from its
key, one function reads it back; whoever writes, reads, lists, deletes or checks these blobs
(the annotation and registry services, the CLI, the Python clients) uses them:

- `images/<project>/<image id>`: an image's bytes as uploaded (the id is their SHA-256);
- `thumbnails/<project>/<image id>.jpg`: its thumbnail, made on first request;
- `review/<project>/<item id>`: a captured image waiting in the review queue (`visiondock.captures`);
- `models/<model>/<version>/model.onnx`, `.../model.<variant>.onnx` and `.../metadata.json`: a model
  version's files;
- `captures/<model>/...`: second copies of captured images that older scoring services wrote
  (strays now: `visiondock.captures`).
"""

from __future__ import annotations

IMAGE_PREFIX = "images/"
THUMBNAIL_PREFIX = "thumbnails/"
REVIEW_PREFIX = "review/"
MODEL_PREFIX = "models/"
LEGACY_CAPTURE_PREFIX = "captures/"
# Every folder that holds a project's bytes (a project's deletion empties each).
PROJECT_PREFIXES = (IMAGE_PREFIX, THUMBNAIL_PREFIX, REVIEW_PREFIX)

# A model version's files: the fp32 model, and one file per variant (visiondock.vocabulary.VARIANTS).
MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
LABEL_ISSUES_FILE = "label-issues.json"


def _parts(key: str, prefix: str, count: int) -> list[str] | None:
    parts = key.split("/")
    return parts if len(parts) == count and f"{parts[0]}/" == prefix else None


# -- a project's images ------------------------------------------------------------------
def image_blob_key(project_id: str, image_id: str) -> str:
    return f"{IMAGE_PREFIX}{project_id}/{image_id}"


def image_of_blob(key: str) -> tuple[str, str] | None:
    """The image (project, id) whose bytes are at `key`; None for a key outside the layout."""
    parts = _parts(key, IMAGE_PREFIX, 3)
    return (parts[1], parts[2]) if parts else None


def thumbnail_blob_key(project_id: str, image_id: str) -> str:
    return f"{THUMBNAIL_PREFIX}{project_id}/{image_id}.jpg"


def project_folder(prefix: str, project_id: str) -> str:
    """The folder under `prefix` (one of PROJECT_PREFIXES) that holds a project's blobs."""
    return f"{prefix}{project_id}/"


# -- captured images in the review queue ---------------------------------------------------
def review_blob_key(project_id: str, item_id: str) -> str:
    """Where a captured image is kept: the bytes of its review item."""
    return f"{REVIEW_PREFIX}{project_id}/{item_id}"


def review_item_of_blob(key: str) -> tuple[str, str] | None:
    """The review item (project, id) a blob under REVIEW_PREFIX belongs to."""
    parts = _parts(key, REVIEW_PREFIX, 3)
    return (parts[1], parts[2]) if parts else None


def legacy_capture_of_blob(key: str) -> tuple[str, str] | None:
    """(model, capture id) of a second copy under LEGACY_CAPTURE_PREFIX."""
    parts = _parts(key, LEGACY_CAPTURE_PREFIX, 3)
    return (parts[1], parts[2]) if parts else None


# -- model versions ------------------------------------------------------------------------
def variant_filename(variant: str | None) -> str:
    """The file name of a version's fp32 model (None) or of a variant's (`model.int8.onnx`)."""
    return MODEL_FILE if variant is None else f"model.{variant}.onnx"


def artifact_key(model: str, version: int, variant: str | None = None) -> str:
    """Where a version's model file (or a variant's) is kept."""
    return f"{MODEL_PREFIX}{model}/{version}/{variant_filename(variant)}"


def metadata_key(model: str, version: int) -> str:
    """Where a version's metadata is kept beside its files."""
    return f"{MODEL_PREFIX}{model}/{version}/{METADATA_FILE}"


def label_issues_key(model: str, version: int) -> str:
    """Where the trainer's list of a version's likely label errors is kept beside its files."""
    return f"{MODEL_PREFIX}{model}/{version}/{LABEL_ISSUES_FILE}"


def version_of_blob(key: str) -> tuple[str, str] | None:
    """(model, version) of a file under MODEL_PREFIX."""
    parts = _parts(key, MODEL_PREFIX, 4)
    return (parts[1], parts[2]) if parts else None
