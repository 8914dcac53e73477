"""DocumentStore on SQLite: the embedded default.

One table holds every collection; bodies are JSON text queried with SQLite's JSON
functions. Several service processes may share the file: WAL mode lets readers run
beside one writer, and every read-modify-write runs in an IMMEDIATE transaction.
Paging is keyset paging on (ordering value, partition key, id), so a continuation
token is the last row's key and a deep page costs the same as the first.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from visiondock.storage.documents import (
    MAX_PAGE_SIZE,
    Document,
    DocumentExistsError,
    DocumentNotFoundError,
    DocumentStore,
    Filter,
    InvalidQueryError,
    Page,
    PreconditionFailedError,
    Query,
    check_user_fields,
    decode_token,
    encode_token,
    validate_field_path,
    validate_id,
)

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

_SQL_OPS = {"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _json_path(field: str) -> str:
    return "$." + ".".join(f'"{part}"' for part in validate_field_path(field).split("."))


def _scalar(value: Any) -> Any:
    if isinstance(value, dict | list):
        raise InvalidQueryError("filters compare scalar values (strings, numbers, booleans, null)")
    return value


def _new_etag() -> str:
    return f'"{uuid.uuid4().hex}"'


class SqliteDocumentStore(DocumentStore):
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        with self._transaction() as conn:
            conn.execute(_SCHEMA)

    # -- connections -------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

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
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # -- single documents --------------------------------------------------------
    @staticmethod
    def _row(conn: sqlite3.Connection, collection: str, pk: str, doc_id: str) -> tuple[str, str] | None:
        return conn.execute(
            "SELECT etag, body FROM documents WHERE collection=? AND pk=? AND id=?",
            (collection, pk, doc_id),
        ).fetchone()

    @staticmethod
    def _write(conn: sqlite3.Connection, collection: str, pk: str, body: dict[str, Any]) -> Document:
        etag = _new_etag()
        conn.execute(
            "INSERT OR REPLACE INTO documents (collection, pk, id, etag, body) VALUES (?, ?, ?, ?, ?)",
            (collection, pk, body["id"], etag, json.dumps(body, separators=(",", ":"))),
        )
        return Document(id=body["id"], partition_key=pk, etag=etag, data=body)

    @staticmethod
    def _body(data: Mapping[str, Any]) -> dict[str, Any]:
        check_user_fields(data)
        body = json.loads(json.dumps(dict(data)))  # a deep, JSON-clean copy
        validate_id(body.get("id", ""))
        return body

    def create(self, collection: str, data: Mapping[str, Any], *, partition_key: str) -> Document:
        body = self._body(data)
        with self._transaction() as conn:
            if self._row(conn, collection, partition_key, body["id"]) is not None:
                raise DocumentExistsError(collection, body["id"])
            return self._write(conn, collection, partition_key, body)

    def put(
        self,
        collection: str,
        data: Mapping[str, Any],
        *,
        partition_key: str,
        if_match: str | None = None,
    ) -> Document:
        body = self._body(data)
        with self._transaction() as conn:
            if if_match is not None:
                row = self._row(conn, collection, partition_key, body["id"])
                if row is None:
                    raise DocumentNotFoundError(collection, body["id"])
                if row[0] != if_match:
                    raise PreconditionFailedError(collection, body["id"])
            return self._write(conn, collection, partition_key, body)

    def get(self, collection: str, doc_id: str, *, partition_key: str) -> Document:
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
        changes = dict(set_fields or {})
        check_user_fields(changes)
        if "id" in changes or "id" in remove_fields:
            raise InvalidQueryError("a document's id cannot be patched")
        with self._transaction() as conn:
            row = self._row(conn, collection, partition_key, doc_id)
            if row is None:
                raise DocumentNotFoundError(collection, doc_id)
            if if_match is not None and row[0] != if_match:
                raise PreconditionFailedError(collection, doc_id)
            body = json.loads(row[1])
            body.update(json.loads(json.dumps(changes)))
            for name in remove_fields:
                body.pop(name, None)
            return self._write(conn, collection, partition_key, body)

    def delete(self, collection: str, doc_id: str, *, partition_key: str, if_match: str | None = None) -> None:
        with self._transaction() as conn:
            row = self._row(conn, collection, partition_key, doc_id)
            if row is None:
                raise DocumentNotFoundError(collection, doc_id)
            if if_match is not None and row[0] != if_match:
                raise PreconditionFailedError(collection, doc_id)
            conn.execute(
                "DELETE FROM documents WHERE collection=? AND pk=? AND id=?", (collection, partition_key, doc_id)
            )

    # -- queries -----------------------------------------------------------------
    @staticmethod
    def _filter_sql(flt: Filter) -> tuple[str, list[Any]]:
        path = _json_path(flt.field)
        extract = f"json_extract(body, '{path}')"
        kind = f"json_type(body, '{path}')"
        if flt.op == "contains":
            return (
                f"({kind} = 'array' AND EXISTS (SELECT 1 FROM json_each(body, '{path}') WHERE value = ?))",
                [_scalar(flt.value)],
            )
        if flt.op == "in":
            values = [_scalar(v) for v in flt.value]
            if not values:
                return "0", []
            return f"{extract} IN ({', '.join('?' for _ in values)})", values
        if flt.value is None:
            # JSON null is SQL NULL after json_extract; compare the JSON type instead.
            if flt.op == "eq":
                return f"{kind} = 'null'", []
            if flt.op == "ne":
                return f"({kind} IS NOT NULL AND {kind} != 'null')", []
            raise InvalidQueryError(f"operator {flt.op!r} cannot compare with null")
        return f"{extract} {_SQL_OPS[flt.op]} ?", [_scalar(flt.value)]

    def query(
        self,
        collection: str,
        query: Query | None = None,
        *,
        limit: int = 100,
        continuation: str | None = None,
    ) -> Page:
        query = query or Query()
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise InvalidQueryError(f"page size must be between 1 and {MAX_PAGE_SIZE}")
        order = f"json_extract(body, '{_json_path(query.order_by)}')" if query.order_by != "id" else "id"
        where = ["collection = ?"]
        params: list[Any] = [collection]
        if query.partition_key is not None:
            where.append("pk = ?")
            params.append(query.partition_key)
        for flt in query.filters:
            sql, values = self._filter_sql(flt)
            where.append(sql)
            params.extend(values)
        if continuation:
            state = decode_token(continuation)
            if not {"v", "pk", "id"} <= state.keys():
                raise InvalidQueryError("continuation token is not valid; start again without it")
            where.append(f"({order}, pk, id) {'<' if query.descending else '>'} (?, ?, ?)")
            params.extend([state["v"], state["pk"], state["id"]])
        direction = "DESC" if query.descending else "ASC"
        sql = (
            f"SELECT pk, id, etag, body, {order} FROM documents WHERE {' AND '.join(where)} "
            f"ORDER BY {order} {direction}, pk {direction}, id {direction} LIMIT ?"
        )
        rows = self._conn().execute(sql, [*params, limit + 1]).fetchall()
        items = [Document(id=r[1], partition_key=r[0], etag=r[2], data=json.loads(r[3])) for r in rows[:limit]]
        token = None
        if len(rows) > limit:
            last = rows[limit - 1]
            token = encode_token({"v": last[4], "pk": last[0], "id": last[1]})
        return Page(items=items, continuation=token)
