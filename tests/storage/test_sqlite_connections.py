"""The SQLite store keeps one connection per thread: a service whose thread pool retires idle
threads (anyio's, after 10 s) must not keep the connections of threads that are gone."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from visiondock.storage.documents_sqlite import SqliteDocumentStore


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def read_in_new_threads(store: SqliteDocumentStore, count: int) -> list[str]:
    read: list[str] = []
    for _ in range(count):
        thread = threading.Thread(target=lambda: read.append(store.get("things", "a", partition_key="p").id))
        thread.start()
        thread.join()
    return read


def test_a_finished_thread_leaves_no_connection_open(tmp_path: Path) -> None:
    store = SqliteDocumentStore(tmp_path / "documents.sqlite3")
    store.put("things", {"id": "a"}, partition_key="p")
    assert read_in_new_threads(store, 20) == ["a"] * 20
    settled = open_files()  # SQLite may keep a closed connection's descriptor for reuse
    assert read_in_new_threads(store, 100) == ["a"] * 100
    assert open_files() <= settled
    assert store.open_connections == 1  # this thread's
    store.close()
    assert store.open_connections == 0
