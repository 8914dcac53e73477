"""The BlobStore interface: named byte objects (images, model artifacts).

Keys are slash-separated paths such as `images/<project>/<sha256>`. Every backend
returns the same plain `BlobInfo` and raises the same errors, so callers never
see a filesystem path or an SDK object.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO

DEFAULT_CONTENT_TYPE = "application/octet-stream"
STREAM_CHUNK_SIZE = 1 << 20

# Letters, digits and a few punctuation marks, slash-separated; a segment never starts
# with "." (no "..", no hidden files) nor is empty. Segments are file names in the local
# backend, which adds ".json" for its metadata: 200 stays under every filesystem's 255.
_KEY_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._=+@-]{0,199}")


class BlobError(Exception):
    """Base class of blob storage errors."""


class BlobNotFoundError(BlobError, KeyError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"blob {self.key!r} does not exist"


class BlobExistsError(BlobError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"blob {self.key!r} already exists"


class InvalidBlobKeyError(BlobError, ValueError):
    pass


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    content_type: str
    etag: str
    last_modified: datetime


def validate_key(key: str) -> str:
    """Refuse keys that could escape a folder or differ between backends."""
    if not key or len(key) > 1024:
        raise InvalidBlobKeyError(f"blob key must be 1 to 1024 characters, got {len(key)}")
    segments = key.split("/")
    for segment in segments:
        if not _KEY_SEGMENT.fullmatch(segment):  # `$` would let a trailing newline through
            raise InvalidBlobKeyError(
                f"invalid blob key {key!r}: use slash-separated segments of 1 to 200 letters, digits"
                " and ._=+@- that do not start with '.'"
            )
    return key


def validate_prefix(prefix: str) -> str:
    if prefix == "":
        return prefix
    # A prefix may end inside a segment ("images/ab") or at a slash ("images/"), and
    # otherwise looks like a key: "/" or "a//" could never match one.
    validate_key(prefix.removesuffix("/"))
    return prefix


class BlobStore(ABC):
    """Byte objects by key. Writes are atomic: a reader sees the old or the new bytes."""

    @abstractmethod
    def put(
        self,
        key: str,
        data: bytes | IO[bytes],
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        overwrite: bool = True,
    ) -> BlobInfo:
        """Store bytes under `key`. With `overwrite=False` an existing key raises BlobExistsError."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """All bytes of a blob; BlobNotFoundError when missing."""

    @abstractmethod
    def stream(self, key: str, chunk_size: int = STREAM_CHUNK_SIZE) -> Iterator[bytes]:
        """The blob's bytes in chunks, for large artifacts. Raises BlobNotFoundError before the
        first chunk when missing."""

    @abstractmethod
    def info(self, key: str) -> BlobInfo:
        """Size, content type and etag of a blob; BlobNotFoundError when missing."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove a blob. Returns False when there was nothing to remove."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Blobs whose key starts with `prefix`, in key order."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections held by the backend."""
