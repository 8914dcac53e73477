"""The SQLite store's connections: one per thread, and a service whose thread pool retires idle
threads (anyio's, after 10 s) must not keep the connections of threads that are gone; several
processes may open one new database at the same moment (the services of `visiondock up`)."""

from __future__ import annotations

import multiprocessing
import os
import threading
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

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


def open_at_once(path: str, barrier: Barrier, outcomes: multiprocessing.Queue) -> None:
    barrier.wait()
    try:
        SqliteDocumentStore(path)
        outcomes.put("opened")
    except Exception as exc:  # what a service's start-up would have died of
        outcomes.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.processes
def test_processes_opening_one_new_database_at_once_all_open_it(tmp_path: Path) -> None:
    # The first to switch a new file to WAL wins; before the store retried, a loser died of "database is
    # locked" at once (5 of 40 such rounds of four processes), as the registry did starting beside the
    # annotation service. Twenty rounds would have caught that nearly every time.
    context = multiprocessing.get_context("fork")
    for round_number in range(20):
        path = str(tmp_path / f"round-{round_number}" / "documents.sqlite3")
        barrier, outcomes = context.Barrier(4), context.Queue()
        processes = [context.Process(target=open_at_once, args=(path, barrier, outcomes)) for _ in range(4)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=60)
        assert [outcomes.get(timeout=5) for _ in processes] == ["opened"] * 4, f"round {round_number}"
