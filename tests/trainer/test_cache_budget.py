"""The trainer cache stays within its budget: least recently used files go first, files used in
the last hour and the backbone speed record stay, and a cache hit counts as a use. Only a directory
the trainer made its cache (its marker file) is ever pruned."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from services.trainer.cache_budget import CACHE_MARKER, claim_cache_dir, prune_cache
from services.trainer.features import FeatureCache

DAY = 86400.0


def cached_file(root: Path, relative: str, size: int, age_days: float) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    when = time.time() - age_days * DAY
    os.utime(path, (when, when))
    return path


def test_the_least_recently_used_files_go_until_the_cache_is_under_its_cap(tmp_path: Path) -> None:
    assert claim_cache_dir(tmp_path)
    oldest = cached_file(tmp_path, "features/aaaa/01/one.npy", 1000, age_days=9)
    older = cached_file(tmp_path, "models/lite0-trunk-224-f3.onnx", 3000, age_days=5)
    old = cached_file(tmp_path, "faces/bbbb/02/two.json", 1000, age_days=2)
    recent = cached_file(tmp_path, "features/aaaa/03/three.npy", 1000, age_days=0)
    speeds = cached_file(tmp_path, "feature-speed.json", 100, age_days=30)

    pruned = prune_cache(tmp_path, max_bytes=3000, min_free_bytes=0)

    # 6,000 bytes of cache against a 3,000-byte cap: the two oldest (4,000 bytes) are enough.
    assert (pruned.files, pruned.bytes, pruned.removed_files, pruned.removed_bytes) == (4, 6000, 2, 4000)
    assert not oldest.exists() and not older.exists()
    assert old.exists() and recent.exists() and speeds.exists()
    assert not oldest.parent.exists() and (tmp_path / "features" / "aaaa").is_dir()  # empty shard folders go
    assert pruned.kept_recent_bytes == 0
    assert "removed 2 least recently used (0.0 MB)" in pruned.describe()


def test_files_used_in_the_last_hour_stay_over_the_cap(tmp_path: Path) -> None:
    assert claim_cache_dir(tmp_path)
    old = cached_file(tmp_path, "features/aaaa/01/one.npy", 1000, age_days=3)
    recent = cached_file(tmp_path, "features/aaaa/02/two.npy", 4000, age_days=0.01)  # 15 minutes

    pruned = prune_cache(tmp_path, max_bytes=1000, min_free_bytes=0)

    assert not old.exists() and recent.exists()
    assert pruned.kept_recent_bytes == 3000
    assert "still over budget by files used in the last hour" in pruned.describe()


def test_a_volume_short_of_free_space_gives_up_the_oldest_files(tmp_path: Path) -> None:
    assert claim_cache_dir(tmp_path)
    files = [cached_file(tmp_path, f"features/cccc/{i:02d}/{i}.npy", 4096, age_days=10 - i) for i in range(5)]
    recent = cached_file(tmp_path, "features/cccc/99/new.npy", 4096, age_days=0)

    # No cap, but the volume needs a gigabyte more free space than it has (a margin no other writer on
    # the machine closes meanwhile): every file but the recent one goes, and it still falls short.
    pruned = prune_cache(tmp_path, max_bytes=None, min_free_bytes=shutil.disk_usage(tmp_path).free + 10**9)

    assert pruned.removed_files == 5 and not any(f.exists() for f in files)
    assert recent.exists() and pruned.kept_recent_bytes > 0


def test_a_cache_hit_counts_as_a_use(tmp_path: Path) -> None:
    assert claim_cache_dir(tmp_path)
    cache = FeatureCache(tmp_path, {"backbone": "efficientnet-lite0"})
    cache.put("a" * 64, np.ones(4))
    cache.put("b" * 64, np.zeros(4))
    for path in tmp_path.rglob("*.npy"):
        when = time.time() - 7 * DAY
        os.utime(path, (when, when))
    assert cache.get("a" * 64) is not None  # read now: the most recently used

    size = next(tmp_path.rglob("*.npy")).stat().st_size
    prune_cache(tmp_path, max_bytes=size, min_free_bytes=0, keep_recent_seconds=0)

    assert cache.get("a" * 64) is not None
    assert cache.get("b" * 64) is None


def test_a_missing_cache_is_nothing_to_prune(tmp_path: Path) -> None:
    pruned = prune_cache(tmp_path / "never-made", max_bytes=0, min_free_bytes=0)
    assert (pruned.files, pruned.removed_files) == (0, 0)


def test_a_directory_the_trainer_did_not_make_is_never_pruned(tmp_path: Path) -> None:
    # Somebody's files, named as the cache by a setting or a flag: the budget must not delete them.
    theirs = [cached_file(tmp_path / "home", f"photos/{i}.jpg", 4096, age_days=30) for i in range(3)]
    assert not claim_cache_dir(tmp_path / "home")
    pruned = prune_cache(tmp_path / "home", max_bytes=0, min_free_bytes=shutil.disk_usage(tmp_path).free + 10**9)
    assert pruned.removed_files == 0 and all(path.exists() for path in theirs)
    assert not (tmp_path / "home" / CACHE_MARKER).exists()


def test_the_trainer_marks_the_cache_it_makes_and_one_an_earlier_trainer_made(tmp_path: Path) -> None:
    assert claim_cache_dir(tmp_path / "new") and (tmp_path / "new" / CACHE_MARKER).is_file()
    (tmp_path / "volume" / "lost+found").mkdir(parents=True)  # a fresh ext4 persistent volume
    assert claim_cache_dir(tmp_path / "volume")
    earlier = cached_file(tmp_path / "earlier", "features/aaaa/01/one.npy", 1000, age_days=9)
    cached_file(tmp_path / "earlier", "feature-speed.json", 100, age_days=9)
    assert claim_cache_dir(tmp_path / "earlier")
    assert prune_cache(tmp_path / "earlier", max_bytes=0, min_free_bytes=0).removed_files == 1
    assert not earlier.exists() and (tmp_path / "earlier" / CACHE_MARKER).is_file()
