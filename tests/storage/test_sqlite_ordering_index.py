"""The SQLite backend serves `created_at` orderings from an index: a page of a large partition,
however deep, reads what it returns instead of sorting or scanning the partition up to it
(bench/labeling.py measures it)."""

from __future__ import annotations

from pathlib import Path

from visiondock.storage import Filter, Query
from visiondock.storage.documents_sqlite import SqliteDocumentStore


def test_a_created_at_page_is_read_in_index_order_without_sorting(tmp_path: Path) -> None:
    store = SqliteDocumentStore(tmp_path / "documents.sqlite3")
    for i in range(30):
        store.create("images", {"id": f"img-{i:02d}", "created_at": f"2026-01-01T00:00:{59 - i:02d}",
                                "tags": ["a"] if i % 2 else []}, partition_key="p")
    statements: list[str] = []
    connection = store._conn()
    connection.set_trace_callback(statements.append)
    query = Query(partition_key="p", filters=[Filter("tags", "contains", "a")], order_by="created_at")
    first = store.query("images", query, limit=5)
    second = store.query("images", query, limit=5, continuation=first.continuation)
    connection.set_trace_callback(None)

    assert [d.id for d in first.items + second.items] == [f"img-{i:02d}" for i in range(29, 9, -2)]
    for statement in (s for s in statements if s.startswith("SELECT")):
        plan = " / ".join(row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {statement}"))
        assert "USING INDEX documents_by_created_at" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # no sort of the partition
        if "id > " in statement:  # a next page seeks straight to its boundary
            assert "(collection=? AND pk=? AND <expr>=? AND <expr>=? AND id>?)" in plan, plan
    store.close()
