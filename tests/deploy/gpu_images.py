"""One CUDA line per GPU image: the CUDA major an image ships must be the one its locked wheels link.

ONNX Runtime's CUDA provider and torch's CUDA libraries are built against one CUDA major each
(`libcudart.so.13`, `libcublasLt.so.13`): on an image that ships another, ONNX Runtime logs
"Failed to create CUDAExecutionProvider" and runs on the CPU, and torch finds no GPU. What a wheel
links is read from the wheel itself: the exact locked file (`pip download` with the lock's hashes,
kept in a cache between runs) and the `DT_NEEDED` entries of its CUDA library's ELF dynamic section.

- scoring-gpu: the CUDA runtime comes from the base image (`FROM nvidia/cuda:<major>.…`); the
  locked `onnxruntime-gpu` wheel's CUDA provider must link that major.
- trainer-gpu: the base image has no CUDA; the lock's `nvidia-cuda-runtime` wheel brings it, and the
  locked `torch` wheel must link that major.

Both images run on the same GPU nodes, so they must also agree with each other: one CUDA major is one
driver requirement (CUDA 13: driver 580 or later, docs/deploy-aks.md).

`make check-images` runs this module (downloads on the first run, about 800 MB); the test
tests/deploy/test_gpu_images.py runs the same comparison whenever the cache holds the wheels.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
LOCKS = DOCKER / "requirements"
# Outside the checkout, so that every clone on a machine (CI's clean clones included) downloads the wheels once.
CACHE = Path(os.environ.get("VISIONDOCK_WHEEL_CACHE") or Path.home() / ".cache" / "visiondock" / "gpu-wheels")
# The platform every lock is compiled for (Makefile `locks`).
PLATFORM = ("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp")


@dataclass(frozen=True)
class GpuImage:
    name: str
    dockerfile: str
    lock: str
    wheel: str          # the package whose CUDA library decides whether the GPU is used
    library: str        # that library's path inside the wheel
    runtime_wheel: str | None = None  # where the CUDA runtime comes from when the base image has none


GPU_IMAGES = (
    GpuImage("scoring-gpu", "scoring-gpu.Dockerfile", "scoring-gpu", "onnxruntime-gpu",
             "onnxruntime/capi/libonnxruntime_providers_cuda.so"),
    # libc10_cuda.so links the CUDA runtime as libtorch_cuda.so does, at 0.6 MB instead of 470.
    GpuImage("trainer-gpu", "trainer.Dockerfile", "trainer-gpu", "torch", "torch/lib/libc10_cuda.so",
             runtime_wheel="nvidia-cuda-runtime"),
)


class ImageCheckError(RuntimeError):
    pass


def base_cuda_major(dockerfile: Path) -> int | None:
    """The CUDA major of the runtime stage's base image (`FROM nvidia/cuda:13.0.1-…`), None without CUDA."""
    stages = re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.M)
    if not stages:
        raise ImageCheckError(f"{dockerfile.name} has no FROM line")
    found = re.match(r"^(?:docker\.io/)?nvidia/cuda:(\d+)\.", stages[-1])
    return int(found.group(1)) if found else None


def locked(lock: str, package: str) -> tuple[str, list[str]]:
    """The version and hashes `docker/requirements/<lock>.txt` pins for `package`."""
    text = (LOCKS / f"{lock}.txt").read_text()
    found = re.search(rf"^{re.escape(package)}==(\S+)((?: \\\n\s+--hash=sha256:[0-9a-f]+)+)", text, re.M)
    if not found:
        raise ImageCheckError(f"{lock}.txt pins no {package}")
    return found.group(1), re.findall(r"sha256:([0-9a-f]{64})", found.group(2))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def cached_wheel(package: str, version: str, hashes: list[str], cache: Path = CACHE) -> Path | None:
    """The locked wheel in the cache (one of the lock's hashes), or None."""
    stem = package.replace("-", "_")
    for path in sorted(cache.glob(f"{stem}-{version}-*.whl")):
        if _sha256(path) in hashes:
            return path
    return None


