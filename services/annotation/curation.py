"""Changes to many images at once: renaming and deleting tags, bulk tag and split changes, bulk
deletes, deleting a project with everything it stored.

Every change of an image goes through `ImageLibrary` (`set_labels`, `set_split`, `delete`), label
changes with the image's etag, so a concurrent edit is never overwritten blindly (the change is re-read
and retried) and whatever the library records about label changes records these too, under the
caller's name (`who`); the new labels are the project's rules applied (`Project.renamed`, `retagged`).

A rename or delete marks the tag (`ProjectCatalog.retire_tag`) before it looks for the images
carrying it, and someone labeling at the same time reads the tags after writing (`ImageLibrary`):
an image labeled with the old name while the tag was renamed ends up with the new name either way.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from visiondock.blob_keys import PROJECT_PREFIXES, project_folder, review_blob_key
from visiondock.captures import summaries_of_project
from visiondock.errors import Conflict, InvalidInput, NotFound
from visiondock.storage import (
    BlobStore,
    Document,
    DocumentExistsError,
    DocumentNotFoundError,
    DocumentStore,
    Filter,
    PreconditionFailedError,
    Query,
)

from .history import LABEL_HISTORY, LabelChange
from .images import IMAGES, ImageLibrary
from .project import Labels, Project, ProjectRef
from .projects import PROJECTS, TAG_CHANGES, TAGS, ProjectCatalog
from .review import REVIEW_ITEMS

MAX_BULK_IDS = 1000
RETRIES = 3

log = logging.getLogger(__name__)


class Curation:
    def __init__(self, documents: DocumentStore, blobs: BlobStore, projects: ProjectCatalog,
                 library: ImageLibrary, *, who: str = LabelChange().who) -> None:
        self.documents = documents
        self.blobs = blobs
        self.projects = projects
        self.library = library
        self.change = LabelChange(who=who, source="bulk")

    # -- tags ------------------------------------------------------------------------
    def _tag(self, project: Project, name: str) -> dict[str, Any]:
        try:
            return self.documents.get(TAGS, name, partition_key=project.id).data
        except DocumentNotFoundError:
            raise NotFound(f"tag {name!r} does not exist in project {project.id!r}") from None

    def _carrying(self, project_id: str, name: str) -> list[Document]:
        query = Query(partition_key=project_id, filters=[Filter("tags", "contains", name)], order_by="created_at")
        return list(self.documents.query_all(IMAGES, query))

    def tag(self, project: ProjectRef, name: str) -> dict[str, Any]:
        project = self.projects.resolve(project)
        return {**self._tag(project, name), "image_count": len(self._carrying(project.id, name))}

    def rename_tag(self, project: ProjectRef, name: str, new_name: str, *, merge: bool = False) -> dict[str, Any]:
        """Rename a tag on every image; into an existing tag only with `merge`."""
        project = self.projects.resolve(project)
        project_id = project.id
        old = self._tag(project, name)
        if new_name == name:
            return {"name": name, "image_count": len(self._carrying(project_id, name)), "images_changed": 0}
        try:
            self.documents.create(TAGS, {"id": new_name, "name": new_name, "created_at": old["created_at"]},
                                  partition_key=project_id)
        except DocumentExistsError:
            if not merge:
                count = len(self._carrying(project_id, new_name))
                raise Conflict(f"tag {new_name!r} already exists (on {count} images); rename with merge to join "
                               f"{name!r} into it", code="tag_exists") from None
        self.projects.retire_tag(project_id, name, renamed_to=new_name)
        changed = self._relabel(project, name, lambda tag: new_name if tag == name else tag)
        self.documents.delete(TAGS, name, partition_key=project_id)
        return {"name": new_name, "image_count": len(self._carrying(project_id, new_name)), "images_changed": changed}

    def delete_tag(self, project: ProjectRef, name: str, *, confirm: bool = False) -> dict[str, Any]:
        """Delete a tag and take it off every image; refused (409) while images carry it, unless confirmed."""
        project = self.projects.resolve(project)
        project_id = project.id
        self._tag(project, name)
        count = len(self._carrying(project_id, name))
        if count and not confirm:
            raise Conflict(f"tag {name!r} is on {count} image{'s' * (count != 1)}; deleting it takes it off them "
                           f"(multiclass images become unlabeled, boxes of it are removed): confirm to go on",
                           code="tag_in_use")
        self.projects.retire_tag(project_id, name, renamed_to=None)
        changed = self._relabel(project, name, lambda tag: None if tag == name else tag)
        self.documents.delete(TAGS, name, partition_key=project_id)
        return {"name": name, "image_count": 0, "images_changed": changed}

    def _relabel(self, project: Project, name: str, change: Callable[[str], str | None]) -> int:
        """Apply `change` (new name, or None to drop) to every label naming `name`; images changed."""
        changed = 0
        for doc in self._carrying(project.id, name):
            changed += self._update(project, doc, lambda labels: project.renamed(labels, change))
        return changed

    def _update(self, project: Project, doc: Document, relabel: Callable[[Labels], Labels]) -> int:
        """Write `relabel(its labels)` to one image with its etag, re-reading on a concurrent change; 1 if
        changed."""
        for _ in range(RETRIES):
            labels = Labels.of(doc.data)
            wanted = relabel(labels)
            if wanted == labels:
                return 0
            try:
                self.library.set_labels(project, doc.id, wanted, if_match=doc.etag, change=self.change)
                return 1
            except PreconditionFailedError:
                doc = self.library.get(project, doc.id)
        raise Conflict(f"image {doc.id} kept changing while it was relabeled; try again")

    # -- bulk changes ----------------------------------------------------------------
    @staticmethod
    def _check_ids(image_ids: Sequence[str]) -> list[str]:
        if len(image_ids) > MAX_BULK_IDS:
            raise InvalidInput(f"at most {MAX_BULK_IDS} image ids per call; got {len(image_ids)}")
        return list(dict.fromkeys(image_ids))

    def bulk_tags(self, project: ProjectRef, image_ids: Sequence[str], *, add: Sequence[str] = (),
                  remove: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Add and remove tags on many images; a multiclass image's one tag is replaced by the added one."""
        project = self.projects.resolve(project)
        adding = project.tag_labels(add).tags
        self.projects.require_tags(project.id, adding)
        removing = set(remove)

        def retag(labels: Labels) -> Labels:
            return Labels(project.retagged(labels.tags, add=adding, remove=removing))

        return self._each(project, image_ids, lambda doc: self._update(project, doc, retag))

    def bulk_split(self, project: ProjectRef, image_ids: Sequence[str], split: str | None) -> list[dict[str, Any]]:
        project = self.projects.resolve(project)

        def move(doc: Document) -> int:
            if doc.data.get("split") == split:
                return 0
            self.library.set_split(project, doc.id, split, if_match=None)
            return 1

        return self._each(project, image_ids, move)

    def bulk_delete(self, project: ProjectRef, image_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Delete many images (document, bytes, thumbnail), each as `DELETE .../images/{id}` does."""
        project = self.projects.resolve(project)

        def remove(doc: Document) -> int:
            self.library.delete(project, doc.id, if_match=None)
            return 1

        return self._each(project, image_ids, remove, done="deleted")

    def _each(self, project: Project, image_ids: Sequence[str], apply: Callable[[Document], int], *,
              done: str = "updated") -> list[dict[str, Any]]:
        results = []
        for image_id in self._check_ids(image_ids):
            try:
                doc = self.library.get(project, image_id)
                status = done if apply(doc) else "unchanged"
                results.append({"id": image_id, "status": status, "error": None})
            except NotFound:  # not in the project, or gone meanwhile
                results.append({"id": image_id, "status": "not_found", "error": "no such image in the project"})
            except (InvalidInput, Conflict) as exc:
                results.append({"id": image_id, "status": "rejected", "error": exc.message})
        return results

    # -- projects --------------------------------------------------------------------
    def delete_project(self, project: ProjectRef, *, confirm: bool = False) -> dict[str, Any]:
        """Delete a project, its images, tags, review items, label history and capture summaries, and every
        blob under its folders.

        Documents go before their blobs (a blob without a document is invisible); the project's own
        document goes last, so an interrupted deletion can simply be run again."""
        project = self.projects.resolve(project)
        project_id = project.id
        partition = Query(partition_key=project_id)
        images = self.library.image_ids(project)
        if images and not confirm:
            raise Conflict(f"project {project_id!r} has {len(images)} image{'s' * (len(images) != 1)}; deleting "
                           "it deletes them and everything stored with them: confirm to go on",
                           code="project_not_empty")
        self.library.delete_all(project, images)
        items = [doc.id for doc in self.documents.query_all(REVIEW_ITEMS, partition)]
        for item_id in items:
            self._delete_document(REVIEW_ITEMS, item_id, project_id)
            self.blobs.delete(review_blob_key(project_id, item_id))
        for collection in (TAGS, TAG_CHANGES, LABEL_HISTORY):  # the label history must not outlive the project
            for doc_id in [doc.id for doc in self.documents.query_all(collection, partition)]:
                self._delete_document(collection, doc_id, project_id)
        summaries_of_project(self.documents, project_id)  # what was captured for it, across models
        blobs = 0
        for prefix in PROJECT_PREFIXES:  # thumbnails, and anything a crash left behind
            for info in list(self.blobs.list(project_folder(prefix, project_id))):
                blobs += int(self.blobs.delete(info.key))
        self._delete_document(PROJECTS, project_id, project_id)
        log.info("deleted project %s: %d images, %d review items", project_id, len(images), len(items))
        return {"project": project_id, "images_deleted": len(images), "review_items_deleted": len(items),
                "other_blobs_deleted": blobs}

    def _delete_document(self, collection: str, doc_id: str, partition: str) -> None:
        with contextlib.suppress(DocumentNotFoundError):  # deleted meanwhile
            self.documents.delete(collection, doc_id, partition_key=partition)
