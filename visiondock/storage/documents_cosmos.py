"""DocumentStore on Azure Cosmos DB (API for NoSQL), through the synchronous SDK.

Layout: one Cosmos container per collection, partitioned on the reserved field `_pk`
that holds the caller's partition key. Fields starting with `_` are reserved for the
stores, so `_pk` never collides with user data; it and the system fields (`_rid`,
`_self`, `_etag`, `_attachments`, `_ts`, ...) are stripped from `Document.data`, which
holds exactly what the SQLite store returns. Writes create a collection's container on
first use; reads never do (a container may carry provisioned throughput): reading a
collection never written answers "not found" or an empty page.

Concurrency: the etag is Cosmos' `_etag`; `if_match` becomes If-Match, and 412 comes out
as PreconditionFailedError, 409 on create as DocumentExistsError. `patch` reads, merges
the top-level fields and replaces with the etag it read, retrying a lost race when the
caller gave no `if_match`. Cosmos' own PATCH is not used: its `remove` fails on an
absent field, where our `patch` ignores it.

Paging: keyset paging with our own opaque token (`encode_page_token`: the last
document's ordering value, partition key and id, tied to the query it came from), like
the SQLite store. The SDK's native continuation tokens were not used: for cross-partition
ORDER BY they come from the SDK's client-side query pipeline on real Cosmos DB but
straight from the server on emulators that answer the whole query at once, so tokens and
page sizes would behave differently on the two; native pages may come back short or empty
while more follow; and a native token cannot be checked against the query it is handed
with. Keyset paging needs a total order, (JSON type rank, value, partition key, id), but
real Cosmos DB serves ORDER BY over several fields only from a composite index declared
beforehand for exactly those fields and directions, and the ordering field is chosen per
query. So every query here orders by ONE field, which the default range index serves,
and ties are broken one level at a time:

    level 0: ORDER BY the ordering field        (groups of equal values)
    level 1: ORDER BY _pk, within one value     (only when querying across partitions)
    level 2: ORDER BY id, within value and _pk  (unique there, so the order is total)

A page asks level 0 for TOP n+1 documents. Groups of equal values before the last are
complete, so they are sorted by (partition key, id) here; the last group may go on past
what was read, so it is read again, in order, at the next level. Resuming from a token
reads the rest of the token's (value, partition key) group, then of its value group,
then the values after it. Each query reads at most n+1 documents and a page usually
takes one to three queries, however deep it is. Every comparison checks the JSON type
(`IS_NUMBER(x) AND x > @v`), so results never depend on how a server compares values of
different types.

Gaps of the emulator the tests run against (@vercel/cosmosdb-server 1.0.1), found by
trying, and how this module deals with them in a way that is also right on Cosmos DB:

- A point read of a missing item answers 500 ("Cannot read properties of undefined")
  instead of 404. On a 500 from a point read, `get` asks a query by id in the partition:
  no document means DocumentNotFoundError; a document there means the 500 was a real
  server error, raised as DocumentError.
- A query sent with a partition key but without the cross-partition flag is refused
  (400 "missing partition keys") unless its WHERE clause holds `c._pk = ...` at the top
  level, and the server parses the query text again on every such request (several ms).
  Partition-scoped queries here put that equality first in the WHERE clause and also set
  the cross-partition flag; on Cosmos DB the partition key alone scopes the query.
- `!=` between values of different types is true there, and undefined (no match) on
  Cosmos DB; `NOT (a = b)` likewise. Comparisons here are guarded by type checks.
- ORDER BY over several fields needs a composite index matching its directions exactly
  (Cosmos DB also accepts the exact reverse): not used, see above.
- OFFSET/LIMIT, DISTINCT and GROUP BY are not parsed: not used (TOP and keyset paging).
- Compiled queries are cached by their text: TOP is a parameter here, so the text of a
  query stays the same from page to page.
- An empty partition key is mixed up with the document id (documents ("", "x") and
  ("x", "x") collide): partition keys must be non-empty (`validate_partition_key`).
- A point read of an id equal to another item's `_rid` returns that item: ids here
  never look like a `_rid` in practice; not worked around.
- An upsert with If-Match creates a missing item: not used (`put` with `if_match`
  replaces, which answers 404 for a missing item there too).
- Transactional batches (`create_many`) are not atomic there: the operations before a failing
  one stay written (Cosmos DB rolls them back and reports 424 for them). Whatever a failed batch
  reports as written is deleted again here (with its etag, so only that version), which is a
  no-op on Cosmos DB. Batches over Cosmos DB's 2 MB request limit are created one by one, with
  the same undo. On such a server a reader may glimpse a batch's first documents before they
  go again, and a process killed between the writes and the undo leaves them; on Cosmos DB a
  batch is one transaction.
- Reported, not used here: TTL is not enforced.
- Numbers are JavaScript doubles there (integers above 2**53 lose precision; the SQLite
  store keeps them) and strings compare by UTF-16 code unit (characters beyond U+FFFF
  sort differently from Cosmos DB and SQLite). Etags are bare UUIDs: opaque here anyway.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import AzureError
from azure.cosmos import ContainerProxy, CosmosClient, DatabaseProxy, PartitionKey
from azure.cosmos.exceptions import (
    CosmosBatchOperationError,
    CosmosHttpResponseError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from visiondock.storage.documents import (
    MISSING,
    TYPE_RANK_BOOL,
    TYPE_RANK_NULL,
    TYPE_RANK_NUMBER,
    TYPE_RANK_STRING,
    Document,
    DocumentError,
    DocumentExistsError,
    DocumentNotFoundError,
    DocumentStore,
    Filter,
    InvalidQueryError,
    Page,
    PreconditionFailedError,
    Query,
    batch_bodies,
    clean_body,
    decode_page_token,
    encode_page_token,
    field_value,
    patch_changes,
    type_rank,
    validate_collection,
    validate_id,
    validate_page_size,
    validate_partition_key,
)

PARTITION_KEY_FIELD = "_pk"
PATCH_ATTEMPTS = 50
# Cosmos DB refuses a transactional batch whose request body is over 2 MB; room for the framing.
BATCH_MAX_BYTES = 1_900_000

log = logging.getLogger(__name__)

_TYPE_CHECKS = {
    TYPE_RANK_NULL: "IS_NULL",
    TYPE_RANK_BOOL: "IS_BOOL",
    TYPE_RANK_NUMBER: "IS_NUMBER",
    TYPE_RANK_STRING: "IS_STRING",
}
_SQL_OPS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}

_T = TypeVar("_T")


def _path_sql(path: str) -> str:
    # Bracket notation: field names such as `value` or `order` are keywords in Cosmos SQL.
    return "c" + "".join(f'["{part}"]' for part in path.split("."))


def _user_data(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in item.items() if not key.startswith("_")}


def _short_message(exc: AzureError) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


@contextmanager
def _sdk_errors() -> Iterator[None]:
    """Turn whatever the SDK raises that the caller did not map into a DocumentError."""
    try:
        yield
    except DocumentError:
        raise
    except CosmosHttpResponseError as exc:
        if exc.status_code == 400:
            raise InvalidQueryError(f"Cosmos DB refused the request: {_short_message(exc)}") from exc
        raise DocumentError(f"Cosmos DB request failed ({exc.status_code}): {_short_message(exc)}") from exc
    except AzureError as exc:
        raise DocumentError(f"Cosmos DB request failed: {_short_message(exc)}") from exc


class _Sql:
    """A query's text and its parameters, named @p0, @p1, ..."""

    def __init__(self) -> None:
        self.params: list[dict[str, Any]] = []

    def param(self, value: Any) -> str:
        name = f"@p{len(self.params)}"
        self.params.append({"name": name, "value": value})
        return name

    def typed_eq(self, expr: str, value: Any) -> str:
        if value is None:
            return f"IS_NULL({expr})"
        return f"({_TYPE_CHECKS[type_rank(value)]}({expr}) AND {expr} = {self.param(value)})"

    def filter(self, flt: Filter) -> str:
        expr = _path_sql(flt.field)
        if flt.field == "id" and flt.op in ("eq", "in"):
            # Ids are always strings: a plain IN, served by the index, whose text cosmosdb-server
            # compiles in a fraction of the time the typed OR chain takes (a batch of images by hash).
            ids = [value for value in (flt.value if flt.op == "in" else [flt.value]) if isinstance(value, str)]
            return f"{expr} IN ({', '.join(self.param(value) for value in ids)})" if ids else "false"
        if flt.op == "eq":
            return self.typed_eq(expr, flt.value)
        if flt.op == "ne":
            present = f"IS_DEFINED({expr}) AND NOT IS_NULL({expr})"
            if flt.value is None:
                return f"({present})"
            return f"({present} AND NOT {self.typed_eq(expr, flt.value)})"
        if flt.op == "in":
            if not flt.value:
                return "false"
            return "(" + " OR ".join(self.typed_eq(expr, value) for value in flt.value) + ")"
        if flt.op == "contains":
            # ARRAY_CONTAINS compares with `=`, which never matches across types.
            return f"(IS_ARRAY({expr}) AND ARRAY_CONTAINS({expr}, {self.param(flt.value)}))"
        if flt.value is None:
            raise InvalidQueryError(f"operator {flt.op!r} cannot compare with null")
        check = _TYPE_CHECKS[type_rank(flt.value)]
        return f"({check}({expr}) AND {expr} {_SQL_OPS[flt.op]} {self.param(flt.value)})"

    def sorts_after(self, expr: str, value: Any, descending: bool) -> str:
        """True for scalar values that come after `value` in (type rank, value) order."""
        rank = type_rank(value)
        later_ranks = [r for r in _TYPE_CHECKS if (r < rank if descending else r > rank)]
        parts = [f"{_TYPE_CHECKS[r]}({expr})" for r in later_ranks]
        if value is not None:  # all nulls are equal: nothing sorts after null within its rank
            op = "<" if descending else ">"
            parts.append(f"({_TYPE_CHECKS[rank]}({expr}) AND {expr} {op} {self.param(value)})")
        return "(" + " OR ".join(parts) + ")" if parts else "false"


