"""Frozen backbone computations, run fast and cached.

- `FrozenRunner`: a frozen torch module (the pooled backbone, or the trunk below the
  fine-tuned blocks). On a CPU it is exported to ONNX once, the file kept in the cache
  directory, and run with ONNX Runtime (several times the throughput of torch eager on a
  CPU: docs/benchmarks.md); with a CUDA GPU it runs in torch on the GPU.
- `FeatureCache`: pooled features on local disk, one small `.npy` per image, keyed by
  the image's SHA-256 and a recipe hash (backbone, preprocessing, face crop), so
  retraining after adding images computes features for the new images only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from .cache_budget import mark_used

log = logging.getLogger(__name__)

# Bump when what a cached file means changes (new export recipe, new pooling, new resampling...).
# 3: enlarged images are sampled by OpenCV (visiondock.preprocess.fit), within a level of before.
CACHE_FORMAT = 3
BATCH_SIZE = 32


def recipe_hash(recipe: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({**recipe, "format": CACHE_FORMAT}, sort_keys=True).encode()).hexdigest()[:16]


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    # Write beside the target and rename: concurrent Jobs sharing the cache never read half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def use_cuda() -> bool:
    return torch.cuda.is_available()


class FrozenRunner:
    """Runs a frozen module on batches of preprocessed images (NumPy in, NumPy out).

    `build` makes the torch module; it is called only when the module must run in
    torch (GPU) or be exported (first use of a cache directory).
    """

    def __init__(self, build: Callable[[], nn.Module], *, input_size: int, onnx_path: Path, threads: int) -> None:
        self.device = torch.device("cuda") if use_cuda() else None
        self.session: ort.InferenceSession | None = None
        self.module: nn.Module | None = None
        if self.device is not None:
            self.module = build().eval().to(self.device)
            return
        if not onnx_path.exists():
            log.info("exporting the frozen backbone to %s (once per cache directory)", onnx_path)
            module = build().eval()

            def export(target: Path) -> None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # tracer notes about the dynamic padding arithmetic
                    torch.onnx.export(module, (torch.zeros(1, 3, input_size, input_size),), str(target),
                                      input_names=["image"], output_names=["output"],
                                      dynamic_axes={"image": {0: "batch"}, "output": {0: "batch"}},
                                      opset_version=17, dynamo=False)

            atomic_write(onnx_path, export)
        else:
            mark_used(onnx_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning: on a shared or CPU-limited node spinning
        # threads steal the cores the other threads are waiting for.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.session is not None:
            features: np.ndarray = self.session.run(None, {"image": batch})[0]
            return features
        assert self.module is not None
        with torch.inference_mode():
            features = self.module(torch.from_numpy(batch).to(self.device or "cpu")).float().cpu().numpy()
            return features


def prepared_batches(items: Sequence[Any], prepare: Callable[[Any], np.ndarray], *, batch_size: int = BATCH_SIZE,
                     workers: int = 2) -> Iterator[tuple[int, np.ndarray]]:
    """(start, batch) for consecutive slices of `items`, prepared in threads one batch ahead.

    Pillow and NumPy release the GIL while resizing and normalizing, so preparing the
    next batch overlaps with the model running on the current one.
    """
    starts = list(range(0, len(items), batch_size))

    def build(start: int) -> np.ndarray:
        return np.stack([prepare(item) for item in items[start:start + batch_size]])

    with ThreadPoolExecutor(workers) as pool:
        pending: deque[tuple[int, Future[np.ndarray]]] = deque()
        for start in starts:
            pending.append((start, pool.submit(build, start)))
            if len(pending) > 2:
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()


def run_batched(runner: Callable[[np.ndarray], np.ndarray], images: Sequence[Image.Image],
                prepare: Callable[[Image.Image], np.ndarray], *, desc: str, progress: bool) -> np.ndarray:
    """The runner's output for every image, in order."""
    outputs: list[np.ndarray] = []
    with tqdm(total=len(images), desc=desc, unit="img", disable=not progress) as bar:
        for start, batch in prepared_batches(images, prepare):
            outputs.append(runner(batch))
            bar.update(len(images[start:start + BATCH_SIZE]))
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)


class FeatureCache:
    """Pooled features by image SHA-256 under `<root>/features/<recipe hash>/`."""

    def __init__(self, root: Path, recipe: dict[str, Any]) -> None:
        self.recipe = recipe
        self.directory = root / "features" / recipe_hash(recipe)

    def _path(self, sha256: str) -> Path:
        return self.directory / sha256[:2] / f"{sha256}.npy"

    def get(self, sha256: str) -> np.ndarray | None:
        path = self._path(sha256)
        try:
            vector: np.ndarray = np.load(path)
        except (OSError, ValueError):  # absent, or a file damaged on disk: compute it again
            return None
        mark_used(path)
        return vector

    def put(self, sha256: str, vector: np.ndarray) -> None:
        atomic_write(self._path(sha256), lambda tmp: np.save(tmp, vector.astype(np.float32)))


class FaceBoxCache:
    """The face box found in each image (or none), by SHA-256, per detector settings."""

    def __init__(self, root: Path, detector: dict[str, Any]) -> None:
        self.directory = root / "faces" / recipe_hash(detector)

    def _path(self, sha256: str) -> Path:
        return self.directory / sha256[:2] / f"{sha256}.json"

    def get(self, sha256: str) -> tuple[bool, tuple[int, int, int, int] | None]:
        """(known, box): known is False when the image was never looked at."""
        path = self._path(sha256)
        try:
            box = json.loads(path.read_text())["box"]
        except (OSError, ValueError, KeyError):
            return False, None
        mark_used(path)
        return True, None if box is None else (int(box[0]), int(box[1]), int(box[2]), int(box[3]))

    def put(self, sha256: str, box: tuple[int, int, int, int] | None) -> None:
        atomic_write(self._path(sha256), lambda tmp: tmp.write_text(json.dumps({"box": box})))
