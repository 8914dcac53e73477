"""Model files on local disk: downloaded once, verified by SHA-256, remembered for a
registry outage, and pruned so the cache volume never fills.

Files are `<root>/<model>/<version>-<variant>-<sha256[:16]>.onnx`. A file is used from the
cache only when its checksum still matches the registry's; a download that does not
match is deleted and refused. Beside the files, one small record per served target
(`serving-<alias>-<variant>.json`) says which file it served last: a process that
starts while the registry is unreachable serves that file once its checksum verifies.

Pruning keeps every file a model of this process serves and every file a record names
(other worker processes share the directory and write the same records), plus the
`keep_files` most recently used others; then, while the cache holds more than
`max_bytes` with room made for the next download, it deletes the least recently used
of those too. A file is used when it is downloaded or taken from the cache (its access time).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import ModelLoadError

log = logging.getLogger(__name__)
Clock = Callable[[], float]
MODEL_SUFFIX = ".onnx"
RECORD_PREFIX = "serving-"
# A `.partial` download this old was left by a process that died mid-download.
ABANDONED_DOWNLOAD_SECONDS = 3600.0


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class RememberedFile:
    """The file a target served last, with what its record says about it (version, variant, ...)."""

    path: Path
    record: dict[str, Any]


class ArtifactCache:
    def __init__(self, root: Path, *, keep_files: int, max_bytes: int,
                 in_use: Callable[[], Iterable[Path]] = tuple, clock: Clock = time.time) -> None:
        self.root = root
        self.keep_files = keep_files
        self.max_bytes = max_bytes
        self.in_use = in_use  # the files this process's models serve now
        self.clock = clock

    def path_for(self, model: str, version: int, variant: str, sha256: str) -> Path:
        return self.root / model / f"{version}-{variant}-{sha256[:16]}{MODEL_SUFFIX}"

    def fetch(self, model: str, version: int, variant: str, artifact: dict[str, Any],
              download: Callable[[Path], object]) -> Path:
        """The file of `artifact` (its registry document: `sha256`, `size`): from the cache when its
        checksum matches, else through `download(path)`, verified. ModelLoadError when it does not match."""
        sha256 = artifact["sha256"]
        path = self.path_for(model, version, variant, sha256)
        if path.is_file() and file_sha256(path) == sha256:
            self._touch(path)
            return path
        self.prune(room_for=int(artifact.get("size") or 0))
        download(path)
        actual = file_sha256(path)
        if actual != sha256:
            path.unlink(missing_ok=True)
            raise ModelLoadError(f"downloaded {model} version {version} ({variant}) has checksum {actual[:12]}…, "
                                 f"the registry says {sha256[:12]}…; not loading it")
        return path

    def _touch(self, path: Path) -> None:
        # Recency is the access time, set here: the modification time stays when the file was written.
        with contextlib.suppress(OSError):  # a read-only cache: recency is only a hint
            os.utime(path, ns=(int(self.clock() * 1e9), path.stat().st_mtime_ns))

    # -- serving through a registry outage ------------------------------------------------
    def _record_path(self, model: str, record_name: str) -> Path:
        return self.root / model / f"{RECORD_PREFIX}{record_name}.json"

    def remember(self, model: str, record_name: str, path: Path, record: dict[str, Any]) -> None:
        """Note that `path` is served for `record_name` (`<alias>-<variant>`), with `record`'s facts."""
        target = self._record_path(model, record_name)
        try:
            partial = target.with_suffix(".partial")
            partial.write_text(json.dumps({**record, "file": path.name, "saved_at": self.clock()}))
            partial.replace(target)
        except OSError as exc:
            log.warning("cannot remember the served file in %s: %s", target, exc)

    def recall(self, model: str, record_name: str) -> RememberedFile | None:
        """The file last remembered for `record_name`, when it is there and its checksum verifies."""
        target = self._record_path(model, record_name)
        try:
            record = json.loads(target.read_text())
            path = target.parent / record["file"]
            if file_sha256(path) != record["sha256"]:
                log.warning("cached %s does not match its checksum; not serving it", path)
                return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.info("no usable cached file for %s/%s: %s", model, record_name, exc)
            return None
        return RememberedFile(path, record)

    def _remembered_files(self) -> set[Path]:
        files = set()
        for record_path in self.root.glob(f"*/{RECORD_PREFIX}*.json"):
            try:
                files.add(record_path.parent / json.loads(record_path.read_text())["file"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return files

    # -- pruning ----------------------------------------------------------------------------
    def _inventory(self) -> tuple[int, list[tuple[float, int, Path]]]:
        """The bytes of every model file, and the files that may go: (last use, size, path), most recently
        used first."""
        protected = {p.resolve() for p in (*self.in_use(), *self._remembered_files())}
        total, files = 0, []
        for path in self.root.glob(f"*/*{MODEL_SUFFIX}"):
            try:
                stat = path.stat()
            except OSError:  # deleted meanwhile by another worker
                continue
            total += stat.st_size
            if path.resolve() not in protected:
                files.append((max(stat.st_atime, stat.st_mtime), stat.st_size, path))
        return total, sorted(files, reverse=True)

    def prune(self, *, room_for: int = 0) -> list[Path]:
        """Delete what the cache need not keep (see the module docstring); the files deleted."""
        if not self.root.is_dir():
            return []
        self._drop_abandoned_downloads()
        total, files = self._inventory()
        doomed = [path for _, _, path in files[self.keep_files:]]
        kept = files[:self.keep_files]
        total -= sum(size for _, size, _ in files[self.keep_files:])
        while kept and total + room_for > self.max_bytes:
            _, size, path = kept.pop()  # the least recently used left
            doomed.append(path)
            total -= size
        removed = [path for path in doomed if self._delete(path)]
        if removed:
            log.info("pruned %d file(s) from the model cache: %s", len(removed), ", ".join(p.name for p in removed))
        if total + room_for > self.max_bytes:
            log.warning("the model cache holds %.2f GB of files in use%s, over its %.2f GB limit",
                        total / 1e9, f" and needs {room_for / 1e9:.2f} GB more" if room_for else "",
                        self.max_bytes / 1e9)
        return removed

    @staticmethod
    def _delete(path: Path) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:  # another worker pruned it
            return False
        except OSError as exc:
            log.warning("cannot prune %s from the model cache: %s", path, exc)
            return False
        return True

    def _drop_abandoned_downloads(self) -> None:
        cutoff = self.clock() - ABANDONED_DOWNLOAD_SECONDS
        for partial in self.root.glob("*/*.partial"):
            try:
                if partial.stat().st_mtime < cutoff:
                    partial.unlink()
            except OSError:
                continue
