"""DocumentStore on SQLite: the embedded default.

One table holds every collection; bodies are JSON text queried with SQLite's JSON
functions. Several service processes may share the file: WAL mode lets readers run
beside one writer, and every read-modify-write runs in an IMMEDIATE transaction.
Paging is keyset paging on (type rank, ordering value, partition key, id), so a
continuation token is the last row's key and a deep page costs the same as the first.

SQLite's JSON functions lose a value's JSON type (`true` reads back as 1, null as SQL
NULL), so every comparison also checks `json_type`: the filters then mean what the
interface says, the same as on Cosmos DB.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from visiondock.storage.documents import (
    TYPE_RANK_BOOL,
    TYPE_RANK_NULL,
    TYPE_RANK_NUMBER,
    TYPE_RANK_STRING,
    Document,
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
    patch_changes,
    type_rank,
    validate_collection,
    validate_field_path,
    validate_id,
    validate_page_size,
    validate_partition_key,
)

BUSY_TIMEOUT_S = 30  # how long a writer waits for another process's lock before "database is locked"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    pk TEXT NOT NULL,
    id TEXT NOT NULL,
    etag TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (collection, pk, id)
) WITHOUT ROWID;
"""

_SQL_OPS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}

# What json_type() answers for the values of each type rank.
_JSON_TYPES = {
    TYPE_RANK_NULL: ("null",),
    TYPE_RANK_BOOL: ("true", "false"),
    TYPE_RANK_NUMBER: ("integer", "real"),
    TYPE_RANK_STRING: ("text",),
}
_SCALAR_TYPES = "('null', 'true', 'false', 'integer', 'real', 'text')"
_RANK_SQL = (
    "CASE {kind} WHEN 'null' THEN 0 WHEN 'true' THEN 1 WHEN 'false' THEN 1"
    " WHEN 'integer' THEN 2 WHEN 'real' THEN 2 ELSE 3 END"
)


def _json_path(field: str) -> str:
    return "$." + ".".join(f'"{part}"' for part in validate_field_path(field).split("."))


def _ordering_sql(field: str) -> tuple[str, str, str]:
    """(json type, type rank, value) expressions a query orders by; an index must repeat them exactly."""
    path = _json_path(field)
    kind = f"json_type(body, '{path}')"
    # Ordering values are scalars; JSON null sorts first, as 0 within its own rank.
    return kind, _RANK_SQL.format(kind=kind), f"ifnull(json_extract(body, '{path}'), 0)"


# Orderings served by an index, so a page in a partition costs what it returns, not the
# partition's size: `created_at` orders images, projects, tags and runs.
INDEXED_ORDERINGS = ("created_at",)


def _ordering_index_name(field: str) -> str:
    return f"documents_by_{field}"


def _ordering_index(field: str) -> str:
    _, rank, value = _ordering_sql(field)
    return (f"CREATE INDEX IF NOT EXISTS {_ordering_index_name(field)} "
            f"ON documents (collection, pk, {rank}, {value}, id)")


def _type_is(kind: str, value: Any) -> str:
    """SQL that is true when `kind` (a json_type() expression) is the JSON type of `value`."""
    return f"{kind} IN ({', '.join(repr(t) for t in _JSON_TYPES[type_rank(value)])})"


def _sql_value(value: Any) -> Any:
    # json_extract() answers 1/0 for true/false; the type check keeps them apart from numbers.
    return int(value) if isinstance(value, bool) else value


def _typed_eq(kind: str, extract: str, value: Any) -> tuple[str, list[Any]]:
    if value is None:
        return f"{kind} = 'null'", []
    return f"({_type_is(kind, value)} AND {extract} = ?)", [_sql_value(value)]


def _new_etag() -> str:
    return f'"{uuid.uuid4().hex}"'


