"""Projects and their tags.

`get` reads a project into a `Project` (`project.py`: its type and the rules its labels follow),
which callers pass on instead of its id so that a request reads it once.

A project is partition `<project id>` of the `projects` collection; its tags are
documents of the `tags` collection in the same partition, keyed by tag name.

A tag being renamed or deleted is marked first (`renamed_to`: its new name, or null) and leaves
a record in `tag_changes` (same partition, keyed by the old name) that outlives it: whoever
writes labels naming a tag that is marked or gone reads where it went (`retired`) and follows.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

from visiondock.errors import Conflict, InvalidInput, NotFound
from visiondock.storage import DocumentExistsError, DocumentNotFoundError, DocumentStore, Query
from visiondock.timeutil import utc_now

from .project import Project, ProjectRef

PROJECTS = "projects"
TAGS = "tags"
TAG_CHANGES = "tag_changes"


class ProjectCatalog:
    def __init__(self, documents: DocumentStore) -> None:
        self.documents = documents

    def create(self, project_id: str, project_type: str, *, description: str = "",
               tags: Iterable[str] = ()) -> Project:
        tag_names = list(dict.fromkeys(tags))
        project = {"id": project_id, "type": project_type, "description": description, "created_at": utc_now()}
        try:
            stored = self.documents.create(PROJECTS, project, partition_key=project_id)
        except DocumentExistsError:
            raise Conflict(f"project {project_id!r} already exists") from None
        for name in tag_names:
            self._create_tag(project_id, name, exist_ok=True)
        return Project.of(stored.data)

    def get(self, project_id: str) -> Project:
        try:
            return Project.of(self.documents.get(PROJECTS, project_id, partition_key=project_id).data)
        except DocumentNotFoundError:
            raise NotFound(f"project {project_id!r} does not exist") from None

    def resolve(self, project: ProjectRef) -> Project:
        """The project itself, read here when only its id is given (NotFound when there is none)."""
        return project if isinstance(project, Project) else self.get(project)

    def list(self, *, limit: int, continuation: str | None) -> tuple[list[dict[str, Any]], str | None]:
        page = self.documents.query(PROJECTS, Query(order_by="created_at"), limit=limit, continuation=continuation)
        return [doc.data for doc in page.items], page.continuation

    def create_tag(self, project: ProjectRef, name: str) -> dict[str, Any]:
        return self._create_tag(self.resolve(project).id, name, exist_ok=False)

    def _create_tag(self, project_id: str, name: str, *, exist_ok: bool) -> dict[str, Any]:
        try:
            return self.documents.create(TAGS, {"id": name, "name": name, "created_at": utc_now()},
                                         partition_key=project_id).data
        except DocumentExistsError:
            if exist_ok:
                return self.documents.get(TAGS, name, partition_key=project_id).data
            raise Conflict(f"tag {name!r} already exists in project {project_id!r}") from None

    def list_tags(self, project: ProjectRef) -> builtins.list[dict[str, Any]]:
        return self._tags(self.resolve(project).id)

    def _tags(self, project_id: str) -> builtins.list[dict[str, Any]]:
        query = Query(partition_key=project_id, order_by="created_at")
        return [doc.data for doc in self.documents.query_all(TAGS, query)]

    def tag_names(self, project: ProjectRef) -> set[str]:
        return {tag["name"] for tag in self.list_tags(project)}

    def retire_tag(self, project_id: str, name: str, *, renamed_to: str | None) -> None:
        """Say that `name` is going (to `renamed_to`, or deleted): the record first, then the mark."""
        self.documents.put(TAG_CHANGES, {"id": name, "name": name, "renamed_to": renamed_to, "at": utc_now()},
                           partition_key=project_id)
        self.documents.patch(TAGS, name, partition_key=project_id, set_fields={"renamed_to": renamed_to})

    def retired(self, project_id: str, names: Iterable[str]) -> dict[str, str | None]:
        """Of `names`, those that are being renamed or deleted or are gone, each with its new name (None:
        deleted, or never a tag of the project)."""
        found: dict[str, str | None] = {}
        for name in set(names):
            try:
                data = self.documents.get(TAGS, name, partition_key=project_id).data
            except DocumentNotFoundError:
                data = None
            if data is not None:
                if "renamed_to" in data:
                    found[name] = data["renamed_to"]
                continue
            try:
                found[name] = self.documents.get(TAG_CHANGES, name, partition_key=project_id).data["renamed_to"]
            except DocumentNotFoundError:
                found[name] = None
        return found

    def require_tags(self, project_id: str, names: Iterable[str]) -> None:
        """Refuse labels that name tags the project (read already) does not have."""
        wanted = set(names)
        unknown = sorted(wanted - {tag["name"] for tag in self._tags(project_id)}) if wanted else []
        if unknown:
            raise InvalidInput(
                f"unknown tag(s) {', '.join(repr(n) for n in unknown)} in project {project_id!r}; "
                f"create them first (POST /v1/projects/{project_id}/tags)",
                code="unknown_tag",
            )
