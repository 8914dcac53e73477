"""Image decoding and validation shared by the annotation, scoring and trainer code.

One place decides what an acceptable image is, so an image the annotation service
took is one the trainer and the scoring service can read.

Decoding is bounded: Pillow only ever opens the formats we accept (`formats=`), the pixel count
is checked from the header before any pixel is decoded, at most `max_concurrent_decodes` full
decodes run at once in a process (VISIONDOCK_MAX_CONCURRENT_DECODES; a 200 KB PNG can decode to
hundreds of megabytes), and a request of many images shares one `PixelBudget`.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from visiondock.errors import InvalidContent, InvalidInput, TooLarge, UnsupportedMediaType

# Formats we accept; Pillow can open more, but these are the ones cameras and
# browsers produce and every backend of ours decodes the same way.
ALLOWED_FORMATS: dict[str, str] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "BMP": "image/bmp",
    "GIF": "image/gif",
    "WEBP": "image/webp",
}
DEFAULT_MAX_PIXELS = 50_000_000  # about 8000 x 6000; bigger is a decompression bomb or a mistake
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
# Longest side over shortest side. Phone panoramas stay under about 10:1; a 1x100000 strip
# passes any pixel limit yet explodes when its short side is scaled up to a model's input.
MAX_ASPECT_RATIO = 20

# Full decodes in progress at once in this process, unless a service or the trainer sets its own.
DEFAULT_CONCURRENT_DECODES = 4
_decode_slots = threading.BoundedSemaphore(DEFAULT_CONCURRENT_DECODES)


def limit_concurrent_decodes(count: int) -> None:
    """At most `count` full decodes at once from now on (decodes already waiting keep the old limit)."""
    global _decode_slots
    _decode_slots = threading.BoundedSemaphore(max(1, count))


@contextmanager
def _decode_slot() -> Iterator[None]:
    slots = _decode_slots  # released to the semaphore it was taken from, whatever happens meanwhile
    with slots:
        yield


# `_open` checks each caller's own pixel limit from the header, before a pixel is decoded.
# Pillow's process-wide check would warn (or refuse) at its own threshold instead, and
# turning that warning into an error per call means rewriting the process's warning filters
# from every decoding thread at once, which is not thread-safe. This module is where the
# platform decodes images, so its limit is the one that applies.
Image.MAX_IMAGE_PIXELS = None


class InvalidImageError(InvalidInput, ValueError):
    """Bytes that are not an image we accept: empty, truncated or corrupt (the subclasses say
    when it is another format, too large, or of a shape no model can take)."""

    code = "invalid_image"


class UnsupportedImageError(UnsupportedMediaType, InvalidImageError):
    """Not an image, or a format we do not accept."""

    code = "unsupported_media_type"


class ImageTooLargeError(TooLarge, InvalidImageError):
    """More pixels than the limit: a decompression bomb or a mistake."""

    code = "image_too_large"


class ExtremeAspectRatioError(InvalidContent, InvalidImageError):
    """One side more than MAX_ASPECT_RATIO times the other."""

    code = "extreme_aspect_ratio"


@dataclass(frozen=True)
class ImageFacts:
    format: str
    content_type: str
    width: int
    height: int
    sha256: str


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Formats people send that we do not accept, told by their first bytes (only to name them in the refusal).
_OTHER_FORMATS = ((b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"\x00\x00\x01\x00", "ICO"), (b"8BPS", "PSD"),
                  (b"%PDF", "PDF"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"),
                  (b"qoif", "QOI"), (b"DDS ", "DDS"))


@dataclass
class PixelBudget:
    """The pixels the images of one request may hold together (as their headers declare them)."""

    limit: int
    used: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def charge(self, pixels: int) -> None:
        with self._lock:
            if self.used + pixels > self.limit:
                raise ImageTooLargeError(f"the images of this request hold more than {self.limit:,} pixels together; "
                                         "send fewer or smaller images per request")
            self.used += pixels


def image_pixels(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """Width x height from the header, without decoding a pixel; the checks of a full decode's start."""
    width, height = _open(data, max_pixels).size
    return width * height


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise InvalidImageError("the upload is empty; send the image's bytes")
    try:
        # Only our formats' openers look at the bytes: no other Pillow plugin parses a stranger's file.
        image = Image.open(io.BytesIO(data), formats=tuple(ALLOWED_FORMATS))
    except UnidentifiedImageError:
        known = next((name for magic, name in _OTHER_FORMATS if data.startswith(magic)), None)
        if known is not None:
            raise UnsupportedImageError(f"image format {known} is not accepted; use JPEG, PNG, BMP, GIF or WebP") \
                from None
        raise UnsupportedImageError("not an image: expected JPEG, PNG, BMP, GIF or WebP bytes") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # The header itself is cut off or malformed.
        raise InvalidImageError(f"image data is truncated or corrupt ({exc})") from None
    if image.format not in ALLOWED_FORMATS:
        raise UnsupportedImageError(f"image format {image.format} is not accepted; use JPEG, PNG, BMP, GIF or WebP")
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(f"image has too many pixels: {width}x{height} = {width * height:,}; the limit is "
                                 f"{max_pixels:,}")
    if width < 1 or height < 1:
        raise InvalidImageError("image has no pixels")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ExtremeAspectRatioError(f"image is {width}x{height}: one side is more than {MAX_ASPECT_RATIO} times "
                                      "the other; crop it to the part that matters")
    return image


def _load(image: Image.Image) -> None:
    # Pillow only notices a cut-off file when it decodes the pixels.
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageError(f"image data is truncated or corrupt ({exc})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def inspect_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageFacts:
    """Decode fully (so truncation is caught) and describe the image; raises InvalidImageError."""
    image = _open(data, max_pixels)
    fmt = image.format or ""
    with _decode_slot():
        _load(image)
        width, height = ImageOps.exif_transpose(image).size if _has_rotation(image) else image.size
    return ImageFacts(format=fmt, content_type=ALLOWED_FORMATS[fmt], width=width, height=height,
                      sha256=sha256_hex(data))


def _has_rotation(image: Image.Image) -> bool:
    try:
        return bool(image.getexif().get(0x0112, 1) != 1)
    except Exception:  # a broken EXIF block is not a reason to refuse the picture
        return False


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image and what the encoded file said about itself."""

    image: Image.Image
    format: str
    # Upright size of the encoded image; `image` is smaller when JPEG draft mode shrank it.
    width: int
    height: int


def decode_rgb(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """An upright RGB image from encoded bytes.

    EXIF orientation is applied; grayscale, palette, RGBA and CMYK become RGB; a GIF
    gives its first frame. With `draft_size`, a JPEG is decoded at a reduced scale no
    smaller than that size (libjpeg's DCT scaling), which is several times faster for
    camera-sized photos that will be shrunk anyway.
    """
    return decode_image(data, max_pixels=max_pixels, draft_size=draft_size).image


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> DecodedImage:
    """`decode_rgb`, keeping the format and the upright size of the full image."""
    image = _open(data, max_pixels)
    fmt = image.format or ""
    width, height = image.size
    if draft_size is not None and image.format == "JPEG":
        image.draft("RGB", draft_size)
    with _decode_slot():
        _load(image)
        if _has_rotation(image):
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # the quarter turns swap width and height
                width, height = height, width
            image = ImageOps.exif_transpose(image)
        return DecodedImage(_to_rgb(image), fmt, width, height)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite transparent pixels onto white, as a viewer would show them.
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
