"""Which file of a registry version to serve: `VISIONDOCK_SCORING_VARIANT` (auto, fp32, int8,
fp16) and, for `auto`, the timing trial on this device.

`auto` serves the variant made for the kind of device the sessions run on (INT8 on a
CPU, fp16 on a GPU: `Device`, from the providers the sessions actually got) when the
version has one and it runs faster here than fp32. A variant is faster on most devices,
but not on all: ONNX Runtime has run EfficientNet-Lite0's INT8 file slower than fp32 on
one CPU and much faster on another (`make bench-variants` prints both on the machine it
runs on). So each pair of files is
timed once, one after the other (never both in memory), on a batch of the size it would
be served in, and the answer is kept for the life of the process; the trial's session of
the winner is the one served.

The policy opens files through the function it is given (which fetches them through the
artifact cache and loads them); it reads no registry and no disk itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from visiondock.vocabulary import AUTO, FP16, FP32, INT8

from .model import Device, LoadedModel

log = logging.getLogger(__name__)
# How notes and logs name a variant.
_SPOKEN = {INT8: "INT8", FP16: "fp16"}
# Opens one file of the version: (variant, its artifact document) → a loaded session.
OpenFile = Callable[[str, dict[str, Any]], LoadedModel]
# Images per batch a model of a variant is served in: (variant, on a GPU) → size.
BatchSize = Callable[[str, bool], int]


@dataclass
class VariantChoice:
    """The variant to serve, its artifact document, the session when choosing it loaded it, and a
    note for the status when the variant asked for is not the one served."""

    variant: str
    artifact: dict[str, Any]
    session: LoadedModel | None = None
    note: str | None = None


class VariantPolicy:
    def __init__(self, wanted: str, *, device: Device, batch_size: BatchSize) -> None:
        self.wanted = wanted
        self.device = device
        self.batch_size = batch_size
        # (fp32 sha256, variant sha256) → the variant auto serves here, and why not the other
        self._trials: dict[tuple[str, str], tuple[str, str | None]] = {}

    def choose(self, version_doc: dict[str, Any], open_file: OpenFile) -> VariantChoice:
        fp32 = version_doc["artifact"]
        variants = version_doc.get("variants") or {}
        if self.wanted == FP32:
            return VariantChoice(FP32, fp32)
        if self.wanted != AUTO:
            if self.wanted in variants:
                return VariantChoice(self.wanted, variants[self.wanted])
            note: str | None = f"version {version_doc['version']} has no {self.wanted!r} variant; serving the fp32 file"
            return VariantChoice(FP32, fp32, note=note)
        if not variants:
            return VariantChoice(FP32, fp32)
        # Which variant was made for this device depends on where sessions run: a first session says.
        fp32_session = None if self.device.known else open_file(FP32, fp32)
        candidate = FP16 if self.device.gpu else INT8
        variant = variants.get(candidate)
        if not variant:
            return VariantChoice(FP32, fp32, session=fp32_session)
        key = (fp32["sha256"], variant["sha256"])
        winner = None
        if key not in self._trials:
            winner = self._time(version_doc, candidate, variant, open_file, fp32_session)
        chosen, note = self._trials[key]
        if chosen == candidate:
            return VariantChoice(candidate, variant, session=winner)
        return VariantChoice(FP32, fp32, note=note)

    def _time(self, version_doc: dict[str, Any], candidate: str, variant: dict[str, Any], open_file: OpenFile,
              fp32_session: LoadedModel | None) -> LoadedModel | None:
        """Time fp32 and `candidate`, remember which is faster; the candidate's session when it won."""
        fp32 = version_doc["artifact"]
        version = int(version_doc["version"])
        gpu = self.device.gpu
        device = "GPU" if gpu else "CPU"
        seconds: dict[str, float] = {}
        trial = fp32_session or open_file(FP32, fp32)
        seconds[FP32] = trial.seconds_per_image(batch=self.batch_size(FP32, gpu))
        del trial, fp32_session  # the fp32 session goes before the other one loads
        trial = open_file(candidate, variant)
        seconds[candidate] = trial.seconds_per_image(batch=self.batch_size(candidate, gpu))
        timed = f"{_SPOKEN[candidate]} {1000 * seconds[candidate]:.3g} ms an image, fp32 {1000 * seconds[FP32]:.3g} ms"
        key = (fp32["sha256"], variant["sha256"])
        if seconds[candidate] < seconds[FP32]:
            self._trials[key] = (candidate, None)
        else:
            self._trials[key] = (FP32, f"version {version}'s {_SPOKEN[candidate]} variant is not faster on this "
                                       f"{device} ({timed}); serving the fp32 file")
        log.info("%s version %d on this %s: %s; serving %s", version_doc.get("model", "the model"), version, device,
                 timed, self._trials[key][0])
        return trial if self._trials[key][0] == candidate else None
