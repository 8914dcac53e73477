"""`folder`: one folder per class, named after its tag: `daisy/1.jpg`, `tulip/7.png`.

Reading: an image's tag is the name of the folder it is in, at any depth (`train/daisy/1.jpg`
is a daisy); images at the top level come in unlabeled. The same photo in two class folders
gets both tags (multilabel). Writing: `<tag>/<image>`, an image with several tags in each of
their folders; the format cannot say "labeled, no tags", so such images are left out.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Sequence

from .base import DatasetFormat, DatasetFormatError, DatasetRead, DatasetSource, ExportImage, Member, Sample


class FolderFormat(DatasetFormat):
    name = "folder"
    summary = "one folder per class, named after its tag"
    carries_boxes = False
    carries_negatives = False
    exports = frozenset({"multiclass", "multilabel"})

    def read(self, source: DatasetSource) -> DatasetRead:
        samples = []
        for path in source.images():
            folder = posixpath.dirname(path)
            samples.append(Sample(path, [posixpath.basename(folder)]) if folder else Sample(path, labeled=False))
        if not any(sample.labeled for sample in samples):
            raise DatasetFormatError("no class folders with images: expected <tag>/<image>.jpg")
        classes = list(dict.fromkeys(tag for sample in samples for tag in sample.tags))
        return DatasetRead(samples, classes)

    def write(self, images: Iterable[ExportImage], *, project_type: str, tags: Sequence[str]) -> Iterator[Member]:
        for image in images:
            for tag in image.tags:
                yield Member(f"{tag}/{image.name}", image.content(), compress=False)
