"""The BlobStore contract, run against every backend: the local filesystem and Azure Blob
Storage (on Azurite). Every test holds for each backend alike."""

from __future__ import annotations

import io
import os
import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from visiondock.storage.blobs import (
    DEFAULT_CONTENT_TYPE,
    BlobError,
    BlobExistsError,
    BlobInfo,
    BlobNotFoundError,
    BlobStore,
    InvalidBlobKeyError,
)
from visiondock.storage.blobs_local import LocalBlobStore

MiB = 1 << 20


@pytest.fixture(params=["local", pytest.param("azure", marks=pytest.mark.azure)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    blob_store: BlobStore
    if request.param == "local":
        blob_store = LocalBlobStore(tmp_path / "blobs")
    else:
        server = request.getfixturevalue("azurite_blob")
        container = request.getfixturevalue("azure_blob_container")
        from visiondock.storage.blobs_azure import AzureBlobStore

        blob_store = AzureBlobStore(server.connection_string, container=container)
    try:
        yield blob_store
    finally:
        blob_store.close()


class UnseekableStream(io.RawIOBase):
    """A pipe-like stream: it can be read, not measured or rewound."""

    def __init__(self, data: bytes, max_read: int = 64 * 1024) -> None:
        super().__init__()
        self._data = memoryview(data)
        self._pos = 0
        self._max_read = max_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._max_read, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def random_bytes(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def assert_recent(moment: datetime) -> None:
    assert moment.tzinfo is not None, "last_modified must be timezone-aware"
    assert abs(datetime.now(UTC) - moment) < timedelta(minutes=5)


# -- put / get / info --------------------------------------------------------------


def test_put_returns_info_and_get_returns_the_bytes(store: BlobStore) -> None:
    info = store.put("images/p1/cat.jpg", b"meow")

    assert info.key == "images/p1/cat.jpg"
    assert info.size == 4
    assert info.content_type == DEFAULT_CONTENT_TYPE
    assert isinstance(info.etag, str) and info.etag
    assert_recent(info.last_modified)
    assert store.get("images/p1/cat.jpg") == b"meow"


def test_info_describes_the_stored_blob_like_put_did(store: BlobStore) -> None:
    put_info = store.put("models/m/1/model.onnx", b"\x00\x01\x02", content_type="application/onnx")

    info = store.info("models/m/1/model.onnx")

    assert isinstance(info, BlobInfo)
    assert (info.key, info.size, info.content_type, info.etag) == (
        "models/m/1/model.onnx",
        3,
        "application/onnx",
        put_info.etag,
    )
    assert abs(info.last_modified - put_info.last_modified) < timedelta(seconds=2)


@pytest.mark.parametrize("make_data", [bytes, bytearray, memoryview])
def test_put_accepts_bytes_like_data(store: BlobStore, make_data: Callable[[bytes], bytes]) -> None:
    info = store.put("a/b", make_data(b"payload"))

    assert info.size == 7
    assert store.get("a/b") == b"payload"


def test_put_reads_a_file_object_from_its_current_position(store: BlobStore) -> None:
    source = io.BytesIO(b"HEADERpayload")
    source.seek(6)

    info = store.put("a/file", source)

    assert info.size == 7
    assert store.get("a/file") == b"payload"


def test_put_reads_an_unseekable_stream_and_counts_its_size(store: BlobStore) -> None:
    data = random_bytes(300_000)

    info = store.put("a/pipe", UnseekableStream(data))

    assert info.size == len(data)
    assert store.info("a/pipe").size == len(data)
    assert store.get("a/pipe") == data


def test_empty_blob(store: BlobStore) -> None:
    info = store.put("a/empty", b"")

    assert info.size == 0
    assert store.get("a/empty") == b""
    assert store.info("a/empty").size == 0
    assert b"".join(store.stream("a/empty")) == b""
    assert store.exists("a/empty")


def test_content_type_is_kept_and_replaced_on_overwrite(store: BlobStore) -> None:
    store.put("img/x", b"1", content_type="image/png")
    assert store.info("img/x").content_type == "image/png"

    info = store.put("img/x", b"2", content_type="image/jpeg")

    assert info.content_type == "image/jpeg"
    assert store.info("img/x").content_type == "image/jpeg"
    assert [blob.content_type for blob in store.list("img/")] == ["image/jpeg"]


def test_empty_content_type_means_the_default(store: BlobStore) -> None:
    assert store.put("img/y", b"1", content_type="").content_type == DEFAULT_CONTENT_TYPE
    assert store.info("img/y").content_type == DEFAULT_CONTENT_TYPE


# -- overwrite and etags -----------------------------------------------------------


def test_overwrite_replaces_the_bytes_and_changes_the_etag(store: BlobStore) -> None:
    first = store.put("k/v", b"old")
    second = store.put("k/v", b"new value")

    assert store.get("k/v") == b"new value"
    assert store.info("k/v").size == 9
    assert second.etag != first.etag
    assert store.info("k/v").etag == second.etag


def test_rewriting_the_same_bytes_still_changes_the_etag(store: BlobStore) -> None:
    first = store.put("k/same", b"same")
    second = store.put("k/same", b"same")

    assert second.etag != first.etag


def test_overwrite_false_stores_a_new_key(store: BlobStore) -> None:
    info = store.put("k/new", b"x", overwrite=False)

    assert store.get("k/new") == b"x"
    assert store.info("k/new").etag == info.etag


def test_overwrite_false_refuses_an_existing_key_and_keeps_the_blob(store: BlobStore) -> None:
    original = store.put("k/taken", b"original", content_type="text/plain")

    with pytest.raises(BlobExistsError) as raised:
        store.put("k/taken", b"intruder", overwrite=False)

    assert raised.value.key == "k/taken"
    assert isinstance(raised.value, BlobError)
    assert store.get("k/taken") == b"original"
    info = store.info("k/taken")
    assert (info.etag, info.content_type) == (original.etag, "text/plain")


def test_overwrite_false_refuses_an_existing_key_for_streams_too(store: BlobStore) -> None:
    store.put("k/streamed", b"original")

    with pytest.raises(BlobExistsError):
        store.put("k/streamed", UnseekableStream(b"intruder"), overwrite=False)
    with pytest.raises(BlobExistsError):
        store.put("k/streamed", io.BytesIO(b"intruder"), overwrite=False)

    assert store.get("k/streamed") == b"original"


def test_racing_creates_with_overwrite_false_have_exactly_one_winner(store: BlobStore) -> None:
    writers = 4
    barrier = threading.Barrier(writers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def write(n: int) -> None:
        barrier.wait()
        try:
            store.put("race/key", f"writer {n}".encode(), overwrite=False)
            outcome = f"won {n}"
        except BlobExistsError:
            outcome = "lost"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [outcome for outcome in outcomes if outcome.startswith("won")]
    assert len(winners) == 1 and outcomes.count("lost") == writers - 1
    assert store.get("race/key") == f"writer {winners[0].split()[1]}".encode()


def test_one_store_takes_puts_from_many_threads_at_once(store: BlobStore) -> None:
    # An import writes a batch's images in parallel through one store.
    from concurrent.futures import ThreadPoolExecutor

    payloads = {f"images/p/{n:03d}": random.Random(n).randbytes(20_000 + n) for n in range(48)}
    with ThreadPoolExecutor(max_workers=8) as pool:
        infos = list(pool.map(lambda key: store.put(key, payloads[key], content_type="image/jpeg"), payloads))

    assert [info.key for info in infos] == list(payloads)
    assert [info.key for info in store.list("images/p/")] == sorted(payloads)
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(store.get, payloads)) == list(payloads.values())


# -- missing blobs and delete ------------------------------------------------------


def test_missing_blob(store: BlobStore) -> None:
    with pytest.raises(BlobNotFoundError) as raised:
        store.get("no/such/blob")
    assert raised.value.key == "no/such/blob"
    assert isinstance(raised.value, KeyError)
    with pytest.raises(BlobNotFoundError):
        store.info("no/such/blob")
    assert store.exists("no/such/blob") is False
    assert store.delete("no/such/blob") is False


def test_a_folder_of_blobs_is_not_a_blob(store: BlobStore) -> None:
    store.put("folder/inner", b"x")

    assert store.exists("folder") is False
    with pytest.raises(BlobNotFoundError):
        store.get("folder")
    with pytest.raises(BlobNotFoundError):
        store.info("folder")
    with pytest.raises(BlobNotFoundError):
        store.stream("folder")
    assert store.delete("folder") is False
    assert store.get("folder/inner") == b"x"


def test_stream_of_a_missing_blob_raises_before_the_first_chunk(store: BlobStore) -> None:
    # The call itself raises: a caller can answer 404 before it starts a response.
    with pytest.raises(BlobNotFoundError):
        store.stream("no/such/blob")


def test_delete_removes_the_blob(store: BlobStore) -> None:
    store.put("d/one", b"1")
    store.put("d/two", b"2")

    assert store.delete("d/one") is True

    assert store.exists("d/one") is False
    with pytest.raises(BlobNotFoundError):
        store.get("d/one")
    assert [blob.key for blob in store.list("d/")] == ["d/two"]
    assert store.delete("d/one") is False


def test_a_deleted_key_can_be_created_again(store: BlobStore) -> None:
    store.put("d/again", b"1")
    store.delete("d/again")

    store.put("d/again", b"2", overwrite=False)

    assert store.get("d/again") == b"2"


# -- streaming ---------------------------------------------------------------------


def test_stream_returns_a_multi_megabyte_blob_in_bounded_chunks(store: BlobStore) -> None:
    data = random_bytes(5 * MiB + 12345)
    store.put("big/model.onnx", data)

    chunks = list(store.stream("big/model.onnx", chunk_size=MiB))

    assert b"".join(chunks) == data
    assert all(0 < len(chunk) <= MiB for chunk in chunks)
    assert len(chunks) >= 6


@pytest.mark.parametrize("source", ["bytes", "file", "pipe"])
def test_large_uploads_round_trip(store: BlobStore, source: str) -> None:
    # 9 MiB: above the Azure backend's single-request limit, so it goes in blocks.
    data = random_bytes(9 * MiB + 1, seed=len(source))
    payload = {"bytes": data, "file": io.BytesIO(data), "pipe": UnseekableStream(data, max_read=MiB)}[source]

    info = store.put("big/upload", payload)

    assert info.size == len(data)
    assert store.get("big/upload") == data


def test_a_stream_never_mixes_versions_when_the_blob_is_overwritten(store: BlobStore) -> None:
    old = random_bytes(6 * MiB)
    store.put("s/moving", old)
    chunks = store.stream("s/moving", chunk_size=MiB)
    received = [next(chunks)]

    store.put("s/moving", b"new bytes")

    # Either the reader keeps the version it started (local files) or the stream fails
    # (Azure pins the etag); it never returns a mix.
    try:
        received.extend(chunks)
    except BlobError:
        return
    assert b"".join(received) == old


def test_stream_chunks_follow_the_requested_size(store: BlobStore) -> None:
    store.put("s/small", b"abcdefghij")

    assert b"".join(store.stream("s/small", chunk_size=3)) == b"abcdefghij"
    assert all(len(chunk) <= 3 for chunk in store.stream("s/small", chunk_size=3))


# -- listing -----------------------------------------------------------------------

LISTED_KEYS = [
    "images/a/1.jpg",
    "images/a/2.jpg",
    "images/a/sub/3.jpg",
    "images/a-b/1.jpg",
    "images/ab/1.jpg",
    "images/b/1.jpg",
    "images/B/1.jpg",
    "imagesx/1.jpg",
    "models/m/1/model.onnx",
    "top",
]


@pytest.fixture
def listed(store: BlobStore) -> BlobStore:
    keys = LISTED_KEYS.copy()
    random.Random(3).shuffle(keys)
    for key in keys:
        store.put(key, key.encode(), content_type="text/plain")
    return store


def test_list_everything_in_key_order(listed: BlobStore) -> None:
    assert [blob.key for blob in listed.list()] == sorted(LISTED_KEYS)


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("images/a/", ["images/a/1.jpg", "images/a/2.jpg", "images/a/sub/3.jpg"]),
        ("images/a", ["images/a-b/1.jpg", "images/a/1.jpg", "images/a/2.jpg", "images/a/sub/3.jpg",
                      "images/ab/1.jpg"]),
        ("images/ab", ["images/ab/1.jpg"]),
        ("images/", ["images/B/1.jpg", "images/a-b/1.jpg", "images/a/1.jpg", "images/a/2.jpg",
                     "images/a/sub/3.jpg", "images/ab/1.jpg", "images/b/1.jpg"]),
        ("images/a/1", ["images/a/1.jpg"]),
        ("images/a/sub/", ["images/a/sub/3.jpg"]),
        ("imagesx", ["imagesx/1.jpg"]),
        ("top", ["top"]),
        ("images/c/", []),
        ("nothing", []),
    ],
)
def test_list_by_prefix_in_key_order_without_neighbours(
    listed: BlobStore, prefix: str, expected: list[str]
) -> None:
    assert [blob.key for blob in listed.list(prefix)] == expected


def test_list_describes_each_blob(listed: BlobStore) -> None:
    infos = {blob.key: blob for blob in listed.list("images/a/")}

    for key, info in infos.items():
        assert info.size == len(key.encode())
        assert info.content_type == "text/plain"
        assert info.etag == listed.info(key).etag
        assert_recent(info.last_modified)


def test_list_of_an_empty_store_is_empty(store: BlobStore) -> None:
    assert list(store.list()) == []
    assert list(store.list("images/")) == []


# -- keys --------------------------------------------------------------------------

INVALID_KEYS = [
    "",
    "/leading",
    "trailing/",
    "double//slash",
    "../escape",
    "a/../b",
    "a/./b",
    ".hidden",
    "a/.hidden",
    "with space",
    "back\\slash",
    "new\nline",
    "trailing-newline\n",
    "question?",
    "hash#",
    "percent%20",
    "colon:x",
    "ümlaut",
    "a" * 201,
    "/".join(["abcdefghij"] * 94),  # 1033 characters
]


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys_are_refused_by_every_method(store: BlobStore, key: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: store.put(key, b"x"),
        lambda: store.get(key),
        lambda: store.stream(key),
        lambda: store.info(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
    ]
    for call in calls:
        with pytest.raises(InvalidBlobKeyError):
            call()
    assert list(store.list()) == []


@pytest.mark.parametrize("prefix", ["/", "../", "a//", " ", ".x", "a/.b", "ü"])
def test_invalid_list_prefixes_are_refused(store: BlobStore, prefix: str) -> None:
    with pytest.raises(InvalidBlobKeyError):
        list(store.list(prefix))


def test_invalid_key_error_is_a_value_error() -> None:
    assert issubclass(InvalidBlobKeyError, ValueError)
    assert issubclass(InvalidBlobKeyError, BlobError)


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "A_b-c.d=e+f@g",
        "0/1/2/3/4/5/6/7/8/9",
        "_underscore/start",
        "x" * 200,
        "/".join(["y" * 200] * 5),  # 1004 characters, the longest kind of key there is
        "dots.in.the/mid.dle",
    ],
)
def test_unusual_valid_keys_round_trip(store: BlobStore, key: str) -> None:
    store.put(key, b"ok")

    assert store.get(key) == b"ok"
    assert store.info(key).key == key
    assert [blob.key for blob in store.list(key)] == [key]
    assert store.delete(key) is True


def test_keys_are_case_sensitive(store: BlobStore) -> None:
    store.put("case/Key", b"upper")
    store.put("case/key", b"lower")

    assert store.get("case/Key") == b"upper"
    assert store.get("case/key") == b"lower"


def test_blobs_are_independent_of_the_process_working_directory(
    store: BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put("cwd/x", b"1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    assert store.get("cwd/x") == b"1"
    assert os.listdir(elsewhere) == []
