"""The DocumentStore interface: collections of JSON documents keyed by (partition key, id).

Shaped after Azure Cosmos DB so the embedded SQLite backend and the Cosmos backend
behave the same:

- every document has a string `id`, unique within its partition;
- every write returns a new opaque `etag`; passing it back as `if_match` makes the
  write conditional, and a stale etag raises `ConflictError`;
- queries take simple filters and one ordering field, and page with opaque
  continuation tokens (never OFFSET), so a page is cheap however deep it is.

Fields whose names start with an underscore are reserved for the stores.
"""

from __future__ import annotations

import base64
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

FilterOp = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "contains"]
FILTER_OPS: tuple[str, ...] = ("eq", "ne", "lt", "le", "gt", "ge", "in", "contains")
MAX_PAGE_SIZE = 1000


class DocumentError(Exception):
    """Base class of document storage errors."""


class DocumentNotFoundError(DocumentError, KeyError):
    def __init__(self, collection: str, doc_id: str) -> None:
        super().__init__(collection, doc_id)
        self.collection = collection
        self.doc_id = doc_id

    def __str__(self) -> str:
        return f"document {self.doc_id!r} not found in {self.collection!r}"


class ConflictError(DocumentError):
    """A write lost a race: the document exists already, or its etag has changed."""


class DocumentExistsError(ConflictError):
    def __init__(self, collection: str, doc_id: str) -> None:
        super().__init__(f"document {doc_id!r} already exists in {collection!r}")
        self.collection = collection
        self.doc_id = doc_id


class PreconditionFailedError(ConflictError):
    def __init__(self, collection: str, doc_id: str) -> None:
        super().__init__(f"document {doc_id!r} in {collection!r} was changed by another writer (stale etag)")
        self.collection = collection
        self.doc_id = doc_id


class InvalidQueryError(DocumentError, ValueError):
    """A filter, ordering field or continuation token that the store cannot use."""


@dataclass(frozen=True)
class Document:
    """A stored JSON object. `data` always holds `id`; `etag` changes on every write."""

    id: str
    partition_key: str
    etag: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Filter:
    """`field` `op` `value`; `field` may be a dotted path into nested objects.

    `contains`: the field is an array that has `value` as an element.
    `in`: the field equals one of the values in the list `value`.
    A document without the field never matches, whatever the operator.
    """

    field: str
    op: FilterOp
    value: Any

    def __post_init__(self) -> None:
        if self.op not in FILTER_OPS:
            raise InvalidQueryError(f"unknown filter operator {self.op!r}; use one of {', '.join(FILTER_OPS)}")
        validate_field_path(self.field)
        if self.op == "in" and not isinstance(self.value, list | tuple):
            raise InvalidQueryError("the 'in' operator takes a list of values")


@dataclass(frozen=True)
class Page:
    items: list[Document]
    # Opaque; pass back to get the next page. None when there are no more.
    continuation: str | None = None


@dataclass(frozen=True)
class Query:
    """What to read from a collection; the stores translate it to SQL or Cosmos SQL."""

    partition_key: str | None = None  # None queries across partitions
    filters: Sequence[Filter] = field(default_factory=tuple)
    order_by: str = "id"
    descending: bool = False


def validate_field_path(path: str) -> str:
    parts = path.split(".")
    for part in parts:
        if not part or not (part[0].isalpha() or part[0] == "_") or not part.replace("_", "").isalnum():
            raise InvalidQueryError(f"invalid field path {path!r}: use dotted names of letters, digits and _")
    return path


def validate_id(doc_id: str) -> str:
    if not isinstance(doc_id, str) or not doc_id or len(doc_id) > 255:
        raise DocumentError("document id must be a non-empty string of at most 255 characters")
    if any(c in doc_id for c in "/\\?#") or doc_id != doc_id.strip():
        raise DocumentError(f"document id {doc_id!r} must not contain / \\ ? # or surrounding spaces")
    return doc_id


def check_user_fields(data: Mapping[str, Any]) -> None:
    for key in data:
        if key.startswith("_"):
            raise DocumentError(f"field {key!r}: names starting with '_' are reserved for the store")


def encode_token(state: Mapping[str, Any]) -> str:
    raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        state = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidQueryError("continuation token is not valid; start again without it") from exc
    if not isinstance(state, dict):
        raise InvalidQueryError("continuation token is not valid; start again without it")
    return state


class DocumentStore(ABC):
    """JSON documents by (collection, partition key, id) with optimistic concurrency."""

    @abstractmethod
    def create(self, collection: str, data: Mapping[str, Any], *, partition_key: str) -> Document:
        """Insert a new document (`data["id"]` required); DocumentExistsError if the id is taken."""

    @abstractmethod
    def put(
        self,
        collection: str,
        data: Mapping[str, Any],
        *,
        partition_key: str,
        if_match: str | None = None,
    ) -> Document:
        """Insert or replace. With `if_match`, the document must exist with that etag
        (DocumentNotFoundError / PreconditionFailedError otherwise)."""

    @abstractmethod
    def get(self, collection: str, doc_id: str, *, partition_key: str) -> Document: ...

    @abstractmethod
    def patch(
        self,
        collection: str,
        doc_id: str,
        *,
        partition_key: str,
        set_fields: Mapping[str, Any] | None = None,
        remove_fields: Sequence[str] = (),
        if_match: str | None = None,
    ) -> Document:
        """Set and remove top-level fields of an existing document, leaving the others as they are.
        Without `if_match` concurrent patches of different fields all take effect."""

    @abstractmethod
    def delete(self, collection: str, doc_id: str, *, partition_key: str, if_match: str | None = None) -> None:
        """Remove a document; DocumentNotFoundError when missing."""

    @abstractmethod
    def query(
        self,
        collection: str,
        query: Query | None = None,
        *,
        limit: int = 100,
        continuation: str | None = None,
    ) -> Page:
        """One page of matching documents ordered by `query.order_by`. Paging through every
        page yields each matching document exactly once, documents with equal values in a
        stable order. Every document must have the ordering field."""

    def query_all(self, collection: str, query: Query | None = None, *, page_size: int = 500) -> Iterator[Document]:
        """Every matching document, page after page."""
        token: str | None = None
        while True:
            page = self.query(collection, query, limit=page_size, continuation=token)
            yield from page.items
            if page.continuation is None:
                return
            token = page.continuation

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections held by the backend."""
