"""The DocumentStore interface: collections of JSON documents keyed by (partition key, id).

Shaped after Azure Cosmos DB so the embedded SQLite backend and the Cosmos backend
behave the same:

- every document has a string `id`, unique within its partition;
- every write returns a new opaque `etag`; passing it back as `if_match` makes the
  write conditional, and a stale etag raises `ConflictError`;
- queries take simple filters and one ordering field, and page with opaque
  continuation tokens (never OFFSET), so a page is cheap however deep it is.

Fields whose names start with an underscore are reserved for the stores.

Filters compare JSON values by type: a string never equals a number, `true` is not `1`,
and `lt`/`gt` between different types never match. Queries order documents by the JSON
type of the ordering field (null < booleans < numbers < strings), then by its value, then
by partition key and id, so documents with equal values come in a stable order.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

FilterOp = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "contains"]
FILTER_OPS: tuple[str, ...] = ("eq", "ne", "lt", "le", "gt", "ge", "in", "contains")
MAX_PAGE_SIZE = 1000
MAX_PARTITION_KEY_LENGTH = 1024
# Documents one `create_many` takes: Cosmos DB's limit of operations in one transactional batch.
MAX_BATCH_DOCUMENTS = 100

# The JSON types a filter value or an ordering value may have, in their sort order.
TYPE_RANK_NULL, TYPE_RANK_BOOL, TYPE_RANK_NUMBER, TYPE_RANK_STRING = 0, 1, 2, 3

_COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")  # used with fullmatch


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

    Values are JSON scalars: strings, numbers, booleans or None (JSON null).
    `eq`: the field has the value's type and equals it; `eq None` matches a null field.
    `ne`: the field is present and not null, and does not `eq` the value (so a field of
    another type matches); `ne None` matches every present, non-null field.
    `lt`, `le`, `gt`, `ge`: the field has the value's type and compares so; None is refused.
    `in`: the field `eq`s one of the values in the list `value` (None matches null).
    `contains`: the field is an array with an element that `eq`s `value`.
    A document without the field never matches, whatever the operator.
    """

    field: str
    op: FilterOp
    value: Any

    def __post_init__(self) -> None:
        if self.op not in FILTER_OPS:
            raise InvalidQueryError(
                f"unknown filter operator {self.op!r}; use one of {', '.join(FILTER_OPS)}"
            )
        validate_query_field(self.field)
        if self.op == "in":
            if not isinstance(self.value, list | tuple):
                raise InvalidQueryError("the 'in' operator takes a list of values")
            for value in self.value:
                type_rank(value)
        else:
            type_rank(self.value)
        if self.op in ("lt", "le", "gt", "ge") and self.value is None:
            raise InvalidQueryError(f"operator {self.op!r} cannot compare with null")


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
    # Documents without this field, or whose value is an array or object, are left out.
    order_by: str = "id"
    descending: bool = False

    def __post_init__(self) -> None:
        if self.partition_key is not None:
            try:
                validate_partition_key(self.partition_key)
            except DocumentError as exc:
                raise InvalidQueryError(str(exc)) from None
        validate_query_field(self.order_by)
        for flt in self.filters:
            if not isinstance(flt, Filter):
                raise InvalidQueryError(f"query filters must be Filter objects, got {type(flt).__name__}")


def validate_field_path(path: str) -> str:
    parts = path.split(".")
    for part in parts:
        if not part or not (part[0].isalpha() or part[0] == "_") or not part.replace("_", "").isalnum():
            raise InvalidQueryError(f"invalid field path {path!r}: use dotted names of letters, digits and _")
    return path


def validate_query_field(path: str) -> str:
    """A field path a query may filter or order on: not one of the stores' reserved fields."""
    if not isinstance(path, str):
        raise InvalidQueryError(f"a field path is a string, got {type(path).__name__}")
    validate_field_path(path)
    if path.startswith("_"):
        raise InvalidQueryError(f"field {path!r}: names starting with '_' are reserved for the store")
    return path


def type_rank(value: Any) -> int:
    """Where a scalar's JSON type sorts: null < booleans < numbers < strings."""
    if value is None:
        return TYPE_RANK_NULL
    if isinstance(value, bool):
        return TYPE_RANK_BOOL
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidQueryError("NaN and infinities are not JSON numbers")
        return TYPE_RANK_NUMBER
    if isinstance(value, str):
        return TYPE_RANK_STRING
    raise InvalidQueryError(
        f"filters and orderings use strings, numbers, booleans or None, got {type(value).__name__}"
    )


# What `field_value` returns for a path the document does not have.
MISSING: Any = object()


