"""Projects and their tags.

A project is partition `<project id>` of the `projects` collection; its tags are
documents of the `tags` collection in the same partition, keyed by tag name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from visiondock.errors import Conflict, InvalidInput, NotFound
from visiondock.storage import DocumentExistsError, DocumentNotFoundError, DocumentStore, Query
from visiondock.timeutil import utc_now

PROJECTS = "projects"
TAGS = "tags"


class ProjectCatalog:
    def __init__(self, documents: DocumentStore) -> None:
        self.documents = documents

    def create(self, project_id: str, project_type: str, *, description: str = "",
               tags: Iterable[str] = ()) -> dict[str, Any]:
        tag_names = list(dict.fromkeys(tags))
        project = {"id": project_id, "type": project_type, "description": description, "created_at": utc_now()}
        try:
            stored = self.documents.create(PROJECTS, project, partition_key=project_id)
        except DocumentExistsError:
            raise Conflict(f"project {project_id!r} already exists") from None
        for name in tag_names:
            self._create_tag(project_id, name, exist_ok=True)
        return stored.data

    def get(self, project_id: str) -> dict[str, Any]:
        try:
            return self.documents.get(PROJECTS, project_id, partition_key=project_id).data
        except DocumentNotFoundError:
            raise NotFound(f"project {project_id!r} does not exist") from None

    def list(self, *, limit: int, continuation: str | None) -> tuple[list[dict[str, Any]], str | None]:
        page = self.documents.query(PROJECTS, Query(order_by="created_at"), limit=limit, continuation=continuation)
        return [doc.data for doc in page.items], page.continuation

    def create_tag(self, project_id: str, name: str) -> dict[str, Any]:
        self.get(project_id)
        return self._create_tag(project_id, name, exist_ok=False)

    def _create_tag(self, project_id: str, name: str, *, exist_ok: bool) -> dict[str, Any]:
        try:
            return self.documents.create(TAGS, {"id": name, "name": name, "created_at": utc_now()},
                                         partition_key=project_id).data
        except DocumentExistsError:
            if exist_ok:
                return self.documents.get(TAGS, name, partition_key=project_id).data
            raise Conflict(f"tag {name!r} already exists in project {project_id!r}") from None

    def list_tags(self, project_id: str) -> list[dict[str, Any]]:
        self.get(project_id)
        query = Query(partition_key=project_id, order_by="created_at")
        return [doc.data for doc in self.documents.query_all(TAGS, query)]

    def require_tags(self, project_id: str, names: Iterable[str]) -> None:
        """Refuse labels that name tags the project does not have."""
        known = {tag["name"] for tag in self.list_tags(project_id)}
        unknown = sorted(set(names) - known)
        if unknown:
            raise InvalidInput(
                f"unknown tag(s) {', '.join(repr(n) for n in unknown)} in project {project_id!r}; "
                f"create them first (POST /v1/projects/{project_id}/tags)",
                code="unknown_tag",
            )
