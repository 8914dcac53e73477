"""The artifact cache: downloads through the real registry app (in process), checksums,
the outage memory, and pruning on real files with a fake clock."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from services.scoring.artifact_cache import ArtifactCache, file_sha256
from services.scoring.model import ModelLoadError
from visiondock.clients import RegistryClient

from . import tiny_models
from .conftest import register

MB = 1_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def downloads_of(registry: RegistryClient, model: str, version: int, seen: list[Path]) -> Callable[[Path], None]:
    """The registry's own download, noting each file it writes."""
    def download(path: Path) -> None:
        seen.append(path)
        registry.download_artifact(model, version, path)
    return download


def test_a_file_is_downloaded_once_and_used_while_its_checksum_matches(registry_in_process: RegistryClient,
                                                                        tmp_path: Path) -> None:
    version = register(registry_in_process, "colours", tiny_models.classifier(tmp_path / "v1.onnx"))
    artifact = registry_in_process.get_version("colours", version)["artifact"]
    cache = ArtifactCache(tmp_path / "cache", keep_files=4, max_bytes=100 * MB)
    seen: list[Path] = []
    path = cache.fetch("colours", version, "fp32", artifact, downloads_of(registry_in_process, "colours", version,
                                                                          seen))
    assert path == cache.path_for("colours", version, "fp32", artifact["sha256"])
    assert file_sha256(path) == artifact["sha256"] and len(seen) == 1
    assert cache.fetch("colours", version, "fp32", artifact,
                       downloads_of(registry_in_process, "colours", version, seen)) == path
    assert len(seen) == 1  # from the cache
    path.write_bytes(path.read_bytes()[:-10] + b"corrupted!")  # a damaged file is downloaded again
    cache.fetch("colours", version, "fp32", artifact, downloads_of(registry_in_process, "colours", version, seen))
    assert len(seen) == 2 and file_sha256(path) == artifact["sha256"]


def test_a_download_that_does_not_match_the_registry_is_refused_and_deleted(registry_in_process: RegistryClient,
                                                                             tmp_path: Path) -> None:
    version = register(registry_in_process, "colours", tiny_models.classifier(tmp_path / "v1.onnx"))
    wrong = {"sha256": hashlib.sha256(b"another file").hexdigest(), "size": 100}
    cache = ArtifactCache(tmp_path / "cache", keep_files=4, max_bytes=100 * MB)
    with pytest.raises(ModelLoadError, match=r"has checksum .* the registry says .*; not loading it"):
        cache.fetch("colours", version, "fp32", wrong, downloads_of(registry_in_process, "colours", version, []))
    assert list((tmp_path / "cache" / "colours").glob("*.onnx")) == []


def test_the_served_file_is_remembered_and_recalled_only_while_it_verifies(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache", keep_files=4, max_bytes=100 * MB)
    path = tmp_path / "cache" / "colours" / "3-int8-abc.onnx"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"model bytes")
    assert cache.recall("colours", "production-auto") is None
    cache.remember("colours", "production-auto", path, {"version": 3, "variant": "int8",
                                                        "sha256": file_sha256(path)})
    recalled = cache.recall("colours", "production-auto")
    assert recalled is not None and recalled.path == path
    assert (recalled.record["version"], recalled.record["variant"]) == (3, "int8")
    path.write_bytes(b"model bytez")
    assert cache.recall("colours", "production-auto") is None


def _file(cache: ArtifactCache, name: str, size: int, used_at: float, model: str = "colours") -> Path:
    path = cache.root / model / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (used_at, used_at))
    return path


def test_pruning_keeps_what_is_served_remembered_and_the_most_recently_used(tmp_path: Path) -> None:
    clock = FakeClock()
    served: list[Path] = []
    cache = ArtifactCache(tmp_path / "cache", keep_files=2, max_bytes=100 * MB, in_use=lambda: served,
                          clock=clock)
    now = clock.now
    files = [_file(cache, f"{v}-fp32-{v:016x}.onnx", MB, used_at=now - 100 * (10 - v)) for v in range(1, 7)]
    served.append(files[0])  # the oldest, but a model of this process serves it
    remembered = _file(cache, "1-int8-0000000000000001.onnx", MB, used_at=now - 5000, model="shelf")
    cache.remember("shelf", "production-auto", remembered, {"version": 1, "variant": "int8",
                                                            "sha256": file_sha256(remembered)})
    removed = cache.prune()
    assert sorted(removed) == sorted(files[1:4])
    assert sorted(p.name for p in cache.root.glob("*/*.onnx")) == sorted(
        [files[0].name, files[4].name, files[5].name, remembered.name])


def test_pruning_stays_under_the_size_limit_with_room_for_the_next_download(tmp_path: Path) -> None:
    clock = FakeClock()
    served: list[Path] = []
    cache = ArtifactCache(tmp_path / "cache", keep_files=10, max_bytes=10 * MB, in_use=lambda: served, clock=clock)
    served.append(_file(cache, "9-fp32-a.onnx", 4 * MB, used_at=clock.now - 9000))
    older = _file(cache, "7-fp32-b.onnx", 3 * MB, used_at=clock.now - 2000)
    newer = _file(cache, "8-fp32-c.onnx", 2 * MB, used_at=clock.now - 1000)
    assert cache.prune() == []  # 9 MB of 10
    # A 3 MB download needs room: the least recently used file not served goes, the newer one stays.
    assert cache.prune(room_for=3 * MB) == [older]
    assert newer.exists() and served[0].exists()
    # Files in use are never deleted, even over the limit; the log says so.
    assert cache.prune(room_for=9 * MB) == [newer]
    assert served[0].exists()


def test_a_cache_hit_counts_as_use_and_abandoned_downloads_go(registry_in_process: RegistryClient,
                                                              tmp_path: Path) -> None:
    clock = FakeClock()
    cache = ArtifactCache(tmp_path / "cache", keep_files=1, max_bytes=100 * MB, clock=clock)
    first = register(registry_in_process, "colours", tiny_models.classifier(tmp_path / "v1.onnx"))
    second = register(registry_in_process, "colours", tiny_models.classifier(tmp_path / "v2.onnx", gain=12))
    artifacts = {v: registry_in_process.get_version("colours", v)["artifact"] for v in (first, second)}
    paths = {}
    for version in (first, second):
        clock.now += 60
        paths[version] = cache.fetch("colours", version, "fp32", artifacts[version],
                                     downloads_of(registry_in_process, "colours", version, []))
        os.utime(paths[version], (clock.now, clock.now))
    clock.now += 60
    cache.fetch("colours", first, "fp32", artifacts[first], downloads_of(registry_in_process, "colours", first, []))
    stale = _file(cache, "5-fp32-d.onnx.partial", 10, used_at=clock.now - 7200)
    fresh = _file(cache, "6-fp32-e.onnx.partial", 10, used_at=clock.now - 60)
    assert cache.prune() == [paths[second]]  # the first was used last
    assert not stale.exists() and fresh.exists()
