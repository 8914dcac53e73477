"""Each image's classifier input: the decoded image, or the crop of its largest face (face preset).

Classification images are decoded as the scoring service decodes them (JPEG draft
mode down to the preprocessing size); face images at full size, since the crop is a
small part of them. Face boxes are cached per image and detector settings, so a
retraining looks for faces in new images only.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from visiondock.faces import crop_face, detector_card, find_largest_face
from visiondock.preprocess import PreprocessSpec

from .data import ImageLoader, ImageRecord
from .features import FaceBoxCache

FACE_DETECT_THREADS = 2

Box = tuple[int, int, int, int]


class ImageInputs:
    def __init__(self, loader: ImageLoader, spec: PreprocessSpec, *, cache_dir: Path, face_margin: float | None,
                 progress: bool) -> None:
        """`face_margin` None: whole images; else the largest face, its box widened by that margin."""
        self.loader = loader
        self.progress = progress
        self.face = face_margin is not None
        self.margin = face_margin if face_margin is not None else 0.0
        self.draft = None if self.face else spec.draft_size
        self.box_cache = FaceBoxCache(cache_dir, detector_card(self.margin)) if self.face else None
        self.boxes: dict[str, Box | None] = {}
        self.inputs: dict[str, Image.Image] = {}

    def find_faces(self, records: Sequence[ImageRecord]) -> None:
        """Know each record's face box: from the cache, or by downloading and looking."""
        assert self.box_cache is not None
        unknown = []
        for record in records:
            known, box = self.box_cache.get(record.id)
            if known:
                self.boxes[record.id] = box
            else:
                unknown.append(record)
        if not unknown:
            return
        images = self.loader.load(unknown, draft_size=None, desc="download images")

        def look(record: ImageRecord) -> tuple[str, Box | None]:
            return record.id, find_largest_face(images[record.id], margin=self.margin)

        present = [r for r in unknown if r.id in images]
        with ThreadPoolExecutor(FACE_DETECT_THREADS) as pool:
            for image_id, box in tqdm(pool.map(look, present), total=len(present), desc="find faces", unit="img",
                                      disable=not self.progress):
                self.boxes[image_id] = box
                self.box_cache.put(image_id, box)
                if box is not None:
                    self.inputs[image_id] = crop_face(images[image_id], box)

    def has_input(self, record: ImageRecord) -> bool:
        return not self.face or self.boxes.get(record.id) is not None

    def get(self, records: Sequence[ImageRecord], desc: str = "download images") -> list[Image.Image | None]:
        """The input image of each record (None where it could not be read)."""
        missing = [r for r in records if r.id not in self.inputs and self.has_input(r)]
        if missing:
            images = self.loader.load(missing, draft_size=self.draft, desc=desc)
            for record in missing:
                if record.id in images:
                    image = images[record.id]
                    box = self.boxes.get(record.id)
                    self.inputs[record.id] = crop_face(image, box) if box is not None else image
        return [self.inputs.get(r.id) for r in records]

    def present(self, records: Sequence[ImageRecord], desc: str = "download images") -> list[Image.Image]:
        """The inputs of the records that have one, in order."""
        return [image for image in self.get(records, desc) if image is not None]