class _ThreadConnection:
    """Holds one thread's connection in its thread-local storage: when the thread ends, the
    holder goes and a finalizer closes the connection (see `SqliteDocumentStore._conn`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


def _close_connection(connections: dict[int, sqlite3.Connection], lock: threading.Lock, key: int) -> None:
    with lock:
        conn = connections.pop(key, None)
    if conn is not None:
        conn.close()


def _write_ahead_log(conn: sqlite3.Connection) -> None:
    """Switch the database to WAL. Services that open a new database at the same moment (the annotation
    service and the registry, started together on one machine) race to switch it, and the loser can be told
    "database is locked" at once, without SQLite's busy handler waiting: 5 of 40 trials of four processes
    opening one new file did. The mode is kept in the file, so trying again finds it set."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class SqliteDocumentStore(DocumentStore):
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: dict[int, sqlite3.Connection] = {}
        self._connections_lock = threading.Lock()
        self._keys = itertools.count()
        with self._transaction() as conn:
            conn.execute(_SCHEMA)
            for field in INDEXED_ORDERINGS:
                conn.execute(_ordering_index(field))

    # -- connections -------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        """This thread's connection. Servers run handlers on pools whose idle threads end (anyio's
        after 10 s): each thread's connection is closed with it, or a long-running service would
        keep two file descriptors per thread it ever had."""
        holder = getattr(self._local, "holder", None)
        if holder is None:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            _write_ahead_log(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            holder = self._local.holder = _ThreadConnection(conn)
            key = next(self._keys)
            with self._connections_lock:
                self._connections[key] = conn
            weakref.finalize(holder, _close_connection, self._connections, self._connections_lock, key)
        return holder.conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections.values():
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    @property
    def open_connections(self) -> int:
        with self._connections_lock:
            return len(self._connections)

    # -- single documents --------------------------------------------------------
    @staticmethod
    def _row(conn: sqlite3.Connection, collection: str, pk: str, doc_id: str) -> tuple[str, str] | None:
        row: tuple[str, str] | None = conn.execute(
            "SELECT etag, body FROM documents WHERE collection=? AND pk=? AND id=?",
            (collection, pk, doc_id),
        ).fetchone()
        return row

    @staticmethod
    def _write(conn: sqlite3.Connection, collection: str, pk: str, body: dict[str, Any]) -> Document:
        etag = _new_etag()
        conn.execute(
            "INSERT OR REPLACE INTO documents (collection, pk, id, etag, body) VALUES (?, ?, ?, ?, ?)",
            (collection, pk, body["id"], etag, json.dumps(body, separators=(",", ":"))),
        )
        return Document(id=body["id"], partition_key=pk, etag=etag, data=body)

    @staticmethod
    def _body(collection: str, data: Mapping[str, Any], partition_key: str) -> dict[str, Any]:
        validate_collection(collection)
        validate_partition_key(partition_key)
        return clean_body(data)

    @staticmethod
    def _check_address(collection: str, doc_id: str, partition_key: str) -> None:
        validate_collection(collection)
        validate_partition_key(partition_key)
        validate_id(doc_id)

    def create(self, collection: str, data: Mapping[str, Any], *, partition_key: str) -> Document:
        body = self._body(collection, data, partition_key)
        with self._transaction() as conn:
            if self._row(conn, collection, partition_key, body["id"]) is not None:
                raise DocumentExistsError(collection, body["id"])
            return self._write(conn, collection, partition_key, body)

    def create_many(
        self, collection: str, documents: Sequence[Mapping[str, Any]], *, partition_key: str
    ) -> list[Document]:
        validate_collection(collection)
        validate_partition_key(partition_key)
        bodies = batch_bodies(documents)
        # One transaction: a taken id rolls back the ones before it.
        with self._transaction() as conn:
            created = []
            for body in bodies:
                if self._row(conn, collection, partition_key, body["id"]) is not None:
                    raise DocumentExistsError(collection, body["id"])
                created.append(self._write(conn, collection, partition_key, body))
        return created

    def put(
        self,
        collection: str,
        data: Mapping[str, Any],
        *,
        partition_key: str,
        if_match: str | None = None,
    ) -> Document:
        body = self._body(collection, data, partition_key)
        with self._transaction() as conn:
            if if_match is not None:
                row = self._row(conn, collection, partition_key, body["id"])
                if row is None:
                    raise DocumentNotFoundError(collection, body["id"])
                if row[0] != if_match:
                    raise PreconditionFailedError(collection, body["id"])
            return self._write(conn, collection, partition_key, body)

    def get(self, collection: str, doc_id: str, *, partition_key: str) -> Document:
        self._check_address(collection, doc_id, partition_key)
        row = self._row(self._conn(), collection, partition_key, doc_id)
        if row is None:
            raise DocumentNotFoundError(collection, doc_id)
        return Document(id=doc_id, partition_key=partition_key, etag=row[0], data=json.loads(row[1]))

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
        self._check_address(collection, doc_id, partition_key)
        changes, removals = patch_changes(set_fields, remove_fields)
        with self._transaction() as conn:
            row = self._row(conn, collection, partition_key, doc_id)
            if row is None:
                raise DocumentNotFoundError(collection, doc_id)
            if if_match is not None and row[0] != if_match:
                raise PreconditionFailedError(collection, doc_id)
            body = json.loads(row[1])
            body.update(changes)
            for name in removals:
                body.pop(name, None)
            return self._write(conn, collection, partition_key, body)

    def delete(
        self, collection: str, doc_id: str, *, partition_key: str, if_match: str | None = None
    ) -> None:
        self._check_address(collection, doc_id, partition_key)
        with self._transaction() as conn:
            row = self._row(conn, collection, partition_key, doc_id)
            if row is None:
                raise DocumentNotFoundError(collection, doc_id)
            if if_match is not None and row[0] != if_match:
                raise PreconditionFailedError(collection, doc_id)
            conn.execute(
                "DELETE FROM documents WHERE collection=? AND pk=? AND id=?",
                (collection, partition_key, doc_id),
            )

    # -- queries -----------------------------------------------------------------
    @staticmethod
    def _filter_sql(flt: Filter) -> tuple[str, list[Any]]:
        if flt.field == "id" and flt.op in ("eq", "in"):
            # Every id is a string, kept in the primary key's `id` column too: a lookup by ids (a batch
            # of images by content hash) reads those rows, not the whole partition.
            ids = [value for value in (flt.value if flt.op == "in" else [flt.value]) if isinstance(value, str)]
            if not ids:
                return "0", []
            return f"id IN ({', '.join('?' for _ in ids)})", ids
        path = _json_path(flt.field)
        extract = f"json_extract(body, '{path}')"
        kind = f"json_type(body, '{path}')"
        if flt.op == "eq":
            return _typed_eq(kind, extract, flt.value)
        if flt.op == "ne":
            present = f"{kind} IS NOT NULL AND {kind} != 'null'"
            if flt.value is None:
                return f"({present})", []
            equal, params = _typed_eq(kind, extract, flt.value)
            return f"({present} AND NOT {equal})", params
        if flt.op == "in":
            if not flt.value:
                return "0", []
            parts, params = [], []
            for value in flt.value:
                sql, values = _typed_eq(kind, extract, value)
                parts.append(sql)
                params.extend(values)
            return f"({' OR '.join(parts)})", params
        if flt.op == "contains":
            element, params = _typed_eq("e.type", "e.value", flt.value)
            elements = f"SELECT 1 FROM json_each(body, '{path}') AS e WHERE {element}"
            return f"({kind} = 'array' AND EXISTS ({elements}))", params
        if flt.value is None:  # Filter refuses this already; kept for filters built around it
            raise InvalidQueryError(f"operator {flt.op!r} cannot compare with null")
        return (
            f"({_type_is(kind, flt.value)} AND {extract} {_SQL_OPS[flt.op]} ?)",
            [_sql_value(flt.value)],
        )

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
        where = ["collection = ?"]
        params: list[Any] = [collection]
        if query.order_by == "id":
            sort_columns = ["id", "pk"]
        else:
            kind, rank_sql, value_sql = _ordering_sql(query.order_by)
            where.append(f"{kind} IN {_SCALAR_TYPES}")
            # Within one partition pk is constant; leaving it out lets the ordering index give the order.
            within = query.partition_key is not None
            sort_columns = [rank_sql, value_sql, *([] if within else ["pk"]), "id"]
        if query.partition_key is not None:
            where.append("pk = ?")
            params.append(query.partition_key)
        for flt in query.filters:
            sql, values = self._filter_sql(flt)
            where.append(sql)
            params.extend(values)
        direction = "DESC" if query.descending else "ASC"
        after = "<" if query.descending else ">"

        def select(conditions: list[str], values: list[Any], count: int, index: str | None = None,
                   order: list[str] = sort_columns) -> list[Any]:
            source = f"documents INDEXED BY {index}" if index else "documents"
            sql = (
                f"SELECT pk, id, etag, body FROM {source} WHERE {' AND '.join(conditions)} "
                f"ORDER BY {', '.join(f'{column} {direction}' for column in order)} LIMIT ?"
            )
            return self._conn().execute(sql, [*values, count]).fetchall()

        if continuation is None:
            rows = select(where, params, limit + 1)
        else:
            value, last_pk, last_id = decode_page_token(collection, query, continuation)
            if query.order_by == "id":
                if not isinstance(value, str):
                    raise InvalidQueryError("continuation token is not valid; start again without it")
                boundary: list[Any] = [value, last_pk]
            else:
                boundary = [type_rank(value), 0 if value is None else _sql_value(value), last_pk, last_id]
            if query.order_by in INDEXED_ORDERINGS and query.partition_key is not None:
                rows = self._seek(select, where, params, sort_columns[:2], boundary, after, limit + 1,
                                  index=_ordering_index_name(query.order_by))
            else:
                if query.order_by != "id" and within:
                    del boundary[2]  # the partition key, constant here and left out of the ordering
                placeholders = ", ".join("?" for _ in boundary)
                rows = select([*where, f"({', '.join(sort_columns)}) {after} ({placeholders})"],
                              [*params, *boundary], limit + 1)
        items = [
            Document(id=r[1], partition_key=r[0], etag=r[2], data=json.loads(r[3])) for r in rows[:limit]
        ]
        token = encode_page_token(collection, query, items[-1]) if len(rows) > limit else None
        return Page(items=items, continuation=token)

    @staticmethod
    def _seek(select: Any, where: list[str], params: list[Any], ordering: list[str], boundary: list[Any],
              after: str, count: int, *, index: str) -> list[Any]:
        """The rows past a continuation boundary within one partition, as up to three index seeks.

        SQLite cannot seek an index to a row value over expressions, so `(rank, value, pk, id) >
        boundary` would scan from the partition's start up to the boundary: pages got slower the
        deeper they were. Split, each part is a seek: the same rank and value with a later id, the
        same rank with a later value, then a later rank. Each orders by the columns it leaves free:
        SQLite sorts instead of reading the index in order when an ordering term is fixed by `=`.
        """
        rank_sql, value_sql = ordering
        rank, value, _, last_id = boundary
        parts = [([f"{rank_sql} = ?", f"{value_sql} = ?", f"id {after} ?"], [rank, value, last_id], ["id"]),
                 ([f"{rank_sql} = ?", f"{value_sql} {after} ?"], [rank, value], [value_sql, "id"]),
                 ([f"{rank_sql} {after} ?"], [rank], [rank_sql, value_sql, "id"])]
        rows: list[Any] = []
        for conditions, values, order in parts:
            # The planner would take the primary key for `id > ?`, then sort: the ordering index it is.
            rows += select([*where, *conditions], [*params, *values], count - len(rows), index, order)
            if len(rows) >= count:
                break
        return rows
