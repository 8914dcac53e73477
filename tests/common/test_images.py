"""What counts as an acceptable image, and how it is turned into upright RGB."""

from __future__ import annotations

import io
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from visiondock.images import InvalidImageError, decode_rgb, inspect_image
from visiondock.web import http_status


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "GIF", "WEBP"])
def test_accepted_formats_decode_to_rgb(fmt: str) -> None:
    data = encode(Image.new("RGB", (40, 30), (250, 0, 0)), fmt)
    facts = inspect_image(data)
    assert (facts.width, facts.height) == (40, 30)
    assert facts.content_type.startswith("image/")
    image = decode_rgb(data)
    assert image.mode == "RGB" and image.size == (40, 30)


def test_other_formats_are_refused_with_415() -> None:
    data = encode(Image.new("RGB", (8, 8)), "TIFF")
    with pytest.raises(InvalidImageError) as refused:
        inspect_image(data)
    assert http_status(refused.value) == 415
    assert "TIFF" in str(refused.value)


@pytest.mark.parametrize("data", [b"", b"hello, world", b"%PDF-1.4 not an image"])
def test_non_images_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidImageError) as refused:
        inspect_image(data)
    assert http_status(refused.value) in (400, 415)


@pytest.mark.parametrize("keep", [0.9, 0.5, 0.1])
def test_truncated_jpeg_is_refused(keep: float) -> None:
    data = encode(Image.effect_noise((200, 150), 60).convert("RGB"), "JPEG", quality=90)
    with pytest.raises(InvalidImageError) as refused:
        inspect_image(data[: int(len(data) * keep)])
    assert http_status(refused.value) == 400
    assert "truncated or corrupt" in str(refused.value)


def test_too_many_pixels_is_refused_before_decoding() -> None:
    data = encode(Image.new("RGB", (400, 300)), "PNG")
    with pytest.raises(InvalidImageError) as refused:
        decode_rgb(data, max_pixels=100_000)
    assert http_status(refused.value) == 413
    assert "pixels" in str(refused.value)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (60, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 10, 20))  # white strip on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    upright = decode_rgb(encode(image, "JPEG", exif=exif.tobytes(), quality=95))
    assert upright.size == (20, 60)
    # After a clockwise turn the left strip is at the top.
    assert upright.getpixel((10, 2))[0] > 200 and upright.getpixel((10, 57))[0] < 60
    assert (inspect_image(encode(image, "JPEG", exif=exif.tobytes())).width) == 20


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "LA"])
def test_modes_are_converted_to_rgb(mode: str) -> None:
    image = Image.new(mode, (16, 16))
    fmt = "JPEG" if mode in ("L", "CMYK") else "PNG"
    assert decode_rgb(encode(image, fmt)).mode == "RGB"


def test_threads_refuse_bombs_without_touching_the_warning_filters() -> None:
    # 100 million pixels (a 12 KB PNG): over our limit and over Pillow's own warning threshold.
    bomb = encode(Image.new("1", (10_000, 10_000)), "PNG")
    photo = encode(Image.new("RGB", (64, 48), (0, 128, 0)), "JPEG")
    filters = list(warnings.filters)

    def decode_both(_: int) -> int:
        refused = 0
        for _ in range(150):
            assert decode_rgb(photo).size == (64, 48)
            try:
                decode_rgb(bomb)
            except InvalidImageError as exc:
                refused += http_status(exc) == 413 and "10000x10000" in str(exc)
        return refused

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(decode_both, range(4))) == [150] * 4
        assert not [w for w in shown if issubclass(w.category, Image.DecompressionBombWarning)]
    # Decoding threads never rewrite the process-wide filters (catch_warnings is not thread-safe).
    assert warnings.filters == filters


def test_transparent_pixels_become_white() -> None:
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert decode_rgb(encode(image, "PNG")).getpixel((1, 1)) == (255, 255, 255)


def test_gif_gives_its_first_frame() -> None:
    frames = [Image.new("P", (10, 10), i) for i in (1, 2)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    assert decode_rgb(buffer.getvalue()).size == (10, 10)


def test_jpeg_draft_mode_decodes_at_reduced_size() -> None:
    data = encode(Image.new("RGB", (2000, 1600), (10, 200, 10)), "JPEG")
    small = decode_rgb(data, draft_size=(256, 256))
    assert 256 <= min(small.size) < 1600
    assert decode_rgb(data).size == (2000, 1600)


def test_sha256_identifies_the_bytes() -> None:
    data = encode(Image.new("RGB", (8, 8)), "PNG")
    assert inspect_image(data).sha256 == inspect_image(data).sha256
    assert inspect_image(data).sha256 != inspect_image(encode(Image.new("RGB", (8, 9)), "PNG")).sha256


def test_pillow_opens_only_the_formats_we_accept(monkeypatch: pytest.MonkeyPatch) -> None:
    # No other plugin of Pillow's ever parses a stranger's bytes: a TIFF is refused unread.
    from PIL import TiffImagePlugin

    opened: list[str] = []
    original = TiffImagePlugin.TiffImageFile._open

    def recording(self: TiffImagePlugin.TiffImageFile) -> None:
        opened.append("tiff")
        original(self)

    monkeypatch.setattr(TiffImagePlugin.TiffImageFile, "_open", recording)
    with pytest.raises(InvalidImageError, match="TIFF is not accepted"):
        inspect_image(encode(Image.new("RGB", (8, 8)), "TIFF"))
    assert opened == []


def test_full_decodes_wait_for_one_of_a_few_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from PIL import ImageFile

    from visiondock import images

    running = most = 0
    lock = threading.Lock()
    original = ImageFile.ImageFile.load

    def counted(self: ImageFile.ImageFile) -> object:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)  # long enough for the other threads to pile up behind
        try:
            return original(self)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(ImageFile.ImageFile, "load", counted)
    monkeypatch.setattr(images, "_decode_slots", images._decode_slots)  # restored after the test
    images.limit_concurrent_decodes(2)
    data = encode(Image.new("RGB", (64, 48), (10, 200, 10)), "PNG")
    with ThreadPoolExecutor(8) as pool:
        decoded = list(pool.map(lambda _: decode_rgb(data).size, range(16)))
    assert decoded == [(64, 48)] * 16
    assert most == 2


def test_a_pixel_budget_is_shared_by_the_images_of_a_request() -> None:
    from visiondock.images import ImageTooLargeError, PixelBudget, image_pixels

    data = encode(Image.new("RGB", (40, 30)), "PNG")
    assert image_pixels(data) == 1200
    budget = PixelBudget(3000)
    budget.charge(image_pixels(data))
    budget.charge(image_pixels(data))
    with pytest.raises(ImageTooLargeError, match="more than 3,000 pixels together") as refused:
        budget.charge(image_pixels(data))
    assert http_status(refused.value) == 413
