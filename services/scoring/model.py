"""A loaded model: an ONNX Runtime session, the model card read from the file itself, and
the image → input tensor step that goes with it.

Nothing here imports torch: the scoring image has none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from visiondock.images import DecodedImage, decode_image
from visiondock.modelcard import ModelCard, ModelCardError
from visiondock.preprocess import to_tensor
from visiondock.vocabulary import FACE

from .settings import DEFAULT_MAX_BATCH_SIZE, ScoringSettings

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def requested_providers() -> list[str]:
    """What a session asks for: CUDA first where this ONNX Runtime build offers it, then CPU. Offered is
    not obtained: a build whose CUDA libraries do not match the machine's creates the session on the
    CPU (with an error in its log), so whether a model runs on a GPU is `LoadedModel.on_gpu`."""
    offered = set(ort.get_available_providers())
    return [p for p in (CUDA, CPU) if p in offered]


class Device:
    """Whether this process's models run on a GPU: what their sessions actually got
    (`session.get_providers()`); before the first session, what the settings expect
    (`VISIONDOCK_SCORING_REQUIRE_GPU`). Batch runners, ONNX Runtime threads and the variant
    policy size themselves by it."""

    def __init__(self, *, expect_gpu: bool) -> None:
        self.expected = expect_gpu
        self._observed: bool | None = None

    def observe(self, model: LoadedModel) -> None:
        self._observed = model.on_gpu

    @property
    def known(self) -> bool:
        return self._observed is not None

    @property
    def gpu(self) -> bool:
        return self.expected if self._observed is None else self._observed


def session_options(settings: ScoringSettings, *, gpu: bool = False) -> ort.SessionOptions:
    options = ort.SessionOptions()
    # ONNX Runtime's own default is one thread per core of the machine: too many in a pod with a CPU
    # limit, or beside other workers and batch runners.
    options.intra_op_num_threads = settings.resolved_intra_op_threads(gpu=gpu)
    if settings.scoring_inter_op_threads:
        options.inter_op_num_threads = settings.scoring_inter_op_threads
    if not settings.scoring_ort_spinning:
        # Spinning threads would keep both cores busy between batches, starving the decoders.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


@dataclass(frozen=True)
class ModelIdentity:
    """Which registered file a session was built from, and why it is served."""

    name: str
    version: int
    sha256: str
    alias: str  # what answers say in `alias`: the alias that chose it, or `v<N>` when pinned
    variant: str = "fp32"
    project_id: str | None = None
    source: str = "registry"  # registry | cache | file
    # The version's test-set prediction baseline (visiondock.drift), when the registry has one.
    baseline: dict[str, Any] | None = field(default=None, compare=False, hash=False)


@dataclass
class PreparedImage:
    """One image made ready for the model, with what the answer needs to say about it."""

    tensor: np.ndarray | None  # 3 x S x S float32; None when a face model found no face
    width: int  # upright pixels of the original image
    height: int
    format: str
    timings: dict[str, float] = field(default_factory=dict)
    face_box: tuple[int, int, int, int] | None = None  # original pixels


class ModelLoadError(RuntimeError):
    """The file cannot be served: not an ONNX file, or not one the VisionDock trainer exported."""


class LoadedModel:
    def __init__(self, path: Path, identity: ModelIdentity, *, options: ort.SessionOptions,
                 providers: list[str] | None = None, max_batch: int = DEFAULT_MAX_BATCH_SIZE) -> None:
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options,
                                                providers=providers or requested_providers())
            self.card = ModelCard.from_metadata(self.session.get_modelmeta().custom_metadata_map)
        except ModelCardError as exc:
            raise ModelLoadError(str(exc)) from None
        except Exception as exc:  # ONNX Runtime raises its own exception types for bad files
            raise ModelLoadError(f"ONNX Runtime cannot load {path.name}: {exc}") from None
        self.path = path
        self.identity = identity
        self.max_batch = max_batch  # images per batch run (ScoringSettings.resolved_max_batch_size)
        self.loaded_at = time.time()
        inputs = {i.name: i for i in self.session.get_inputs()}
        if self.card.input_name not in inputs:
            raise ModelLoadError(f"the model card names input {self.card.input_name!r}, the graph has "
                                 f"{', '.join(inputs)}")
        outputs = [o.name for o in self.session.get_outputs()]
        missing = [name for name in self.card.output_names if name not in outputs]
        if missing:
            raise ModelLoadError(f"the model card names outputs {missing} the graph lacks (it has {outputs})")
        self.output_names = list(self.card.output_names)
        self.input_shape = [self.card.preprocess.size] * 2
        self._faces: Any = None
        if self.card.task == FACE:
            try:
                from visiondock import faces
            except ImportError as exc:
                raise ModelLoadError(f"face models need visiondock.faces (OpenCV): {exc}") from None
            self._faces = faces

    # -- facts ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def version(self) -> int:
        return self.identity.version

    @property
    def task(self) -> str:
        return self.card.task

    @property
    def provider(self) -> str:
        """The execution provider the session got (not merely asked for)."""
        provider: str = self.session.get_providers()[0]
        return provider

    @property
    def on_gpu(self) -> bool:
        return self.provider == CUDA

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "alias": self.identity.alias,
                "variant": self.identity.variant, "task": self.card.task, "labels": self.card.labels,
                "backbone": self.card.backbone, "provider": self.provider, "sha256": self.identity.sha256,
                "project_id": self.identity.project_id, "source": self.identity.source,
                "input": {"name": self.card.input_name, "shape": [-1, 3, *self.input_shape]},
                "outputs": self.output_names, "thresholds": self.card.thresholds, "max_batch_size": self.max_batch,
                "loaded_at": self.loaded_at}

    def output_shapes(self) -> dict[str, list[int]]:
        """Output shapes with -1 for dynamic dimensions (the batch)."""
        return {o.name: [d if isinstance(d, int) else -1 for d in o.shape] for o in self.session.get_outputs()}

    # -- image → tensor ------------------------------------------------------------
    @property
    def draft_size(self) -> tuple[int, int] | None:
        # Faces are cropped from the full image, as in training (see visiondock.faces).
        return None if self.card.task == FACE else self.card.preprocess.draft_size

    def decode(self, data: bytes, *, max_pixels: int) -> DecodedImage:
        return decode_image(data, max_pixels=max_pixels, draft_size=self.draft_size)

    def prepare(self, data: bytes, *, max_pixels: int) -> PreparedImage:
        """Decode (JPEG draft mode where it loses nothing) and build the input tensor."""
        started = time.perf_counter()
        decoded = self.decode(data, max_pixels=max_pixels)
        decode_ms = (time.perf_counter() - started) * 1000
        prepared = self.prepare_decoded(decoded)
        prepared.timings["decode"] = decode_ms
        return prepared

    def prepare_decoded(self, decoded: DecodedImage) -> PreparedImage:
        started = time.perf_counter()
        image = decoded.image
        prepared = PreparedImage(None, decoded.width, decoded.height, decoded.format)
        if self._faces is not None:
            margin = float(self.card.extra.get("face_margin", self._faces.DEFAULT_MARGIN))
            box = self._faces.find_largest_face(image, margin=margin)
            if box is not None:
                prepared.face_box = box  # the image is decoded at full size for faces: original pixels
                prepared.tensor = to_tensor(self._faces.crop_face(image, box), self.card.preprocess)
        else:
            prepared.tensor = to_tensor(image, self.card.preprocess)
        prepared.timings["preprocess"] = (time.perf_counter() - started) * 1000
        return prepared

    # -- inference -----------------------------------------------------------------
    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The card's outputs, in the card's order, for an N x 3 x S x S batch."""
        outputs: list[np.ndarray] = self.session.run(self.output_names, {self.card.input_name: batch})
        return outputs

    def warm_up(self) -> None:
        """One inference, so the first real request does not pay for lazy initialisation."""
        size = self.card.preprocess.size
        self.run(np.zeros((1, 3, size, size), dtype=np.float32))

    def seconds_per_image(self, *, batch: int, runs: int = 3) -> float:
        """Inference time per image in batches of `batch`: the fastest of `runs` timed runs after an untimed
        one (the fastest, because other work on the machine only ever adds time)."""
        size = self.card.preprocess.size
        pixels = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
        self.run(pixels)
        fastest = float("inf")
        for _ in range(runs):
            started = time.perf_counter()
            self.run(pixels)
            fastest = min(fastest, time.perf_counter() - started)
        return fastest / batch

