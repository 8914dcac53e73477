"""No image keeps a tag that no longer exists: a tag renamed (or deleted) while someone labels an image
with it, interleaved at each point where one could miss the other, on SQLite and on Cosmos DB."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.annotation.curation import Curation
from services.annotation.history import LabelChange, LabelHistory
from services.annotation.images import IMAGES, ImageLibrary
from services.annotation.projects import TAGS, ProjectCatalog
from tests.annotation.conftest import jpeg
from tests.registry.conftest import backend_settings
from tests.support.interleave import Interleaved
from visiondock.storage import Query, Stores


@dataclass
class Labeling:
    documents: Interleaved
    projects: ProjectCatalog
    library: ImageLibrary
    history: LabelHistory
    curation: Curation


@pytest.fixture(params=["sqlite", pytest.param("cosmos", marks=pytest.mark.azure)])
def labeling(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Labeling]:
    stores = Stores(backend_settings(request, tmp_path))
    try:
        documents = Interleaved(stores.documents)
        projects = ProjectCatalog(documents)  # type: ignore[arg-type]
        history = LabelHistory(documents)  # type: ignore[arg-type]
        library = ImageLibrary(documents, stores.blobs, projects, history=history)  # type: ignore[arg-type]
        curation = Curation(documents, stores.blobs, projects, library, who="curator")  # type: ignore[arg-type]
        projects.create("fruit", "multiclass", tags=["apple", "pear"])
        projects.create("boxes", "detection", tags=["apple", "pear"])
        yield Labeling(documents, projects, library, history, curation)
    finally:
        stores.close()


def _image(labeling: Labeling, project: str) -> str:
    outcome = labeling.library.upload(project, [("a.jpg", jpeg((200, 10, 10)))])[0]
    assert outcome.image is not None
    return outcome.image["id"]


def _label(labeling: Labeling, project: str, image_id: str, tag: str) -> None:
    change = LabelChange(who="labeler")
    if project == "boxes":
        region = {"tag": tag, "left": 0.1, "top": 0.1, "width": 0.5, "height": 0.5}
        labeling.library.set_regions(project, image_id, [region], if_match=None, change=change)
    else:
        labeling.library.set_tags(project, image_id, [tag], if_match=None, change=change)


def _no_image_names_a_missing_tag(labeling: Labeling, project: str) -> list[str]:
    tags = {t["name"] for t in labeling.projects.list_tags(project) if "renamed_to" not in t}
    named: list[str] = []
    for doc in labeling.documents.store.query_all(IMAGES, Query(partition_key=project)):
        image_tags = sorted({*doc.data["tags"], *(r["tag"] for r in doc.data.get("regions") or [])})
        assert set(image_tags) <= tags, (image_tags, tags)
        named += image_tags
    return named


@pytest.mark.parametrize("project", ["fruit", "boxes"])
def test_a_rename_between_a_labels_check_and_its_write(labeling: Labeling, project: str) -> None:
    image_id = _image(labeling, project)
    # The labeler's tags were checked (apple exists); before its write lands, the whole rename runs.
    labeling.documents.at("patch", IMAGES, lambda: labeling.curation.rename_tag(project, "apple", "pomme"))
    _label(labeling, project, image_id, "apple")
    assert labeling.documents.fired
    assert _no_image_names_a_missing_tag(labeling, project) == ["pomme"]
    history = labeling.history.list(project, image_id)[0]
    assert (history[0]["who"], history[0]["source"]) == ("labeler", "bulk")  # the follow-up, on the labeler's behalf


@pytest.mark.parametrize("project", ["fruit", "boxes"])
def test_a_label_between_a_renames_search_and_its_end(labeling: Labeling, project: str) -> None:
    image_id = _image(labeling, project)
    # The rename found no image with apple; before it removes the tag, the whole labeling runs.
    labeling.documents.at("delete", TAGS, lambda: _label(labeling, project, image_id, "apple"))
    labeling.curation.rename_tag(project, "apple", "pomme")
    assert labeling.documents.fired
    assert _no_image_names_a_missing_tag(labeling, project) == ["pomme"]


def test_a_delete_between_a_labels_check_and_its_write(labeling: Labeling) -> None:
    image_id = _image(labeling, "fruit")
    labeling.documents.at("patch", IMAGES, lambda: labeling.curation.delete_tag("fruit", "apple", confirm=True))
    _label(labeling, "fruit", image_id, "apple")
    assert labeling.documents.fired
    assert _no_image_names_a_missing_tag(labeling, "fruit") == []
    assert labeling.library.get("fruit", image_id).data["labeled"] is False


def test_a_rename_with_no_one_labeling_records_who_renamed(labeling: Labeling) -> None:
    image_id = _image(labeling, "fruit")
    _label(labeling, "fruit", image_id, "apple")
    assert labeling.curation.rename_tag("fruit", "apple", "pear", merge=True)["images_changed"] == 1
    assert _no_image_names_a_missing_tag(labeling, "fruit") == ["pear"]
    latest = labeling.history.list("fruit", image_id)[0][0]
    assert (latest["who"], latest["source"]) == ("curator", "bulk")
    # A tag made again under the old name is a tag like any other.
    labeling.projects.create_tag("fruit", "apple")
    _label(labeling, "fruit", image_id, "apple")
    assert _no_image_names_a_missing_tag(labeling, "fruit") == ["apple"]