def download_wheel(package: str, version: str, hashes: list[str], cache: Path = CACHE) -> Path:
    """The exact locked wheel for Linux x86-64 and Python 3.11, from the package index (once)."""
    found = cached_wheel(package, version, hashes, cache)
    if found is not None:
        return found
    cache.mkdir(parents=True, exist_ok=True)
    requirement = cache / f"{package}.txt"
    requirement.write_text(f"{package}=={version} " + " ".join(f"--hash=sha256:{h}" for h in hashes) + "\n")
    # --require-hashes makes pip take only the locked file (not, say, a +cpu build found elsewhere).
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    *PLATFORM, "--require-hashes", "-r", str(requirement), "-d", str(cache)], check=True)
    found = cached_wheel(package, version, hashes, cache)
    if found is None:
        raise ImageCheckError(f"pip downloaded no {package}=={version} wheel with the locked hashes into {cache}")
    return found


def needed_libraries(wheel: Path, member: str, cache: Path = CACHE) -> list[str]:
    """The DT_NEEDED entries of a shared library inside a wheel (its ELF dynamic section)."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    extracted = cache / "extracted" / wheel.stem / member
    if not extracted.exists():
        extracted.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as source:
            partial = extracted.with_suffix(".partial")
            partial.write_bytes(source.read())
            partial.replace(extracted)
    with extracted.open("rb") as file:
        elf = ELFFile(file)
        return [tag.needed for section in elf.iter_sections() if isinstance(section, DynamicSection)
                for tag in section.iter_tags() if tag.entry.d_tag == "DT_NEEDED"]


def linked_cuda_major(needed: list[str]) -> int:
    """The CUDA major a library was built for: the soname major of the CUDA runtime it links."""
    majors = {int(m.group(1)) for name in needed if (m := re.fullmatch(r"libcudart\.so\.(\d+)", name))}
    if len(majors) != 1:
        raise ImageCheckError(f"expected one libcudart.so.N among the linked libraries, found: {needed}")
    return majors.pop()


def image_cuda_major(image: GpuImage) -> int:
    """The CUDA major the image ships: its base image's, or its runtime wheel's."""
    if image.runtime_wheel is None:
        major = base_cuda_major(DOCKER / image.dockerfile)
        if major is None:
            raise ImageCheckError(f"{image.dockerfile} is based on no nvidia/cuda image and locks no CUDA runtime")
        return major
    version, _ = locked(image.lock, image.runtime_wheel)
    return int(version.split(".", 1)[0])


@dataclass(frozen=True)
class CudaLine:
    image: str
    ships: int     # the CUDA major in the image
    links: int     # the CUDA major its locked wheel's CUDA library links
    wheel: str


def check(image: GpuImage, *, download: bool = True, cache: Path = CACHE) -> CudaLine | None:
    """The image's CUDA line; None when the wheel is not cached and `download` is off."""
    version, hashes = locked(image.lock, image.wheel)
    wheel = (download_wheel(image.wheel, version, hashes, cache) if download
             else cached_wheel(image.wheel, version, hashes, cache))
    if wheel is None:
        return None
    links = linked_cuda_major(needed_libraries(wheel, image.library, cache))
    return CudaLine(image.name, image_cuda_major(image), links, f"{image.wheel}=={version}")


def main() -> int:
    lines = [check(image) for image in GPU_IMAGES]
    failed = False
    for line in lines:
        assert line is not None
        verdict = "ok" if line.ships == line.links else "MISMATCH"
        failed |= line.ships != line.links
        print(f"{line.image}: ships CUDA {line.ships}, {line.wheel} links CUDA {line.links}: {verdict}")
    majors = {line.ships for line in lines if line is not None}
    if len(majors) > 1:
        failed = True
        print(f"the GPU images ship different CUDA majors {sorted(majors)}: the GPU nodes' driver must serve both")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
