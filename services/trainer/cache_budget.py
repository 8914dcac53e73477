"""The trainer's cache directory kept within bounds: the least recently used files go first.

The cache (backbone features per image, face boxes, exported and INT8 backbones) only
grows: every new image, backbone, input size or calibration set adds files, and a
Kubernetes volume that fills up fails the next training that writes to it. After each
training run `prune_cache` removes the files used longest ago until the cache is under
its size cap (`VISIONDOCK_TRAINER_CACHE_MAX_GB`, if set) and the volume has
`MIN_FREE_FRACTION` of its space free. Readers call `mark_used` on a hit, so "used" means
read or written, whatever the volume's atime policy. A removed file is only computed again.

Files used within `KEEP_RECENT_SECONDS` stay whatever the budget: a training Job sharing
the volume may be about to open what it just checked exists.

Pruning only ever touches a directory the trainer made its cache: `claim_cache_dir` creates the
directory, or takes one holding nothing but what the trainer writes at a cache's top (or a fresh
volume's `lost+found`), and leaves `CACHE_MARKER` in it; a directory without the marker is never
pruned, whatever path a setting or a flag names.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MIN_FREE_FRACTION = 0.10
KEEP_RECENT_SECONDS = 3600.0
# In a directory the trainer made its cache: the only directories pruning may touch.
CACHE_MARKER = ".visiondock-trainer-cache"
# The backbone speeds earlier trainers measured and kept at the cache's top (no longer written).
SPEED_FILE = "feature-speed.json"
# Not cache entries: rewritten by every run that computes features, or the marker itself.
_KEPT_NAMES = frozenset({SPEED_FILE, CACHE_MARKER})
# What may sit at the top of a directory the trainer takes as its cache: what it writes there
# (features.py, tasks/: feature and face caches, exported backbones), and a new volume's lost+found.
_CACHE_TOP = frozenset({SPEED_FILE, "features", "faces", "models", "lost+found"})


def mark_used(path: Path) -> None:
    """Record that a cached file was just used (its mtime), so pruning keeps it longest."""
    # Removed meanwhile, or a read-only cache: the pruning order is only a preference.
    with contextlib.suppress(OSError):
        os.utime(path)


@dataclass(frozen=True)
class Pruned:
    files: int  # cache files before pruning
    bytes: int
    removed_files: int
    removed_bytes: int
    kept_recent_bytes: int  # over the budget but used too recently to remove

    def describe(self) -> str:
        text = (f"trainer cache: {self.files:,} files, {self.bytes / 1e6:,.1f} MB; removed {self.removed_files:,} "
                f"least recently used ({self.removed_bytes / 1e6:,.1f} MB)")
        if self.kept_recent_bytes:
            text += f"; still over budget by files used in the last hour ({self.kept_recent_bytes / 1e6:,.1f} MB)"
        return text


def claim_cache_dir(root: Path) -> bool:
    """Make `root` this trainer's cache: create it with the marker, or mark it when it holds nothing
    but a cache's own top entries (empty, or an unmarked cache of an earlier trainer). False (and
    never pruned) for a directory holding anything else."""
    marker = root / CACHE_MARKER
    try:
        if marker.is_file():
            return True
        root.mkdir(parents=True, exist_ok=True)
        if any(path.name not in _CACHE_TOP for path in root.iterdir()):
            log.warning("the trainer cache %s holds files the trainer did not write; it is used but never pruned",
                        root)
            return False
        marker.write_text("The VisionDock trainer's feature cache: its least recently used files are removed "
                          "to keep it within budget.\n")
        return True
    except OSError as exc:
        log.warning("could not prepare the trainer cache %s: %s", root, exc)
        return False


def is_trainer_cache(root: Path) -> bool:
    return (root / CACHE_MARKER).is_file()


def _entries(root: Path) -> list[tuple[float, int, Path]]:
    """(mtime, size, path) of every cache file under root, oldest first."""
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            if name in _KEPT_NAMES and Path(directory) == root:
                continue
            path = Path(directory) / name
            try:
                stat = path.stat()
            except OSError:
                continue
            found.append((stat.st_mtime, stat.st_size, path))
    found.sort()
    return found


def prune_cache(root: Path, *, max_bytes: int | None, min_free_bytes: int,
                keep_recent_seconds: float = KEEP_RECENT_SECONDS, now: float | None = None) -> Pruned:
    """Remove the least recently used files under `root` until they total at most `max_bytes`
    (None: no cap) and the volume has `min_free_bytes` free, keeping files used within
    `keep_recent_seconds`. A directory without CACHE_MARKER is left alone."""
    if not root.is_dir() or not is_trainer_cache(root):
        return Pruned(0, 0, 0, 0, 0)
    entries = _entries(root)
    total = sum(size for _, size, _ in entries)
    to_free = max(total - max_bytes if max_bytes is not None else 0,
                  min_free_bytes - shutil.disk_usage(root).free, 0)
    cutoff = (time.time() if now is None else now) - keep_recent_seconds
    removed_files = removed_bytes = 0
    parents: set[Path] = set()
    for mtime, size, path in entries:
        if removed_bytes >= to_free or mtime > cutoff:
            break
        try:
            path.unlink()
        except OSError:
            continue
        removed_files += 1
        removed_bytes += size
        parents.add(path.parent)
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        # Empty shard folders go too; a folder another Job just wrote into is not empty.
        while parent != root and parent.is_relative_to(root):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
    short = max(0, to_free - removed_bytes)
    return Pruned(len(entries), total, removed_files, removed_bytes, short)


def prune_after_training(root: Path, max_gb: float | None) -> Pruned | None:
    """The budget of the settings applied after a run; failures are logged, never raised."""
    try:
        volume = shutil.disk_usage(root).total if root.is_dir() else 0
        pruned = prune_cache(root, max_bytes=None if max_gb is None else int(max_gb * 1e9),
                             min_free_bytes=int(volume * MIN_FREE_FRACTION))
    except OSError as exc:
        log.warning("could not prune the trainer cache %s: %s", root, exc)
        return None
    if pruned.removed_files or pruned.kept_recent_bytes:
        log.info("%s", pruned.describe())
    return pruned
