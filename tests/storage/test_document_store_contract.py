"""The DocumentStore contract, run against every backend: SQLite and Azure Cosmos DB (on
cosmosdb-server). Every test holds for each backend alike, so code written against one
behaves the same on the other."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from visiondock.storage.documents import (
    MAX_BATCH_DOCUMENTS,
    MAX_PAGE_SIZE,
    ConflictError,
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
    encode_token,
)
from visiondock.storage.documents_sqlite import SqliteDocumentStore

COLLECTION = "things"


@pytest.fixture(params=["sqlite", pytest.param("cosmos", marks=pytest.mark.azure)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DocumentStore]:
    document_store: DocumentStore
    if request.param == "sqlite":
        document_store = SqliteDocumentStore(tmp_path / "documents.sqlite3")
    else:
        server = request.getfixturevalue("cosmosdb_server")
        database = request.getfixturevalue("cosmos_database")
        from visiondock.storage.documents_cosmos import CosmosDocumentStore

        document_store = CosmosDocumentStore(
            endpoint=server.endpoint, key=server.key, database=database, endpoint_discovery=False
        )
    try:
        yield document_store
    finally:
        document_store.close()


def keys(documents: list[Document]) -> list[tuple[str, str]]:
    return [(doc.partition_key, doc.id) for doc in documents]


def ids(documents: list[Document]) -> set[str]:
    return {doc.id for doc in documents}


def run_in_threads(count: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run work(0..count-1) in threads that start together; the exceptions they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(n: int) -> None:
        barrier.wait()
        try:
            work(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


# -- create / get ------------------------------------------------------------------

RICH_DATA: dict[str, Any] = {
    "id": "rich-1",
    "name": "Grüße, 猫 🐈",
    "count": 3,
    "ratio": 0.25,
    "ok": True,
    "off": False,
    "nothing": None,
    "tags": ["a", 1, None, {"k": "v"}],
    "nested": {"deep": {"deeper": [1, 2, 3]}, "_underscore_inside": "allowed below the top level"},
    "empty": {},
    "none_list": [],
}


def test_create_returns_the_document_and_get_reads_it_back(store: DocumentStore) -> None:
    created = store.create(COLLECTION, RICH_DATA, partition_key="p1")

    assert (created.id, created.partition_key) == ("rich-1", "p1")
    assert isinstance(created.etag, str) and created.etag
    assert created.data == RICH_DATA
    fetched = store.get(COLLECTION, "rich-1", partition_key="p1")
    assert fetched == created


def test_data_holds_exactly_the_users_fields(store: DocumentStore) -> None:
    store.create(COLLECTION, {"id": "x", "v": 1}, partition_key="p1")

    for doc in (store.get(COLLECTION, "x", partition_key="p1"), store.query(COLLECTION).items[0]):
        assert doc.data == {"id": "x", "v": 1}


def test_the_callers_mapping_is_not_changed_or_shared(store: DocumentStore) -> None:
    data = {"id": "x", "tags": ["a"]}

    created = store.create(COLLECTION, data, partition_key="p1")
    data["tags"].append("b")

    assert data == {"id": "x", "tags": ["a", "b"]}
    assert created.data == {"id": "x", "tags": ["a"]}
    assert store.get(COLLECTION, "x", partition_key="p1").data["tags"] == ["a"]


def test_create_refuses_an_existing_id_in_the_same_partition(store: DocumentStore) -> None:
    original = store.create(COLLECTION, {"id": "dup", "v": 1}, partition_key="p1")

    with pytest.raises(DocumentExistsError) as raised:
        store.create(COLLECTION, {"id": "dup", "v": 2}, partition_key="p1")

    assert isinstance(raised.value, ConflictError)
    assert (raised.value.collection, raised.value.doc_id) == (COLLECTION, "dup")
    assert store.get(COLLECTION, "dup", partition_key="p1") == original


def test_the_same_id_in_another_partition_is_another_document(store: DocumentStore) -> None:
    store.create(COLLECTION, {"id": "same", "v": 1}, partition_key="p1")
    store.create(COLLECTION, {"id": "same", "v": 2}, partition_key="p2")

    assert store.get(COLLECTION, "same", partition_key="p1").data["v"] == 1
    assert store.get(COLLECTION, "same", partition_key="p2").data["v"] == 2


def test_collections_are_separate(store: DocumentStore) -> None:
    store.create("left", {"id": "x", "side": "left"}, partition_key="p")
    store.create("right", {"id": "x", "side": "right"}, partition_key="p")

    assert store.get("left", "x", partition_key="p").data["side"] == "left"
    assert store.get("right", "x", partition_key="p").data["side"] == "right"
    assert keys(store.query("left").items) == [("p", "x")]


def test_get_missing_document(store: DocumentStore) -> None:
    store.create(COLLECTION, {"id": "here"}, partition_key="p1")

    with pytest.raises(DocumentNotFoundError) as raised:
        store.get(COLLECTION, "absent", partition_key="p1")
    assert (raised.value.collection, raised.value.doc_id) == (COLLECTION, "absent")
    assert isinstance(raised.value, KeyError)
    with pytest.raises(DocumentNotFoundError):
        store.get(COLLECTION, "here", partition_key="other-partition")
    with pytest.raises(DocumentNotFoundError):
        store.get("never-written", "here", partition_key="p1")


def test_a_collection_that_was_never_written(store: DocumentStore) -> None:
    with pytest.raises(DocumentNotFoundError):
        store.get("unwritten", "x", partition_key="p")
    with pytest.raises(DocumentNotFoundError):
        store.patch("unwritten", "x", partition_key="p", set_fields={"v": 1})
    with pytest.raises(DocumentNotFoundError):
        store.delete("unwritten", "x", partition_key="p")
    with pytest.raises(DocumentNotFoundError):
        store.put("unwritten", {"id": "x"}, partition_key="p", if_match='"some-etag"')
    assert store.query("unwritten", Query(order_by="v", partition_key="p")).items == []

    created = store.create("unwritten", {"id": "x"}, partition_key="p")

    assert store.get("unwritten", "x", partition_key="p") == created


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"id": ""},
        {"id": 7},
        {"id": None},
        {"id": "a/b"},
        {"id": "a\\b"},
        {"id": "a?b"},
        {"id": "a#b"},
        {"id": " padded"},
        {"id": "x" * 256},
    ],
    ids=["no-id", "empty", "number", "null", "slash", "backslash", "question", "hash", "space", "too-long"],
)
def test_invalid_ids_are_refused(store: DocumentStore, data: dict[str, Any]) -> None:
    with pytest.raises(DocumentError):
        store.create(COLLECTION, data, partition_key="p1")
    with pytest.raises(DocumentError):
        store.put(COLLECTION, data, partition_key="p1")
    assert store.query(COLLECTION).items == []


@pytest.mark.parametrize("doc_id", ["a/b", "", "a#b", "a?b"])
def test_reading_or_deleting_an_invalid_id_is_refused(store: DocumentStore, doc_id: str) -> None:
    with pytest.raises(DocumentError):
        store.get(COLLECTION, doc_id, partition_key="p1")
    with pytest.raises(DocumentError):
        store.delete(COLLECTION, doc_id, partition_key="p1")
    with pytest.raises(DocumentError):
        store.patch(COLLECTION, doc_id, partition_key="p1", set_fields={"v": 1})


def test_unusual_ids_and_partition_keys_round_trip(store: DocumentStore) -> None:
    unusual = [("a b", "p q"), ("a+b=c", "x:y"), ("ü-é", "ß"), ("'quote\"", "a.b"), ("x" * 255, "k")]
    for doc_id, pk in unusual:
        store.create(COLLECTION, {"id": doc_id}, partition_key=pk)
        assert store.get(COLLECTION, doc_id, partition_key=pk).id == doc_id
        store.delete(COLLECTION, doc_id, partition_key=pk)


@pytest.mark.parametrize("partition_key", ["", None, 5, "k" * 1025])
def test_invalid_partition_keys_are_refused(store: DocumentStore, partition_key: Any) -> None:
    calls: list[Callable[[], object]] = [
        lambda: store.create(COLLECTION, {"id": "x"}, partition_key=partition_key),
        lambda: store.put(COLLECTION, {"id": "x"}, partition_key=partition_key),
        lambda: store.get(COLLECTION, "x", partition_key=partition_key),
        lambda: store.patch(COLLECTION, "x", partition_key=partition_key, set_fields={"v": 1}),
        lambda: store.delete(COLLECTION, "x", partition_key=partition_key),
    ]
    for call in calls:
        with pytest.raises(DocumentError):
            call()


@pytest.mark.parametrize("collection", ["", "a/b", "-leading", "with space", "x" * 256, "ü", "newline\n"])
def test_invalid_collection_names_are_refused(store: DocumentStore, collection: str) -> None:
    with pytest.raises(DocumentError):
        store.create(collection, {"id": "x"}, partition_key="p")
    with pytest.raises(DocumentError):
        store.get(collection, "x", partition_key="p")
    with pytest.raises(DocumentError):
        store.query(collection)


@pytest.mark.parametrize("field", ["_pk", "_etag", "_ts", "_rid", "_self", "_attachments", "_anything"])
def test_reserved_field_names_are_refused(store: DocumentStore, field: str) -> None:
    store.create(COLLECTION, {"id": "x", "v": 1}, partition_key="p1")

    with pytest.raises(DocumentError):
        store.create(COLLECTION, {"id": "y", field: "v"}, partition_key="p1")
    with pytest.raises(DocumentError):
        store.put(COLLECTION, {"id": "x", field: "v"}, partition_key="p1")
    with pytest.raises(DocumentError):
        store.patch(COLLECTION, "x", partition_key="p1", set_fields={field: "v"})
    with pytest.raises(DocumentError):
        store.patch(COLLECTION, "x", partition_key="p1", remove_fields=[field])
    with pytest.raises(InvalidQueryError):
        store.query(COLLECTION, Query(filters=[Filter(field, "eq", "v")]))
    with pytest.raises(InvalidQueryError):
        store.query(COLLECTION, Query(order_by=field))

    assert store.get(COLLECTION, "x", partition_key="p1").data == {"id": "x", "v": 1}
    assert ids(store.query(COLLECTION).items) == {"x"}


# -- create_many -------------------------------------------------------------------


def test_create_many_stores_every_document_and_returns_them_in_order(store: DocumentStore) -> None:
    batch = [{"id": f"doc-{n}", "n": n, "tags": ["a", n]} for n in (3, 1, 2)]

    created = store.create_many(COLLECTION, batch, partition_key="p1")

    assert [(doc.id, doc.partition_key, doc.data) for doc in created] == [(b["id"], "p1", b) for b in batch]
    assert len({doc.etag for doc in created}) == 3
    for doc in created:
        assert store.get(COLLECTION, doc.id, partition_key="p1") == doc
    assert store.create_many(COLLECTION, [], partition_key="p1") == []


def test_create_many_of_one_document_is_a_create(store: DocumentStore) -> None:
    [created] = store.create_many(COLLECTION, [{"id": "only"}], partition_key="p1")

    assert store.get(COLLECTION, "only", partition_key="p1") == created
    with pytest.raises(DocumentExistsError):
        store.create_many(COLLECTION, [{"id": "only", "v": 2}], partition_key="p1")


@pytest.mark.parametrize("taken", [0, 2, 4])
def test_create_many_with_a_taken_id_stores_none_of_them(store: DocumentStore, taken: int) -> None:
    existing = store.create(COLLECTION, {"id": f"doc-{taken}", "v": "old"}, partition_key="p1")
    batch = [{"id": f"doc-{n}", "v": "new"} for n in range(5)]

    with pytest.raises(DocumentExistsError) as raised:
        store.create_many(COLLECTION, batch, partition_key="p1")

    assert raised.value.doc_id == f"doc-{taken}"
    assert store.query(COLLECTION).items == [existing]


def test_create_many_over_the_batch_request_size_is_still_all_or_none(store: DocumentStore) -> None:
    # 3 documents of 0.8 MB: more than a Cosmos DB transactional batch carries (2 MB).
    big = "x" * 800_000
    store.create(COLLECTION, {"id": "doc-2"}, partition_key="p1")

    with pytest.raises(DocumentExistsError):
        store.create_many(COLLECTION, [{"id": f"doc-{n}", "big": big} for n in range(3)], partition_key="p1")
    assert ids(store.query(COLLECTION).items) == {"doc-2"}

    created = store.create_many(COLLECTION, [{"id": f"big-{n}", "big": big} for n in range(3)], partition_key="p1")
    assert [doc.id for doc in created] == ["big-0", "big-1", "big-2"]
    assert store.get(COLLECTION, "big-2", partition_key="p1").data["big"] == big


def test_create_many_checks_partitions_and_collections_apart(store: DocumentStore) -> None:
    store.create(COLLECTION, {"id": "a"}, partition_key="p1")
    store.create("others", {"id": "b"}, partition_key="p2")

    created = store.create_many(COLLECTION, [{"id": "a"}, {"id": "b"}], partition_key="p2")

    assert keys(created) == [("p2", "a"), ("p2", "b")]


def test_create_many_takes_up_to_the_batch_limit(store: DocumentStore) -> None:
    created = store.create_many(COLLECTION, [{"id": f"doc-{n:03d}"} for n in range(MAX_BATCH_DOCUMENTS)],
                                partition_key="p1")
    assert len(created) == len(list(store.query_all(COLLECTION))) == MAX_BATCH_DOCUMENTS

    with pytest.raises(DocumentError, match=f"at most {MAX_BATCH_DOCUMENTS}"):
        store.create_many(COLLECTION, [{"id": f"more-{n}"} for n in range(MAX_BATCH_DOCUMENTS + 1)],
                          partition_key="p1")
    assert len(list(store.query_all(COLLECTION))) == MAX_BATCH_DOCUMENTS


@pytest.mark.parametrize("documents", [
    [{"id": "a"}, {"id": "b"}, {"id": "a"}],  # one id twice
    [{"id": "a"}, {"id": "b", "_etag": "x"}],  # a reserved field
    [{"id": "a"}, {"id": "bad/id"}],
    [{"id": "a"}, {"v": 1}],  # no id
    {"id": "a"},  # one document, not a list
])
def test_create_many_refuses_a_bad_batch_and_stores_none_of_it(store: DocumentStore, documents: Any) -> None:
    with pytest.raises(DocumentError):
        store.create_many(COLLECTION, documents, partition_key="p1")
    assert store.query(COLLECTION).items == []


def test_racing_create_many_of_one_id_have_exactly_one_winner(store: DocumentStore) -> None:
    won: list[int] = []

    def create(n: int) -> None:
        store.create_many(COLLECTION, [{"id": f"own-{n}"}, {"id": "shared", "by": n}], partition_key="p1")
        won.append(n)

    errors = run_in_threads(6, create)

    assert len(won) == 1 and len(errors) == 5
    assert all(isinstance(error, DocumentExistsError) for error in errors)
    assert ids(store.query(COLLECTION).items) == {"shared", f"own-{won[0]}"}
    assert store.get(COLLECTION, "shared", partition_key="p1").data["by"] == won[0]


# -- put ---------------------------------------------------------------------------


def test_put_inserts_a_new_document(store: DocumentStore) -> None:
    put = store.put(COLLECTION, {"id": "new", "v": 1}, partition_key="p1")

    assert put.data == {"id": "new", "v": 1}
    assert store.get(COLLECTION, "new", partition_key="p1") == put


def test_put_replaces_the_whole_document_and_changes_the_etag(store: DocumentStore) -> None:
    created = store.create(COLLECTION, {"id": "doc", "a": 1, "b": 2}, partition_key="p1")

    replaced = store.put(COLLECTION, {"id": "doc", "a": 10}, partition_key="p1")

    assert replaced.data == {"id": "doc", "a": 10}
    assert replaced.etag != created.etag
    assert store.get(COLLECTION, "doc", partition_key="p1") == replaced


def test_put_with_the_current_etag_succeeds(store: DocumentStore) -> None:
    created = store.create(COLLECTION, {"id": "doc", "v": 1}, partition_key="p1")

    replaced = store.put(COLLECTION, {"id": "doc", "v": 2}, partition_key="p1", if_match=created.etag)

    assert replaced.data["v"] == 2
    assert replaced.etag != created.etag


def test_put_with_a_stale_etag_fails_and_changes_nothing(store: DocumentStore) -> None:
    created = store.create(COLLECTION, {"id": "doc", "v": 1}, partition_key="p1")
    current = store.put(COLLECTION, {"id": "doc", "v": 2}, partition_key="p1")

    with pytest.raises(PreconditionFailedError) as raised:
        store.put(COLLECTION, {"id": "doc", "v": 3}, partition_key="p1", if_match=created.etag)

    assert isinstance(raised.value, ConflictError)
    assert (raised.value.collection, raised.value.doc_id) == (COLLECTION, "doc")
    assert store.get(COLLECTION, "doc", partition_key="p1") == current


def test_put_with_an_etag_needs_an_existing_document(store: DocumentStore) -> None:
    other = store.create(COLLECTION, {"id": "other"}, partition_key="p1")

    with pytest.raises(DocumentNotFoundError):
        store.put(COLLECTION, {"id": "missing"}, partition_key="p1", if_match=other.etag)
    with pytest.raises(DocumentNotFoundError):
        store.get(COLLECTION, "missing", partition_key="p1")


def test_racing_conditional_puts_have_exactly_one_winner(store: DocumentStore) -> None:
    created = store.create(COLLECTION, {"id": "doc", "writer": None}, partition_key="p1")

    errors = run_in_threads(
        4,
        lambda n: store.put(
            COLLECTION, {"id": "doc", "writer": n}, partition_key="p1", if_match=created.etag
        ),
    )

    assert len(errors) == 3 and all(isinstance(exc, PreconditionFailedError) for exc in errors)
    assert store.get(COLLECTION, "doc", partition_key="p1").data["writer"] in range(4)


def test_every_write_makes_a_new_etag(store: DocumentStore) -> None:
    etags = [store.create(COLLECTION, {"id": "doc", "v": 0}, partition_key="p1").etag]
    etags.append(store.put(COLLECTION, {"id": "doc", "v": 0}, partition_key="p1").etag)
    etags.append(store.patch(COLLECTION, "doc", partition_key="p1", set_fields={"v": 0}).etag)
    etags.append(store.patch(COLLECTION, "doc", partition_key="p1").etag)

    assert len(set(etags)) == len(etags)
    assert store.get(COLLECTION, "doc", partition_key="p1").etag == etags[-1]


# -- patch -------------------------------------------------------------------------


def test_patch_sets_and_removes_top_level_fields(store: DocumentStore) -> None:
    original = {"id": "doc", "keep": 1, "change": 2, "drop": 3, "meta": {"a": 1, "b": 2}}
    created = store.create(COLLECTION, original, partition_key="p1")

    patched = store.patch(
        COLLECTION,
        "doc",
        partition_key="p1",
        set_fields={"change": 20, "added": [1], "meta": {"b": 3}},
        remove_fields=["drop", "never-there"],
    )

    assert patched.data == {"id": "doc", "keep": 1, "change": 20, "added": [1], "meta": {"b": 3}}
    assert patched.etag != created.etag
    assert store.get(COLLECTION, "doc", partition_key="p1") == patched


def test_patch_can_set_null_and_falsy_values(store: DocumentStore) -> None:
    store.create(COLLECTION, {"id": "doc", "a": 1, "b": 1, "c": 1}, partition_key="p1")

    patched = store.patch(COLLECTION, "doc", partition_key="p1", set_fields={"a": None, "b": False, "c": 0})

    assert patched.data == {"id": "doc", "a": None, "b": False, "c": 0}


def test_patch_of_a_missing_document(store: DocumentStore) -> None:
    with pytest.raises(DocumentNotFoundError):
        store.patch(COLLECTION, "absent", partition_key="p1", set_fields={"v": 1})
    with pytest.raises(DocumentNotFoundError):
        store.get(COLLECTION, "absent", partition_key="p1")


def test_patch_refuses_to_touch_the_id(store: DocumentStore) -> None:
    store.create(COLLECTION, {"id": "doc"}, partition_key="p1")

    with pytest.raises(InvalidQueryError):
        store.patch(COLLECTION, "doc", partition_key="p1", set_fields={"id": "other"})
    with pytest.raises(InvalidQueryError):
        store.patch(COLLECTION, "doc", partition_key="p1", remove_fields=["id"])
    with pytest.raises(DocumentError):
        store.patch(COLLECTION, "doc", partition_key="p1", remove_fields="id")  # type: ignore[arg-type]


def test_patch_with_the_current_etag_succeeds(store: DocumentStore) -> None:
    created = store.create(COLLECTION, {"id": "doc", "v": 1}, partition_key="p1")

    patched = store.patch(COLLECTION, "doc", partition_key="p1", set_fields={"v": 2}, if_match=created.etag)

    assert patched.data == {"id": "doc", "v": 2}


def test_patch_with_a_stale_etag_fails_and_changes_nothing(store: DocumentStore) -> None:
    created = store.create(COLLECTION, {"id": "doc", "v": 1}, partition_key="p1")
    current = store.patch(COLLECTION, "doc", partition_key="p1", set_fields={"v": 2})

    with pytest.raises(PreconditionFailedError):
        store.patch(COLLECTION, "doc", partition_key="p1", set_fields={"v": 3}, if_match=created.etag)

    assert store.get(COLLECTION, "doc", partition_key="p1") == current


def test_concurrent_patches_of_different_fields_all_survive(store: DocumentStore) -> None:
    store.create(COLLECTION, {"id": "doc", "base": True}, partition_key="p1")
    writers, rounds = 4, 5

    def patch_own_field(n: int) -> None:
        for round_number in range(rounds):
            store.patch(COLLECTION, "doc", partition_key="p1", set_fields={f"field{n}": round_number})

    assert run_in_threads(writers, patch_own_field) == []

    final = store.get(COLLECTION, "doc", partition_key="p1").data
    assert final == {"id": "doc", "base": True, **{f"field{n}": rounds - 1 for n in range(writers)}}


# -- delete ------------------------------------------------------------------------


def test_delete_removes_the_document(store: DocumentStore) -> None:
    store.create(COLLECTION, {"id": "doc"}, partition_key="p1")
    store.create(COLLECTION, {"id": "doc"}, partition_key="p2")

    store.delete(COLLECTION, "doc", partition_key="p1")

    with pytest.raises(DocumentNotFoundError):
        store.get(COLLECTION, "doc", partition_key="p1")
    assert store.get(COLLECTION, "doc", partition_key="p2").id == "doc"
    assert keys(store.query(COLLECTION).items) == [("p2", "doc")]


def test_delete_of_a_missing_document(store: DocumentStore) -> None:
    with pytest.raises(DocumentNotFoundError):
        store.delete(COLLECTION, "absent", partition_key="p1")


def test_delete_with_a_stale_etag_fails_and_keeps_the_document(store: DocumentStore) -> None:
    created = store.create(COLLECTION, {"id": "doc", "v": 1}, partition_key="p1")
    current = store.put(COLLECTION, {"id": "doc", "v": 2}, partition_key="p1")

    with pytest.raises(PreconditionFailedError):
        store.delete(COLLECTION, "doc", partition_key="p1", if_match=created.etag)

    assert store.get(COLLECTION, "doc", partition_key="p1") == current
    store.delete(COLLECTION, "doc", partition_key="p1", if_match=current.etag)
    with pytest.raises(DocumentNotFoundError):
        store.get(COLLECTION, "doc", partition_key="p1")


def test_a_deleted_document_can_be_created_again(store: DocumentStore) -> None:
    store.create(COLLECTION, {"id": "doc", "v": 1}, partition_key="p1")
    store.delete(COLLECTION, "doc", partition_key="p1")

    recreated = store.create(COLLECTION, {"id": "doc", "v": 2}, partition_key="p1")

    assert store.get(COLLECTION, "doc", partition_key="p1") == recreated


# -- query filters -----------------------------------------------------------------

CATALOG: list[tuple[str, dict[str, Any]]] = [
    ("p1", {"id": "a", "n": 1, "s": "apple", "flag": True, "tags": ["red", "fruit"],
            "meta": {"size": 10, "color": "red"}, "maybe": None}),
    ("p1", {"id": "b", "n": 2, "s": "banana", "flag": False, "tags": ["yellow", "fruit"],
            "meta": {"size": 20}, "maybe": 1}),
    ("p2", {"id": "c", "n": 3, "s": "cherry", "flag": True, "tags": ["red"],
            "meta": {"size": 5, "color": "red"}}),
    # A number 1 is not true, and "3" is not 3.
    ("p2", {"id": "d", "n": 1.5, "s": "date", "flag": 1, "tags": [1], "maybe": "x"}),
    ("p3", {"id": "e", "n": "3", "s": "Elder", "tags": "red", "maybe": False, "meta": "plain"}),
    ("p3", {"id": "f", "s": "fig", "flag": None, "tags": [True, None, []]}),
]


@pytest.fixture
def catalog(store: DocumentStore) -> DocumentStore:
    for pk, data in CATALOG:
        store.create(COLLECTION, data, partition_key=pk)
    return store


FILTER_CASES: list[tuple[list[Filter], set[str]]] = [
    ([Filter("s", "eq", "apple")], {"a"}),
    ([Filter("n", "eq", 1)], {"a"}),
    ([Filter("n", "eq", 1.0)], {"a"}),
    ([Filter("n", "eq", 3)], {"c"}),
    ([Filter("n", "eq", "3")], {"e"}),
    ([Filter("flag", "eq", True)], {"a", "c"}),
    ([Filter("flag", "eq", 1)], {"d"}),
    ([Filter("flag", "eq", False)], {"b"}),
    ([Filter("flag", "eq", None)], {"f"}),
    ([Filter("maybe", "eq", None)], {"a"}),
    ([Filter("maybe", "eq", False)], {"e"}),
    ([Filter("missing", "eq", None)], set()),
    ([Filter("flag", "ne", True)], {"b", "d"}),
    ([Filter("flag", "ne", None)], {"a", "b", "c", "d"}),
    ([Filter("n", "ne", 1)], {"b", "c", "d", "e"}),
    ([Filter("maybe", "ne", "x")], {"b", "e"}),
    ([Filter("n", "lt", 2)], {"a", "d"}),
    ([Filter("n", "le", 2)], {"a", "b", "d"}),
    ([Filter("n", "gt", 1.5)], {"b", "c"}),
    ([Filter("n", "ge", 1.5)], {"b", "c", "d"}),
    ([Filter("n", "gt", "0")], {"e"}),
    ([Filter("s", "gt", "c")], {"c", "d", "f"}),
    ([Filter("s", "lt", "b")], {"a", "e"}),
    ([Filter("s", "ge", "date")], {"d", "f"}),
    ([Filter("flag", "gt", False)], {"a", "c"}),
    ([Filter("flag", "le", False)], {"b"}),
    ([Filter("meta.size", "eq", 10)], {"a"}),
    ([Filter("meta.size", "gt", 6)], {"a", "b"}),
    ([Filter("meta.color", "eq", "red")], {"a", "c"}),
    ([Filter("meta.color", "ne", "red")], set()),
    ([Filter("meta.size", "ne", 10)], {"b", "c"}),
    ([Filter("n", "in", [1, 3])], {"a", "c"}),
    ([Filter("n", "in", (1, "3"))], {"a", "e"}),
    ([Filter("flag", "in", [True, None])], {"a", "c", "f"}),
    ([Filter("maybe", "in", [None, 1])], {"a", "b"}),
    ([Filter("s", "in", [])], set()),
    # Ids are strings: looked up by value (a batch of images by content hash), never matching other types.
    ([Filter("id", "eq", "c")], {"c"}),
    ([Filter("id", "in", ["a", "e", "zz"])], {"a", "e"}),
    ([Filter("id", "in", ["b", 1, None, True])], {"b"}),
    ([Filter("id", "eq", 1)], set()),
    ([Filter("id", "in", ["a", "d"]), Filter("flag", "eq", True)], {"a"}),
    ([Filter("tags", "contains", "red")], {"a", "c"}),
    ([Filter("tags", "contains", "fruit")], {"a", "b"}),
    ([Filter("tags", "contains", True)], {"f"}),
    ([Filter("tags", "contains", 1)], {"d"}),
    ([Filter("tags", "contains", 1.0)], {"d"}),
    ([Filter("tags", "contains", None)], {"f"}),
    ([Filter("tags", "contains", "blue")], set()),
    ([Filter("s", "contains", "apple")], set()),
    ([Filter("tags", "contains", "fruit"), Filter("flag", "eq", True)], {"a"}),
    ([Filter("n", "ge", 1), Filter("n", "lt", 3), Filter("tags", "contains", "fruit")], {"a", "b"}),
]


@pytest.mark.parametrize(("filters", "expected"), FILTER_CASES, ids=[repr(c[0]) for c in FILTER_CASES])
def test_query_filters(catalog: DocumentStore, filters: list[Filter], expected: set[str]) -> None:
    page = catalog.query(COLLECTION, Query(filters=filters))

    assert ids(page.items) == expected
    assert page.continuation is None
    stored = {(pk, data["id"]): data for pk, data in CATALOG}
    assert all(doc.data == stored[doc.partition_key, doc.id] for doc in page.items)


def test_query_within_one_partition(catalog: DocumentStore) -> None:
    assert keys(catalog.query(COLLECTION, Query(partition_key="p1")).items) == [("p1", "a"), ("p1", "b")]
    flagged = Query(partition_key="p2", filters=[Filter("flag", "eq", True)])
    assert keys(catalog.query(COLLECTION, flagged).items) == [("p2", "c")]
    assert catalog.query(COLLECTION, Query(partition_key="nobody")).items == []


def test_query_across_partitions(catalog: DocumentStore) -> None:
    red = catalog.query(COLLECTION, Query(filters=[Filter("tags", "contains", "red")])).items

    assert keys(red) == [("p1", "a"), ("p2", "c")]


def test_query_results_carry_etags(catalog: DocumentStore) -> None:
    for doc in catalog.query(COLLECTION).items:
        assert doc.etag == catalog.get(COLLECTION, doc.id, partition_key=doc.partition_key).etag


def test_query_of_an_unused_collection_is_empty(store: DocumentStore) -> None:
    assert store.query("never-written") == Page(items=[], continuation=None)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Filter("n", "lt", None),
        lambda: Filter("n", "ge", None),
        lambda: Filter("n", "eq", {"a": 1}),
        lambda: Filter("n", "eq", [1]),
        lambda: Filter("n", "contains", ["x"]),
        lambda: Filter("n", "in", "abc"),
        lambda: Filter("n", "in", [[1]]),
        lambda: Filter("n", "eq", float("nan")),
        lambda: Filter("n", "like", 1),
        lambda: Filter("a..b", "eq", 1),
        lambda: Filter("a b", "eq", 1),
        lambda: Filter("", "eq", 1),
        lambda: Filter("1abc", "eq", 1),
        lambda: Filter("_pk", "eq", "x"),
        lambda: Query(order_by="_ts"),
        lambda: Query(order_by="bad path"),
        lambda: Query(partition_key=""),
        lambda: Query(filters=[("n", "eq", 1)]),  # type: ignore[list-item]
    ],
)
def test_invalid_filters_and_queries_are_refused(build: Callable[[], object]) -> None:
    with pytest.raises(InvalidQueryError):
        build()


# -- ordering ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        # Numbers before strings; documents without the field are left out.
        ("n", ["a", "d", "b", "c", "e"]),
        # null < false < true < numbers; equal values by partition key, then id.
        ("flag", ["f", "b", "a", "c", "d"]),
        ("meta.size", ["c", "a", "b"]),
        ("s", ["e", "a", "b", "c", "d", "f"]),
        ("id", ["a", "b", "c", "d", "e", "f"]),
        # Arrays and objects are not ordering values: only e's string tags are.
        ("tags", ["e"]),
        ("meta", ["e"]),
    ],
)
def test_query_ordering(catalog: DocumentStore, order_by: str, expected: list[str]) -> None:
    ascending = catalog.query(COLLECTION, Query(order_by=order_by)).items
    descending = catalog.query(COLLECTION, Query(order_by=order_by, descending=True)).items

    assert [doc.id for doc in ascending] == expected
    assert [doc.id for doc in descending] == expected[::-1]


# -- paging ------------------------------------------------------------------------

PARTITIONS = ["alpha", "beta", "gamma"]
MIXED_VALUES: list[Any] = [None, False, True, 0, 1, 2.5, "a", "b"]
PAGED_COUNT = 30


def paged_documents() -> list[tuple[str, dict[str, Any]]]:
    """30 documents over 3 partitions: every id appears in 3 partitions, every `rank` in 7
    or 8 documents (several of them in the same partition), `mixed` of several JSON types."""
    documents = []
    for i in range(PAGED_COUNT):
        data = {
            "id": f"item{(i * 7) % 10:02d}",
            "rank": i % 4,
            "mixed": MIXED_VALUES[i % len(MIXED_VALUES)],
            "nested": {"rank": (i * 3) % 5},
            "n": i,
        }
        documents.append((PARTITIONS[i % 3], data))
    return documents


def expected_order(
    documents: list[tuple[str, dict[str, Any]]], order_by: str, descending: bool, partition_key: str | None
) -> list[tuple[str, str]]:
    type_rank = {type(None): 0, bool: 1, int: 2, float: 2, str: 3}

    def value(data: dict[str, Any]) -> Any:
        for part in order_by.split("."):
            data = data[part]
        return data

    def sort_key(item: tuple[str, dict[str, Any]]) -> tuple[Any, ...]:
        pk, data = item
        v = value(data)
        return type_rank[type(v)], v, pk, data["id"]

    chosen = [item for item in documents if partition_key is None or item[0] == partition_key]
    return [(pk, data["id"]) for pk, data in sorted(chosen, key=sort_key, reverse=descending)]


@pytest.fixture
def paged(store: DocumentStore) -> DocumentStore:
    documents = paged_documents()
    random.Random(5).shuffle(documents)
    for pk, data in documents:
        store.create(COLLECTION, data, partition_key=pk)
    return store


def read_all_pages(store: DocumentStore, query: Query, limit: int) -> list[Page]:
    pages = []
    token: str | None = None
    while True:
        page = store.query(COLLECTION, query, limit=limit, continuation=token)
        pages.append(page)
        if page.continuation is None:
            return pages
        assert len(pages) <= PAGED_COUNT + 1, "paging does not end"
        token = page.continuation


@pytest.mark.parametrize("limit", [1, 4, 10, 31])
@pytest.mark.parametrize("partition_key", [None, "beta"], ids=["across", "one-partition"])
@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("order_by", ["rank", "id", "mixed", "nested.rank"])
def test_paging_yields_every_document_once_in_order(
    paged: DocumentStore, order_by: str, descending: bool, partition_key: str | None, limit: int
) -> None:
    query = Query(partition_key=partition_key, order_by=order_by, descending=descending)
    expected = expected_order(paged_documents(), order_by, descending, partition_key)

    pages = read_all_pages(paged, query, limit)

    assert [key for page in pages for key in keys(page.items)] == expected
    assert all(len(page.items) == limit for page in pages[:-1])
    assert 0 < len(pages[-1].items) <= limit
    assert all(isinstance(page.continuation, str) for page in pages[:-1])


def test_paging_with_filters(paged: DocumentStore) -> None:
    filters = [Filter("rank", "in", [1, 3]), Filter("n", "ge", 4)]
    query = Query(filters=filters, order_by="rank", descending=True)
    matching = [(pk, data) for pk, data in paged_documents() if data["rank"] in (1, 3) and data["n"] >= 4]

    pages = read_all_pages(paged, query, 3)

    assert [key for page in pages for key in keys(page.items)] == expected_order(matching, "rank", True, None)
    assert len(matching) == 13


def test_query_all_reads_every_page(paged: DocumentStore) -> None:
    query = Query(order_by="rank")

    assert keys(list(paged.query_all(COLLECTION, query, page_size=4))) == expected_order(
        paged_documents(), "rank", False, None
    )


def test_paging_while_documents_change(paged: DocumentStore) -> None:
    query = Query(order_by="n")
    first = paged.query(COLLECTION, query, limit=10)
    assert [doc.data["n"] for doc in first.items] == list(range(10))

    # Between pages: one unseen document goes, new ones come before and after the boundary.
    doomed = next(doc for doc in paged.query_all(COLLECTION, query) if doc.data["n"] == 15)
    paged.delete(COLLECTION, doomed.id, partition_key=doomed.partition_key)
    paged.create(COLLECTION, {"id": "early", "n": 5.5}, partition_key="beta")
    paged.create(COLLECTION, {"id": "late", "n": 20.5}, partition_key="beta")
    rest: list[Document] = []
    token = first.continuation
    while token is not None:
        page = paged.query(COLLECTION, query, limit=10, continuation=token)
        rest += page.items
        token = page.continuation

    assert [doc.data["n"] for doc in rest] == [*range(10, 15), *range(16, 21), 20.5, *range(21, 30)]


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE_SIZE + 1, True])
def test_page_size_limits(paged: DocumentStore, limit: int) -> None:
    with pytest.raises(InvalidQueryError):
        paged.query(COLLECTION, limit=limit)


def test_the_largest_page_size_is_allowed(paged: DocumentStore) -> None:
    page = paged.query(COLLECTION, limit=MAX_PAGE_SIZE)

    assert len(page.items) == PAGED_COUNT
    assert page.continuation is None


def test_default_query_pages_by_id_across_partitions(paged: DocumentStore) -> None:
    page = paged.query(COLLECTION, limit=4)

    assert keys(page.items) == expected_order(paged_documents(), "id", False, None)[:4]
    assert keys(page.items)[:3] == [("alpha", "item00"), ("beta", "item00"), ("gamma", "item00")]


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage!!",
        "not a token",
        "e30",  # {}
        "W10",  # []
        encode_token({"q": "0" * 16, "v": 1, "pk": "alpha", "id": "item00"}),
    ],
)
def test_invalid_continuation_tokens_are_refused(paged: DocumentStore, token: str) -> None:
    with pytest.raises(InvalidQueryError):
        paged.query(COLLECTION, Query(order_by="rank"), limit=3, continuation=token)


def test_a_token_only_continues_the_query_it_came_from(paged: DocumentStore) -> None:
    token = paged.query(COLLECTION, Query(order_by="rank"), limit=3).continuation
    assert token is not None

    for other_query in [
        Query(order_by="n"),
        Query(order_by="rank", descending=True),
        Query(order_by="rank", partition_key="beta"),
        Query(order_by="rank", filters=[Filter("n", "ge", 0)]),
    ]:
        with pytest.raises(InvalidQueryError):
            paged.query(COLLECTION, other_query, limit=3, continuation=token)
    with pytest.raises(InvalidQueryError):
        paged.query("another-collection", Query(order_by="rank"), limit=3, continuation=token)
    # A different page size is the same query.
    assert paged.query(COLLECTION, Query(order_by="rank"), limit=5, continuation=token).items


def test_a_token_with_a_forged_key_is_refused(paged: DocumentStore) -> None:
    token = paged.query(COLLECTION, Query(order_by="rank"), limit=3).continuation
    assert token is not None
    from visiondock.storage.documents import decode_token

    state = decode_token(token)
    for forged in ({**state, "v": [1]}, {**state, "pk": 5}, {**state, "id": None}, {"q": state["q"]}):
        with pytest.raises(InvalidQueryError):
            paged.query(COLLECTION, Query(order_by="rank"), limit=3, continuation=encode_token(forged))
