"""Small generated data sets for the trainer's tests: shapes, multi-shape scenes, faces, boxes.

The face images are real faces (the LFW subset shipped in scikit-image), scaled up and
placed on generated backgrounds with small changes of pose, size and light: one LFW
face is one person. OpenCV's detector finds them as it would in photos, so the face
tests exercise the real detector, not drawings made to please it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from cli.synthetic import render


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def shape_images(shapes: Sequence[str], per_class: int, *, seed: int, size: int = 80) -> list[tuple[str, bytes]]:
    """(label, JPEG) pairs: one shape per image (cli.synthetic)."""
    rng = np.random.default_rng(seed)
    return [(shape, jpeg(render(shape, rng, size))) for _ in range(per_class) for shape in shapes]


def colour_images(colours: dict[str, tuple[int, int, int]], per_class: int, *, seed: int,
                  size: int = 64) -> list[tuple[str, bytes]]:
    """(label, JPEG): a noisy field of one colour per class: easy to tell apart, for INT8 agreement."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(per_class):
        for name, colour in colours.items():
            pixels = np.clip(np.array(colour, np.float32) + rng.normal(0, 25, (size, size, 3)), 0, 255)
            out.append((name, jpeg(Image.fromarray(pixels.astype(np.uint8)))))
    return out


def scene(tags: Sequence[str], rng: np.random.Generator, size: int = 96) -> Image.Image:
    """A noisy background with one distinct marker per tag, each in its own quadrant."""
    background = np.clip(rng.normal(128, 30, (size, size, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    quadrants = rng.permutation(4)
    half = size // 2
    for tag, quadrant in zip(tags, quadrants, strict=False):
        x0, y0 = (quadrant % 2) * half, (quadrant // 2) * half
        r = half * rng.uniform(0.3, 0.42)
        cx, cy = x0 + half / 2 + rng.uniform(-3, 3), y0 + half / 2 + rng.uniform(-3, 3)
        if tag == "sun":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(250, 220, 0))
        elif tag == "leaf":
            draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=(20, 170, 40))
        elif tag == "sea":
            draw.rectangle((cx - r, cy - r * 0.6, cx + r, cy + r * 0.6), fill=(20, 60, 220))
        else:
            raise ValueError(tag)
    return image


def multilabel_images(count: int, *, seed: int) -> list[tuple[list[str], bytes]]:
    """(tags, JPEG): scenes showing any subset of sun, leaf, sea (some none)."""
    rng = np.random.default_rng(seed)
    names = ["sun", "leaf", "sea"]
    out = []
    for i in range(count):
        chosen = [name for name in names if rng.random() < 0.45] if i % 7 else []
        out.append((chosen, jpeg(scene(chosen, rng))))
    return out


def lfw_faces() -> np.ndarray:
    """The 100 face crops (25x25 grayscale, 0..1) of scikit-image's LFW subset."""
    from skimage.data import lfw_subset

    return lfw_subset()[:100]


def face_photo(face: np.ndarray, rng: np.random.Generator, size: int = 200) -> Image.Image:
    """One 'photo' of a person: their face scaled, turned a little, lit differently, on a background."""
    crop = Image.fromarray((face * 255).astype(np.uint8)).convert("RGB")
    side = int(rng.integers(90, 120))
    crop = crop.resize((side, side), Image.Resampling.BICUBIC)
    crop = crop.rotate(float(rng.uniform(-6, 6)), resample=Image.Resampling.BICUBIC, expand=False, fillcolor=None)
    crop = ImageEnhance.Brightness(crop).enhance(float(rng.uniform(0.8, 1.2)))
    tint = np.array(crop, np.float32) * np.array([1.0, rng.uniform(0.85, 1.0), rng.uniform(0.7, 0.95)])
    crop = Image.fromarray(np.clip(tint, 0, 255).astype(np.uint8))
    # Background: the face's border colour with noise, so the face sits in a plausible frame.
    edge = np.array(crop)[[0, -1]].reshape(-1, 3).mean(axis=0)
    canvas = np.clip(edge + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.uint8)
    photo = Image.fromarray(canvas)
    left = int(rng.integers(10, size - side - 10))
    top = int(rng.integers(10, size - side - 10))
    photo.paste(crop, (left, top))
    return photo.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 0.6))))


def face_images(people: int, per_person: int, *, seed: int, first: int = 0) -> list[tuple[str, bytes]]:
    """(person-N, JPEG): `per_person` photos of each of `people` LFW faces from index `first`."""
    faces = lfw_faces()
    rng = np.random.default_rng(seed)
    return [(f"person-{first + p}", jpeg(face_photo(faces[first + p], rng)))
            for _ in range(per_person) for p in range(people)]


def box_scene(rng: np.random.Generator, size: int = 128) -> tuple[Image.Image, list[dict]]:
    """A background with 0-2 coloured objects; regions as the annotation API takes them."""
    background = np.clip(rng.normal(110, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    regions = []
    for _ in range(int(rng.integers(0, 3))):
        tag = "disc" if rng.random() < 0.5 else "block"
        w = h = float(rng.uniform(0.2, 0.35)) * size
        x = float(rng.uniform(0, size - w))
        y = float(rng.uniform(0, size - h))
        if tag == "disc":
            draw.ellipse((x, y, x + w, y + h), fill=(240, 60, 40))
        else:
            draw.rectangle((x, y, x + w, y + h), fill=(40, 80, 240))
        regions.append({"tag": tag, "left": x / size, "top": y / size, "width": w / size, "height": h / size})
    return image, regions
