"""The dataset snapshot's content hash: equal exactly when the labeled data is the same."""

from __future__ import annotations

from visiondock.lineage import code_version, dataset_snapshot

IMAGES = [{"id": "b" * 64, "tags": ["dog"], "regions": [], "label_revision": 1},
          {"id": "a" * 64, "tags": ["cat"], "regions": [], "label_revision": 3},
          {"id": "c" * 64, "tags": ["cat"], "regions": [], "label_revision": 1}]
SPLITS = {"train": ["a" * 64, "b" * 64], "test": ["c" * 64]}


def test_the_snapshot_hash_follows_the_labeled_data_not_its_order() -> None:
    snapshot = dataset_snapshot(IMAGES, SPLITS)
    assert snapshot["image_count"] == 3 and snapshot["tag_counts"] == {"cat": 2, "dog": 1}
    assert snapshot["split_counts"] == {"train": 2, "test": 1}
    assert [i["id"][0] for i in snapshot["images"]] == ["a", "b", "c"]
    assert dataset_snapshot(IMAGES[::-1], SPLITS)["content_hash"] == snapshot["content_hash"]

    relabeled = [{**IMAGES[0], "tags": ["cat"], "label_revision": 2}, *IMAGES[1:]]
    moved = {"train": ["a" * 64], "test": ["b" * 64, "c" * 64]}
    unused = dataset_snapshot(IMAGES, {"train": ["a" * 64, "b" * 64]})
    for other in (dataset_snapshot(relabeled, SPLITS), dataset_snapshot(IMAGES, moved), unused):
        assert other["content_hash"] != snapshot["content_hash"]
    assert unused["image_count"] == 2  # images listed but not used are not part of the snapshot


def test_the_code_version_names_the_package_and_the_commit() -> None:
    code = code_version()
    assert code["package"] == "visiondock" and code["version"] == "0.1.0"
    assert code["git_commit"] is None or len(code["git_commit"]) == 40
