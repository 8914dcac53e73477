"""Each blob key layout reads back to the owner it was built for, and only its own keys do: what
`visiondock fsck` relies on to tell a stray blob from an owned one."""

from __future__ import annotations

from visiondock.blob_keys import (
    IMAGE_PREFIX,
    LEGACY_CAPTURE_PREFIX,
    MODEL_PREFIX,
    PROJECT_PREFIXES,
    REVIEW_PREFIX,
    artifact_key,
    image_blob_key,
    image_of_blob,
    legacy_capture_of_blob,
    metadata_key,
    project_folder,
    review_blob_key,
    review_item_of_blob,
    thumbnail_blob_key,
    variant_filename,
    version_of_blob,
)


def test_keys_read_back_to_their_owner() -> None:
    assert image_of_blob(image_blob_key("flowers", "ab12")) == ("flowers", "ab12")
    assert review_item_of_blob(review_blob_key("flowers", "capture-1")) == ("flowers", "capture-1")
    assert version_of_blob(artifact_key("pets", 3)) == ("pets", "3")
    assert version_of_blob(artifact_key("pets", 3, "int8")) == ("pets", "3")
    assert version_of_blob(metadata_key("pets", 3)) == ("pets", "3")
    assert legacy_capture_of_blob(f"{LEGACY_CAPTURE_PREFIX}pets/abc") == ("pets", "abc")


def test_a_key_of_another_layout_has_no_owner() -> None:
    assert image_of_blob(review_blob_key("flowers", "x")) is None
    assert image_of_blob(thumbnail_blob_key("flowers", "x")) is None
    assert review_item_of_blob(image_blob_key("flowers", "x")) is None
    assert version_of_blob(image_blob_key("flowers", "x")) is None
    assert image_of_blob(f"{IMAGE_PREFIX}flowers/x/extra") is None


def test_file_names_and_folders() -> None:
    assert artifact_key("pets", 2) == f"{MODEL_PREFIX}pets/2/model.onnx"
    assert variant_filename("fp16") == "model.fp16.onnx"
    assert artifact_key("pets", 2, "int8").endswith("/" + variant_filename("int8"))
    # A project's folders hold each of its blobs, and nothing of a project whose name starts the same.
    for key in (image_blob_key("p", "i"), thumbnail_blob_key("p", "i"), review_blob_key("p", "i")):
        assert any(key.startswith(project_folder(prefix, "p")) for prefix in PROJECT_PREFIXES)
        assert not any(key.startswith(project_folder(prefix, "p2")) for prefix in PROJECT_PREFIXES)
    assert REVIEW_PREFIX in PROJECT_PREFIXES
