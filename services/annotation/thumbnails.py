"""Thumbnails of project images for the labeling app's grid, made once and kept in the BlobStore.

An image's id is the SHA-256 of its bytes, so its thumbnail never goes stale: it is
made on first request (JPEG, longest side `THUMBNAIL_SIZE`, EXIF orientation applied)
and stored at `thumbnails/<project>/<image id>.jpg`; later requests read it back.
"""

from __future__ import annotations

import io

from PIL import Image

from visiondock.blob_keys import image_blob_key, thumbnail_blob_key
from visiondock.images import decode_rgb
from visiondock.storage import BlobNotFoundError, BlobStore

from .images import ImageLibrary

THUMBNAIL_SIZE = 256
THUMBNAIL_QUALITY = 80


def make_thumbnail(data: bytes, size: int = THUMBNAIL_SIZE) -> bytes:
    # Draft mode lets libjpeg decode a camera photo at 1/2..1/8 scale: the thumbnail costs a fraction.
    image = decode_rgb(data, draft_size=(size, size))
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return buffer.getvalue()


class Thumbnails:
    def __init__(self, blobs: BlobStore, library: ImageLibrary) -> None:
        self.blobs = blobs
        self.library = library

    def get(self, project_id: str, image_id: str) -> bytes:
        self.library.get(project_id, image_id)  # 404 for an unknown project or image
        key = thumbnail_blob_key(project_id, image_id)
        try:
            return self.blobs.get(key)
        except BlobNotFoundError:
            pass
        thumbnail = make_thumbnail(self.blobs.get(image_blob_key(project_id, image_id)))
        self.blobs.put(key, thumbnail, content_type="image/jpeg")
        return thumbnail
