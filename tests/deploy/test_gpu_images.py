"""The GPU images use the GPU: each ships the CUDA major its locked wheels link (tests/deploy/gpu_images.py,
`make check-images`), both ship the same one (one driver for the GPU pool), and pyproject.toml keeps
`make locks` on that line."""

from __future__ import annotations

import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.deploy.gpu_images import GPU_IMAGES, ROOT, GpuImage, check, image_cuda_major
from tests.support.emulators import unavailable

pytestmark = pytest.mark.dockerfiles

# onnxruntime-gpu's PyPI wheels: CUDA 12 up to 1.26, CUDA 13 from 1.27 (its CUDA provider links
# libcudart.so.13 and libcublasLt.so.13; check_images reads that from the locked wheel).
FIRST_CUDA13_ONNXRUNTIME_GPU = Version("1.27.0")


@pytest.mark.parametrize("image", GPU_IMAGES, ids=lambda image: image.name)
def test_each_gpu_image_ships_the_cuda_its_locked_wheel_links(image: GpuImage) -> None:
    line = check(image, download=False)
    if line is None:
        unavailable(f"the locked {image.wheel} wheel is not in .cache/gpu-wheels: run `make check-images`")
    assert line.ships == line.links, (
        f"{image.name} ships CUDA {line.ships} but {line.wheel} links CUDA {line.links}: the session would "
        "fall back to the CPU")


def test_the_gpu_images_need_one_driver() -> None:
    majors = {image.name: image_cuda_major(image) for image in GPU_IMAGES}
    assert len(set(majors.values())) == 1, majors


def test_the_gpu_extra_stays_on_the_cuda_line_of_the_images() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    spec = next(Requirement(r) for r in extras["gpu"] if Requirement(r).name == "onnxruntime-gpu").specifier
    assert any(s.operator in ("<", "<=", "==", "~=") for s in spec), f"onnxruntime-gpu{spec} has no upper bound"
    assert not spec.contains("1.26.0"), "a CUDA 12 onnxruntime-gpu would be allowed beside a CUDA 13 image"
    assert spec.contains(str(FIRST_CUDA13_ONNXRUNTIME_GPU)) or all(
        Version(s.version) >= FIRST_CUDA13_ONNXRUNTIME_GPU for s in spec if s.operator in (">=", ">", "=="))
    assert image_cuda_major(GPU_IMAGES[0]) == 13
