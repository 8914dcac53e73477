"""Images out of HTTP requests: a multipart file, the raw body, or JSON with base64.

Bodies are read with a byte limit as they arrive, so an oversized upload is refused
after `limit` bytes whatever its Content-Length says. A JSON batch is counted before its
images are decoded from base64, and the images of a batch share one pixel budget
(VISIONDOCK_MAX_REQUEST_PIXELS, checked from their headers before any is decoded). Everything a
caller can get wrong is a `visiondock.errors` kind with a message saying what to send instead.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from starlette.requests import Request

from visiondock.errors import DomainError, InvalidInput, TooLarge, UnsupportedMediaType
from visiondock.images import PixelBudget, image_pixels
from visiondock.limits import loads_bounded

from .multipart import file_parts

# Multipart and JSON framing around the image bytes.
ENVELOPE_ALLOWANCE = 64 * 1024
# Multipart bodies up to this size are parsed on the event loop.
MULTIPART_ON_LOOP_BYTES = 1024 * 1024
JSON_TYPES = ("application/json", "text/json")


@dataclass
class NamedImage:
    """One image of a batch request: its bytes, or why it could not be read."""

    name: str
    data: bytes | None = None
    error: DomainError | None = None


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) anything longer than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body is {int(declared):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body is over the {limit:,}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_base64(text: Any, field: str) -> bytes:
    """Base64 (standard or URL-safe, or a `data:` URL) → bytes; 400 when it is not."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"{field} must be a non-empty base64 string")
    text = text.strip()
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if ";base64" not in header:
            raise InvalidInput(f"{field} is a data URL without ';base64'")
    text = "".join(text.split())
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{field} is not valid base64") from None


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _parse_json(body: bytes) -> Any:
    return loads_bounded(body)


T = TypeVar("T")


class Offload(Protocol):
    """Runs `function(*args)` somewhere (the service's decode threads) and answers what it returns."""

    def __call__(self, function: Callable[..., T], /, *args: Any) -> Awaitable[T]: ...


async def _inline(function: Callable[..., T], /, *args: Any) -> T:
    return function(*args)


def _json_image(body: bytes) -> bytes:
    payload = _parse_json(body)
    if not isinstance(payload, dict) or "image_base64" not in payload:
        raise InvalidInput('JSON bodies carry the image as {"image_base64": "<base64>"}')
    return decode_base64(payload["image_base64"], "image_base64")


async def image_from_request(request: Request, *, max_bytes: int, offload: Offload = _inline) -> bytes:
    """The one image of a request, however it was sent. `offload` runs JSON and base64 decoding, and
    the parsing of a big multipart body, somewhere other than the event loop."""
    kind = _content_type(request)
    body = await read_body(request, max_bytes * 4 // 3 + ENVELOPE_ALLOWANCE if kind in JSON_TYPES
                           else max_bytes + ENVELOPE_ALLOWANCE)
    if kind == "multipart/form-data":
        content_type = request.headers.get("content-type", "")
        # A photo as phones and cameras send them is parsed on the loop, cheaper than a hop to a thread;
        # a bigger body would hold the loop up.
        files = (file_parts(content_type, body, max_files=1) if len(body) <= MULTIPART_ON_LOOP_BYTES
                 else await offload(functools.partial(file_parts, max_files=1), content_type, body))
        chosen = next((part for part in files if part.field == "file"), files[0] if files else None)
        if chosen is None:
            raise InvalidInput("multipart body has no file: send the image in a field named 'file'")
        data = chosen.data
    elif kind in JSON_TYPES:
        data = await offload(_json_image, body)
    else:
        data = body
    if len(data) > max_bytes:
        raise TooLarge(f"image is over the {max_bytes:,}-byte limit")
    if not data:
        raise InvalidInput("no image: send it as the request body, in a multipart field named 'file', or as "
                         'JSON {"image_base64": ...}')
    return data


def _json_images(body: bytes, max_bytes: int, max_images: int | None = None) -> list[NamedImage]:
    payload = _parse_json(body)
    entries = payload.get("images") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        raise InvalidInput('JSON batch bodies are {"images": [{"image_base64": "<base64>"}, ...]}')
    if max_images is not None and len(entries) > max_images:  # counted before any image is decoded
        raise InvalidInput(f"at most {max_images} images per batch; got {len(entries)}")
    found = []
    for index, entry in enumerate(entries):
        name = f"images[{index}]"
        raw = entry.get("image_base64") if isinstance(entry, dict) else entry
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            name = entry["name"][:200]
        try:
            found.append(_checked(NamedImage(name, decode_base64(raw, f"{name}.image_base64")), max_bytes))
        except DomainError as exc:
            found.append(NamedImage(name, error=exc))
    return found


async def images_from_batch_request(request: Request, *, max_bytes: int, max_request_bytes: int,
                                    max_images: int, offload: Offload = _inline) -> list[NamedImage]:
    """Several images: multipart files (any field name, usually `files`) or JSON
    `{"images": [{"image_base64": ..., "name": ...} | "<base64>", ...]}`."""
    kind = _content_type(request)
    body = await read_body(request, max_request_bytes)
    found: list[NamedImage] = []
    if kind == "multipart/form-data":
        parts = await offload(functools.partial(file_parts, max_files=max_images),
                              request.headers.get("content-type", ""), body)
        for part in parts:
            found.append(_checked(NamedImage(part.filename or part.field, part.data), max_bytes))
    elif kind in JSON_TYPES:
        found = await offload(_json_images, body, max_bytes, max_images)
    else:
        raise UnsupportedMediaType("send a batch as multipart/form-data files or as JSON")
    if not found:
        raise InvalidInput("the batch holds no images")
    if len(found) > max_images:
        raise InvalidInput(f"at most {max_images} images per batch; got {len(found)}")
    budget = PixelBudget(request.app.state.settings.max_request_pixels)
    return await offload(_within_budget, found, budget)


def _within_budget(images: list[NamedImage], budget: PixelBudget) -> list[NamedImage]:
    """The batch, with each image past the request's pixel budget (or whose header is bad) failed on its
    own, before any is decoded."""
    checked = []
    for image in images:
        if image.data is not None:
            try:
                budget.charge(image_pixels(image.data))
            except DomainError as exc:
                image = NamedImage(image.name, error=exc)
        checked.append(image)
    return checked


def _checked(image: NamedImage, max_bytes: int) -> NamedImage:
    if image.data is not None and len(image.data) > max_bytes:
        return NamedImage(image.name, error=TooLarge(f"image is over the {max_bytes:,}-byte limit"))
    if not image.data:
        return NamedImage(image.name, error=InvalidInput("the image is empty"))
    return image