def _typed(value: Any) -> tuple[int, Any]:
    """A value's identity for grouping: Python has True == 1, JSON does not."""
    return type_rank(value), value


class CosmosDocumentStore(DocumentStore):
    def __init__(
        self,
        *,
        endpoint: str,
        key: str | None,
        database: str,
        verify_tls: bool = True,
        endpoint_discovery: bool = True,
        credential: Any = None,
    ) -> None:
        """Signed in with the account `key`, or else a token `credential` (Microsoft Entra ID; such a
        principal can read and write items but not create databases or containers: see provision.py)."""
        self.database_name = database
        if key is None and credential is None:
            raise DocumentError("Cosmos DB needs an account key or a credential")
        with _sdk_errors():
            self._client = CosmosClient(
                endpoint,
                credential=key if key is not None else credential,
                connection_verify=verify_tls,
                enable_endpoint_discovery=endpoint_discovery,
            )
            self._database: DatabaseProxy = self._client.create_database_if_not_exists(id=database)
        self._containers: dict[str, ContainerProxy] = {}
        self._containers_lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def prepare_collections(self, collections: Iterable[str]) -> None:
        for collection in collections:
            self._container(collection, create=True)

    # -- plumbing ----------------------------------------------------------------
    def _container(self, collection: str, *, create: bool = False) -> ContainerProxy:
        """The collection's container. Only writes create it: a read of a collection never
        written answers "not found" or an empty page, and costs no container (each one may
        carry provisioned throughput)."""
        validate_collection(collection)
        container = self._containers.get(collection)
        if container is not None:
            return container
        if not create:
            return self._database.get_container_client(collection)
        with self._containers_lock, _sdk_errors():
            container = self._containers.get(collection)
            if container is None:
                try:
                    container = self._database.create_container_if_not_exists(
                        id=collection, partition_key=PartitionKey(path=f"/{PARTITION_KEY_FIELD}")
                    )
                except CosmosResourceExistsError:  # another process created it between read and create
                    container = self._database.get_container_client(collection)
                self._containers[collection] = container
        return container

    @staticmethod
    def _document(item: Mapping[str, Any]) -> Document:
        return Document(
            id=item["id"], partition_key=item[PARTITION_KEY_FIELD], etag=item["_etag"], data=_user_data(item)
        )

    def _call(self, operation: Callable[[], _T], on_error: Callable[[CosmosHttpResponseError], None]) -> _T:
        """Run one SDK call; `on_error` maps the statuses it knows, the rest become DocumentError."""
        with _sdk_errors():
            try:
                return operation()
            except CosmosHttpResponseError as exc:
                on_error(exc)
                raise

    # -- single documents --------------------------------------------------------
    def create(self, collection: str, data: Mapping[str, Any], *, partition_key: str) -> Document:
        validate_partition_key(partition_key)
        body = clean_body(data)
        body[PARTITION_KEY_FIELD] = partition_key
        return self._create_item(self._container(collection, create=True), collection, body)

    def _create_item(self, container: ContainerProxy, collection: str, body: dict[str, Any]) -> Document:
        def on_error(exc: CosmosHttpResponseError) -> None:
            if exc.status_code == 409:
                raise DocumentExistsError(collection, body["id"]) from None

        return self._document(self._call(lambda: container.create_item(body), on_error))

    def create_many(
        self, collection: str, documents: Sequence[Mapping[str, Any]], *, partition_key: str
    ) -> list[Document]:
        validate_partition_key(partition_key)
        bodies = batch_bodies(documents)
        if not bodies:
            return []
        for body in bodies:
            body[PARTITION_KEY_FIELD] = partition_key
        container = self._container(collection, create=True)
        operations = [("create", (body,)) for body in bodies]
        size = len(json.dumps([{"operationType": "Create", "resourceBody": body} for body in bodies]))
        if len(bodies) == 1 or size > BATCH_MAX_BYTES:
            return self._create_each(container, collection, bodies)
        with _sdk_errors():
            try:
                results = container.execute_item_batch(operations, partition_key=partition_key)
            except CosmosBatchOperationError as exc:
                written: list[tuple[Mapping[str, Any], str | None]] = [
                    (body, response.get("eTag"))
                    for body, response in zip(bodies, exc.operation_responses or [], strict=False)
                    if 200 <= int(response.get("statusCode", 0)) < 300]
                self._undo_creates(container, collection, partition_key, written)
                failed = bodies[exc.error_index or 0]["id"]
                if exc.status_code == 409:
                    raise DocumentExistsError(collection, failed) from None
                raise DocumentError(f"Cosmos DB did not create document {failed!r} of a batch "
                                    f"({exc.status_code}); none of the batch was kept") from exc
        # From what was sent and the etag each operation reports: the service may leave the bodies out.
        return [Document(id=body["id"], partition_key=partition_key, etag=result["eTag"], data=_user_data(body))
                for body, result in zip(bodies, results, strict=True)]

    def _create_each(self, container: ContainerProxy, collection: str, bodies: list[dict[str, Any]]) -> list[Document]:
        """Create one after another; on a failure delete again those created, then raise."""
        created: list[Document] = []
        try:
            for body in bodies:
                created.append(self._create_item(container, collection, body))
        except BaseException:
            partition_key = bodies[0][PARTITION_KEY_FIELD]
            self._undo_creates(container, collection, partition_key,
                               [(doc.data, doc.etag) for doc in created])
            raise
        return created

    def _undo_creates(self, container: ContainerProxy, collection: str, partition_key: str,
                      written: list[tuple[Mapping[str, Any], str | None]]) -> None:
        """Delete documents a failed batch wrote, each only in the version it wrote (a later writer's
        version stays)."""
        for body, etag in written:
            conditions: dict[str, Any] = {}
            if etag:
                conditions = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
            try:
                container.delete_item(body["id"], partition_key=partition_key, **conditions)
            except CosmosHttpResponseError as exc:
                if exc.status_code not in (404, 412):
                    log.error("could not undo the creation of %s/%s in %s after a failed batch: %s",
                              partition_key, body["id"], collection, _short_message(exc))
            except AzureError as exc:
                log.error("could not undo the creation of %s/%s in %s after a failed batch: %s",
                          partition_key, body["id"], collection, _short_message(exc))

    def put(
        self,
        collection: str,
        data: Mapping[str, Any],
        *,
        partition_key: str,
        if_match: str | None = None,
    ) -> Document:
        validate_partition_key(partition_key)
        body = clean_body(data)
        body[PARTITION_KEY_FIELD] = partition_key
        container = self._container(collection, create=if_match is None)
        doc_id = body["id"]
        if if_match is None:
            return self._document(self._call(lambda: container.upsert_item(body), lambda exc: None))
        return self._document(self._replace(container, collection, doc_id, body, if_match))

    def _replace(
        self, container: ContainerProxy, collection: str, doc_id: str, body: dict[str, Any], etag: str
    ) -> dict[str, Any]:
        def on_error(exc: CosmosHttpResponseError) -> None:
            if exc.status_code == 404:
                raise DocumentNotFoundError(collection, doc_id) from None
            if exc.status_code == 412:
                raise PreconditionFailedError(collection, doc_id) from None

        return self._call(
            lambda: container.replace_item(
                doc_id, body, etag=etag, match_condition=MatchConditions.IfNotModified
            ),
            on_error,
        )

    def get(self, collection: str, doc_id: str, *, partition_key: str) -> Document:
        return self._document(self._read(collection, doc_id, partition_key))

    def _read(self, collection: str, doc_id: str, partition_key: str) -> dict[str, Any]:
        validate_partition_key(partition_key)
        validate_id(doc_id)
        container = self._container(collection)

        def on_error(exc: CosmosHttpResponseError) -> None:
            if exc.status_code == 404:
                raise DocumentNotFoundError(collection, doc_id) from None
            if exc.status_code == 500 and not self._exists(container, doc_id, partition_key):
                # cosmosdb-server answers 500 for a missing item; the query says it is missing.
                raise DocumentNotFoundError(collection, doc_id) from None

        return self._call(lambda: container.read_item(doc_id, partition_key=partition_key), on_error)

    def _exists(self, container: ContainerProxy, doc_id: str, partition_key: str) -> bool:
        sql = _Sql()
        text = (
            f'SELECT VALUE c.id FROM c WHERE c["{PARTITION_KEY_FIELD}"] = {sql.param(partition_key)}'
            f" AND c.id = {sql.param(doc_id)}"
        )
        with _sdk_errors():
            found = container.query_items(text, parameters=sql.params, partition_key=partition_key)
            return any(True for _ in found)

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
        changes, removals = patch_changes(set_fields, remove_fields)
        container = self._container(collection)
        for attempt in range(PATCH_ATTEMPTS):
            current = self._read(collection, doc_id, partition_key)
            if if_match is not None and current["_etag"] != if_match:
                raise PreconditionFailedError(collection, doc_id)
            body = _user_data(current)
            body.update(changes)
            for name in removals:
                body.pop(name, None)
            body[PARTITION_KEY_FIELD] = partition_key
            try:
                return self._document(self._replace(container, collection, doc_id, body, current["_etag"]))
            except PreconditionFailedError:
                if if_match is not None:
                    raise
            # Another writer got in between our read and our write: read again and merge
            # onto its version, after a short random pause so racing writers spread out.
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise PreconditionFailedError(collection, doc_id)

    def delete(
        self, collection: str, doc_id: str, *, partition_key: str, if_match: str | None = None
    ) -> None:
        validate_partition_key(partition_key)
        validate_id(doc_id)
        container = self._container(collection)
        conditions: dict[str, Any] = {}
        if if_match is not None:
            conditions = {"etag": if_match, "match_condition": MatchConditions.IfNotModified}

        def on_error(exc: CosmosHttpResponseError) -> None:
            if exc.status_code == 404:
                raise DocumentNotFoundError(collection, doc_id) from None
            if exc.status_code == 412:
                raise PreconditionFailedError(collection, doc_id) from None

        self._call(lambda: container.delete_item(doc_id, partition_key=partition_key, **conditions), on_error)

    # -- queries -----------------------------------------------------------------
    def query(
        self,
        collection: str,
        query: Query | None = None,
        *,
        limit: int = 100,
        continuation: str | None = None,
    ) -> Page:
        validate_collection(collection)
        query = query or Query()
        validate_page_size(limit)
        boundary = decode_page_token(collection, query, continuation) if continuation is not None else None
        container = self._container(collection)
        # The sort key, one level per field; the last level is unique within the ones before it.
        levels = [query.order_by]
        if query.partition_key is None:
            levels.append(PARTITION_KEY_FIELD)
        if query.order_by != "id":
            levels.append("id")
        scan = _KeysetScan(container, query, levels)
        # One more than a page, to learn whether another page follows.
        want = limit + 1
        if boundary is None:
            items = scan.run(depth=0, fixed=[], after=MISSING, want=want)
        else:
            value, last_pk, last_id = boundary
            key = {query.order_by: value, PARTITION_KEY_FIELD: last_pk, "id": last_id}
            boundary_values = [key[level] for level in levels]
            # Resume inside the deepest group first: the rest of the boundary's (value, key)
            # group, then the rest of its value group, then the values after it.
            items = []
            for depth in reversed(range(len(levels))):
                fixed = boundary_values[:depth]
                after = boundary_values[depth]
                items += scan.run(depth=depth, fixed=fixed, after=after, want=want - len(items))
                if len(items) >= want:
                    break
        page = [self._document(item) for item in items[:limit]]
        token = encode_page_token(collection, query, page[-1]) if len(items) > limit else None
        return Page(items=page, continuation=token)