def field_value(data: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or the `MISSING` sentinel when some part is absent."""
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return MISSING
        value = value[part]
    return value


def sort_key(document: Document, order_by: str) -> tuple[int, Any, str, str]:
    """The key a query orders documents by; the stores page in exactly this order."""
    value = field_value(document.data, order_by)
    return type_rank(value), value, document.partition_key, document.id


def _query_fingerprint(collection: str, query: Query) -> str:
    shape = {
        "c": collection,
        "pk": query.partition_key,
        "f": [[f.field, f.op, list(f.value) if f.op == "in" else f.value] for f in query.filters],
        "o": query.order_by,
        "d": query.descending,
    }
    raw = json.dumps(shape, separators=(",", ":"), sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def encode_page_token(collection: str, query: Query, last: Document) -> str:
    """A continuation token for the page after `last`: its sort key, tied to this query."""
    return encode_token({
        "q": _query_fingerprint(collection, query),
        "v": field_value(last.data, query.order_by),
        "pk": last.partition_key,
        "id": last.id,
    })


def decode_page_token(collection: str, query: Query, token: str) -> tuple[Any, str, str]:
    """The (ordering value, partition key, id) of the last document of the previous page."""
    state = decode_token(token)
    if state.get("q") != _query_fingerprint(collection, query):
        raise InvalidQueryError("continuation token belongs to another query; start again without it")
    value, pk, doc_id = state.get("v", MISSING), state.get("pk"), state.get("id")
    if not isinstance(pk, str) or not isinstance(doc_id, str) or value is MISSING:
        raise InvalidQueryError("continuation token is not valid; start again without it")
    type_rank(value)
    return value, pk, doc_id


def validate_collection(name: str) -> str:
    if not isinstance(name, str) or not _COLLECTION_NAME.fullmatch(name):
        raise DocumentError(
            f"invalid collection name {name!r}: use 1 to 255 letters, digits and ._-,"
            " starting with a letter or digit"
        )
    return name


def validate_page_size(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidQueryError(f"page size must be between 1 and {MAX_PAGE_SIZE}")
    return limit


def validate_partition_key(partition_key: str) -> str:
    if not isinstance(partition_key, str) or not 1 <= len(partition_key) <= MAX_PARTITION_KEY_LENGTH:
        raise DocumentError(
            f"partition key must be a non-empty string of at most {MAX_PARTITION_KEY_LENGTH} characters"
        )
    return partition_key


def validate_id(doc_id: str) -> str:
    if not isinstance(doc_id, str) or not doc_id or len(doc_id) > 255:
        raise DocumentError("document id must be a non-empty string of at most 255 characters")
    if any(c in doc_id for c in "/\\?#") or doc_id != doc_id.strip():
        raise DocumentError(f"document id {doc_id!r} must not contain / \\ ? # or surrounding spaces")
    return doc_id


def check_user_fields(data: Mapping[str, Any] | Sequence[str]) -> None:
    for key in data:
        if not isinstance(key, str):
            raise DocumentError(f"field names are strings, got {key!r}")
        if key.startswith("_"):
            raise DocumentError(f"field {key!r}: names starting with '_' are reserved for the store")


def clean_body(data: Mapping[str, Any]) -> dict[str, Any]:
    """A deep, JSON-clean copy of a document's user fields, with a valid id."""
    check_user_fields(data)
    body: dict[str, Any] = json.loads(json.dumps(dict(data)))
    validate_id(body.get("id", ""))
    return body


def batch_bodies(documents: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The bodies of a `create_many` (each as `clean_body` makes it), checked: a list of at most
    MAX_BATCH_DOCUMENTS documents with distinct ids."""
    if isinstance(documents, Mapping | str) or not isinstance(documents, Sequence):
        raise DocumentError("create_many takes a list of documents")
    if len(documents) > MAX_BATCH_DOCUMENTS:
        raise DocumentError(f"at most {MAX_BATCH_DOCUMENTS} documents are created together; got {len(documents)}")
    bodies = [clean_body(data) for data in documents]
    seen: set[str] = set()
    for body in bodies:
        if body["id"] in seen:
            raise DocumentError(f"document id {body['id']!r} appears twice in one create_many")
        seen.add(body["id"])
    return bodies


def patch_changes(
    set_fields: Mapping[str, Any] | None, remove_fields: Sequence[str]
) -> tuple[dict[str, Any], list[str]]:
    """A patch's fields to set (a deep, JSON-clean copy) and to remove, checked."""
    changes = dict(set_fields or {})
    if isinstance(remove_fields, str):
        raise DocumentError("remove_fields takes a list of field names, not one string")
    removals = list(remove_fields)
    check_user_fields(changes)
    check_user_fields(removals)
    if "id" in changes or "id" in removals:
        raise InvalidQueryError("a document's id cannot be patched")
    return json.loads(json.dumps(changes)), removals


def encode_token(state: Mapping[str, Any]) -> str:
    raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    if not isinstance(token, str):
        raise InvalidQueryError("continuation token is not valid; start again without it")
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
    def create_many(
        self, collection: str, documents: Sequence[Mapping[str, Any]], *, partition_key: str
    ) -> list[Document]:
        """Insert up to MAX_BATCH_DOCUMENTS new documents of one partition together, in one round trip
        where the backend has one: all of them, or none. When any cannot be written (DocumentExistsError
        for an id that is taken, or any other error), the call raises and none of them is stored; the
        documents come back in the order given. A backend whose service runs the batch as one transaction
        (SQLite, Cosmos DB) never shows a reader part of it; one that cannot (see documents_cosmos.py)
        removes again what went in before it raises."""

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
    def delete(
        self, collection: str, doc_id: str, *, partition_key: str, if_match: str | None = None
    ) -> None:
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
        """One page of at most `limit` (1 to MAX_PAGE_SIZE) matching documents in `sort_key`
        order: by the ordering field's JSON type and value, then partition key, then id.
        Paging through every page yields each matching document exactly once; a document
        written between pages shows up if it sorts after the previous page. Documents without
        the ordering field, or whose value is an array or object, are left out."""

    def query_all(
        self, collection: str, query: Query | None = None, *, page_size: int = 500
    ) -> Iterator[Document]:
        """Every matching document, page after page."""
        token: str | None = None
        while True:
            page = self.query(collection, query, limit=page_size, continuation=token)
            yield from page.items
            if page.continuation is None:
                return
            token = page.continuation

    def prepare_collections(self, collections: Iterable[str]) -> None:  # noqa: B027 - optional hook
        """Create these collections' storage ahead of use, where the backend keeps it apart (Cosmos DB
        containers). The embedded store needs nothing."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections held by the backend."""