class _KeysetScan:
    """Reads documents in full sort-key order with queries that each order by one field."""

    def __init__(self, container: ContainerProxy, query: Query, levels: list[str]) -> None:
        self.container = container
        self.query = query
        self.levels = levels

    def _level_value(self, item: Mapping[str, Any], depth: int) -> Any:
        return field_value(item, self.levels[depth])

    def _tail_key(self, item: Mapping[str, Any], depth: int) -> tuple[Any, ...]:
        # Levels below the first are the partition key and id: always strings.
        return tuple(self._level_value(item, d) for d in range(depth + 1, len(self.levels)))

    def _fetch(self, depth: int, fixed: list[Any], after: Any, count: int) -> list[dict[str, Any]]:
        """Up to `count` documents with the fixed values on the levels above `depth`, after
        `after` on level `depth` (MISSING: from the start), ordered by that level only."""
        sql = _Sql()
        where: list[str] = []
        partition_key = self.query.partition_key
        if partition_key is None and PARTITION_KEY_FIELD in self.levels[:depth]:
            partition_key = fixed[self.levels.index(PARTITION_KEY_FIELD)]
        if partition_key is not None:
            # First, at the top level: cosmosdb-server looks for it there.
            where.append(f"{_path_sql(PARTITION_KEY_FIELD)} = {sql.param(partition_key)}")
        where.extend(sql.filter(flt) for flt in self.query.filters)
        for level, value in zip(self.levels[:depth], fixed, strict=True):
            if level != PARTITION_KEY_FIELD:  # already the first condition
                where.append(sql.typed_eq(_path_sql(level), value))
        expr = _path_sql(self.levels[depth])
        if depth == 0:
            where.append(f"IS_PRIMITIVE({expr})")
        if after is not MISSING:
            if depth == 0:
                where.append(sql.sorts_after(expr, after, self.query.descending))
            else:  # partition key or id: always strings, no type to check
                where.append(f"{expr} {'<' if self.query.descending else '>'} {sql.param(after)}")
        direction = "DESC" if self.query.descending else "ASC"
        # TOP as a parameter keeps the text the same from page to page, so servers that
        # cache compiled queries by their text (cosmosdb-server does) hit the cache.
        top = sql.param(count)
        text = f"SELECT TOP {top} * FROM c WHERE {' AND '.join(where)} ORDER BY {expr} {direction}"
        # The cross-partition flag is set even with a partition key, which alone scopes the
        # query on Cosmos DB: without it cosmosdb-server parses the text again on every
        # request to look for the partition key (several ms each).
        options: dict[str, Any] = {
            "parameters": sql.params,
            "max_item_count": count,
            "enable_cross_partition_query": True,
        }
        if partition_key is not None:
            options["partition_key"] = partition_key
        with _sdk_errors():
            try:
                return list(self.container.query_items(text, **options))
            except CosmosResourceNotFoundError:  # the collection was never written: nothing matches
                return []

    def run(self, *, depth: int, fixed: list[Any], after: Any, want: int) -> list[dict[str, Any]]:
        """Up to `want` documents in sort-key order, with `fixed` values on the levels above
        `depth` and level `depth` after `after`."""
        found: list[dict[str, Any]] = []
        last_level = depth == len(self.levels) - 1
        while len(found) < want:
            need = want - len(found)
            rows = self._fetch(depth, fixed, after, need if last_level else need + 1)
            if last_level:  # values are unique here: the server's order is the full order
                return found + rows[:need]
            groups: list[list[dict[str, Any]]] = []
            for row in rows:
                if groups and _typed(self._level_value(groups[-1][0], depth)) == _typed(
                    self._level_value(row, depth)
                ):
                    groups[-1].append(row)
                else:
                    groups.append([row])
            exhausted = len(rows) <= need
            complete = groups if exhausted else groups[:-1]
            for group in complete:
                group.sort(key=lambda row: self._tail_key(row, depth), reverse=self.query.descending)
                found += group
            if exhausted:
                return found
            # The last group may continue past what we read: read it in order at the next level.
            value = self._level_value(groups[-1][0], depth)
            found += self.run(depth=depth + 1, fixed=[*fixed, value], after=MISSING, want=want - len(found))
            after = value
        return found
