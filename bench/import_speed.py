"""Dataset import speed (`make bench-import`): a labeled folder of photos (flowers12's 720, or as many
synthetic ones when ../shared/datasets is absent) imported into a fresh multiclass project, on
embedded storage (local files + SQLite) and on the Azure backends' emulators (Azurite + cosmosdb-server,
started here as the tests start them).

Three paths per backend, each into a store of its own:

- `one-by-one`: the per-image path the import took before it was batched, step for step (the image's
  own upload, then `ImageLibrary.set_tags`, then its history entry): the baseline of this run.
- `batched`: `DatasetImporter` in process, on the same stores.
- `cli`: `visiondock import` (cli/importer.py) against the annotation service as a uvicorn process:
  what a person runs; HTTP and multipart included.

The in-process paths run on stores wrapped here to count their calls; on the emulators the HTTP
requests the SDKs send are counted as well. Both are printed per image: the round trips an image
costs. Targets: >= 100 images/s through the CLI on the emulators, and the embedded path no slower
than the baseline. The machine may be shared: the load average is printed beside the numbers,
and ratios within one run mean more than the absolute figures.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from cli.importer import import_dataset
from cli.local_services import ServiceProcess, free_port
from services.annotation.dataset_import import DatasetImporter
from services.annotation.datasets import FolderSource, get_format
from services.annotation.history import LabelChange, LabelHistory
from services.annotation.images import IMAGES, ImageLibrary, image_blob_key, public_image
from services.annotation.projects import ProjectCatalog
from visiondock.auth import new_key
from visiondock.clients import AnnotationClient
from visiondock.images import inspect_image, sha256_hex
from visiondock.settings import LOCAL_DEV_API_KEY
from visiondock.storage import (
    MAX_BATCH_DOCUMENTS,
    BlobInfo,
    BlobStore,
    Document,
    DocumentNotFoundError,
    DocumentStore,
    Page,
    Query,
)
from visiondock.storage.blobs import DEFAULT_CONTENT_TYPE, STREAM_CHUNK_SIZE
from visiondock.timeutil import utc_now

DEFAULT_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
PROJECT = "bench-import"
TARGET_EMULATORS = 100.0
BACKENDS = ("embedded", "emulators")
PATHS = ("one-by-one", "batched", "cli")


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


# -- the dataset ----------------------------------------------------------------------------
def distinct_images(root: Path) -> int:
    """Photos with different bytes: a photo found twice is one image (flowers12 has such a pair)."""
    return len({sha256_hex(path.read_bytes()) for path in root.rglob("*.jpg")})


def dataset(count: int, workdir: Path, datasets: Path) -> tuple[Path, str]:
    """A folder-format dataset of `count` labeled photos: flowers12's, else synthetic ones."""
    flowers = datasets / "flowers12" / "train"
    if flowers.is_dir():
        files = sorted(flowers.rglob("*.jpg"))
        if len(files) >= count:
            root = workdir / "flowers"
            # An even share of each class, as the dataset orders them.
            for path in files[:: max(1, len(files) // count)][:count]:
                target = root / path.parent.name / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            return root, f"flowers12 ({count} of {len(files)} photos, 224x224 JPEG)"
    root = workdir / "synthetic"
    rng = random.Random(0)
    for n in range(count):
        folder = root / f"class{n % 12:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        # Noise compresses like a photo does: about the size of flowers12's files.
        image = Image.frombytes("RGB", (224, 224), rng.randbytes(224 * 224 * 3)).resize((224, 224))
        image.save(folder / f"{n:05d}.jpg", "JPEG", quality=60)
    return root, f"synthetic ({count} noise JPEGs, 224x224; {flowers} is absent)"


# -- counting the stores' round trips -------------------------------------------------------------
class CountingDocuments(DocumentStore):
    """A DocumentStore that counts each call and passes it on."""

    def __init__(self, inner: DocumentStore) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def create(self, collection: str, data: Mapping[str, Any], *, partition_key: str) -> Document:
        self.calls["create"] += 1
        return self.inner.create(collection, data, partition_key=partition_key)

    def create_many(self, collection: str, documents: Sequence[Mapping[str, Any]], *,
                    partition_key: str) -> list[Document]:
        self.calls["create_many"] += 1
        return self.inner.create_many(collection, documents, partition_key=partition_key)  # type: ignore[attr-defined]

    def put(self, collection: str, data: Mapping[str, Any], *, partition_key: str,
            if_match: str | None = None) -> Document:
        self.calls["put"] += 1
        return self.inner.put(collection, data, partition_key=partition_key, if_match=if_match)

    def get(self, collection: str, doc_id: str, *, partition_key: str) -> Document:
        self.calls["get"] += 1
        return self.inner.get(collection, doc_id, partition_key=partition_key)

    def patch(self, collection: str, doc_id: str, *, partition_key: str, set_fields: Mapping[str, Any] | None = None,
              remove_fields: Sequence[str] = (), if_match: str | None = None) -> Document:
        self.calls["patch"] += 1
        return self.inner.patch(collection, doc_id, partition_key=partition_key, set_fields=set_fields,
                                remove_fields=remove_fields, if_match=if_match)

    def delete(self, collection: str, doc_id: str, *, partition_key: str, if_match: str | None = None) -> None:
        self.calls["delete"] += 1
        self.inner.delete(collection, doc_id, partition_key=partition_key, if_match=if_match)

    def query(self, collection: str, query: Query | None = None, *, limit: int = 100,
              continuation: str | None = None) -> Page:
        self.calls["query"] += 1
        return self.inner.query(collection, query, limit=limit, continuation=continuation)

    def close(self) -> None:
        self.inner.close()


class CountingBlobs(BlobStore):
    """A BlobStore that counts each call (from any thread) and passes it on."""

    def __init__(self, inner: BlobStore) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1

    def put(self, key: str, data: bytes | BinaryIO, *, content_type: str = DEFAULT_CONTENT_TYPE,
            overwrite: bool = True) -> BlobInfo:
        self._count("put")
        return self.inner.put(key, data, content_type=content_type, overwrite=overwrite)

    def get(self, key: str) -> bytes:
        self._count("get")
        return self.inner.get(key)

    def stream(self, key: str, chunk_size: int = STREAM_CHUNK_SIZE) -> Iterator[bytes]:
        self._count("stream")
        return self.inner.stream(key, chunk_size)

    def info(self, key: str) -> BlobInfo:
        self._count("info")
        return self.inner.info(key)

    def exists(self, key: str) -> bool:
        self._count("exists")
        return self.inner.exists(key)

    def delete(self, key: str) -> bool:
        self._count("delete")
        return self.inner.delete(key)

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        self._count("list")
        return self.inner.list(prefix)

    def close(self) -> None:
        self.inner.close()


class HttpCounter:
    """Counts the HTTP requests this process sends through `requests` (the Azure SDKs' transport), by port."""

    def __init__(self) -> None:
        self.by_port: Counter[int] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def installed(self) -> Iterator[HttpCounter]:
        from urllib.parse import urlsplit

        from requests.adapters import HTTPAdapter

        original = HTTPAdapter.send
        counter = self

        def send(adapter: HTTPAdapter, request: Any, *args: Any, **kwargs: Any) -> Any:
            port = urlsplit(request.url).port or 0
            with counter._lock:
                counter.by_port[port] += 1
            return original(adapter, request, *args, **kwargs)

        HTTPAdapter.send = send  # type: ignore[method-assign]
        try:
            yield self
        finally:
            HTTPAdapter.send = original  # type: ignore[method-assign]


# -- the backends ----------------------------------------------------------------------------------
@dataclass
class Backend:
    name: str
    workdir: Path
    azurite: Any = None
    cosmos: Any = None

    def fresh_names(self) -> tuple[str, str]:
        suffix = uuid.uuid4().hex[:12]
        return f"bench-{suffix}", f"bench-{suffix}"

    def emulator_pids(self) -> list[int]:
        return [server.server.process.pid for server in (self.azurite, self.cosmos) if server is not None]

    def open(self) -> tuple[DocumentStore, BlobStore]:
        """Empty stores of this backend."""
        if self.name == "embedded":
            home = Path(tempfile.mkdtemp(dir=self.workdir))
            from visiondock.storage.blobs_local import LocalBlobStore
            from visiondock.storage.documents_sqlite import SqliteDocumentStore

            return SqliteDocumentStore(home / "documents.sqlite3"), LocalBlobStore(home / "blobs")
        from visiondock.storage.blobs_azure import AzureBlobStore
        from visiondock.storage.documents_cosmos import CosmosDocumentStore

        container, database = self.fresh_names()
        return (CosmosDocumentStore(endpoint=self.cosmos.endpoint, key=self.cosmos.key, database=database,
                                    endpoint_discovery=False),
                AzureBlobStore(self.azurite.connection_string, container=container))

    def service_env(self) -> tuple[dict[str, str], str]:
        """The annotation service's settings on empty stores of this backend, and the key to call it with."""
        home = Path(tempfile.mkdtemp(dir=self.workdir))
        env = {**os.environ, "VISIONDOCK_HOME": str(home), "VISIONDOCK_LOG_LEVEL": "WARNING",
               "VISIONDOCK_LOG_FORMAT": "text"}
        if self.name == "embedded":
            return {**env, "VISIONDOCK_API_KEYS": LOCAL_DEV_API_KEY}, LOCAL_DEV_API_KEY
        key, entry = new_key("bench-import", ["admin"])
        container, database = self.fresh_names()
        return {**env, "VISIONDOCK_API_KEYS": "", "VISIONDOCK_API_KEY_ENTRIES": entry,
                "VISIONDOCK_BLOB_BACKEND": "azure",
                "VISIONDOCK_AZURE_STORAGE_CONNECTION_STRING": self.azurite.connection_string,
                "VISIONDOCK_AZURE_STORAGE_CONTAINER": container,
                "VISIONDOCK_DOCUMENT_BACKEND": "cosmos", "VISIONDOCK_COSMOS_ENDPOINT": self.cosmos.endpoint,
                "VISIONDOCK_COSMOS_KEY": self.cosmos.key, "VISIONDOCK_COSMOS_DATABASE": database,
                "VISIONDOCK_COSMOS_ENDPOINT_DISCOVERY": "false"}, key


@contextmanager
def backend(name: str, workdir: Path) -> Iterator[Backend]:
    if name == "embedded":
        yield Backend(name, workdir)
        return
    from tests.support.emulators import start_azurite_blob, start_cosmosdb_server

    for folder in ("azurite", "cosmos"):
        (workdir / folder).mkdir()
    azurite = start_azurite_blob(workdir / "azurite")
    try:
        cosmos = start_cosmosdb_server(workdir / "cosmos")
        try:
            yield Backend(name, workdir, azurite=azurite, cosmos=cosmos)
        finally:
            cosmos.stop()
    finally:
        azurite.stop()


# -- the paths ---------------------------------------------------------------------------------------
def one_by_one(library: ImageLibrary, root: Path) -> None:
    """The import as it ran before batching, one image after another: the image's upload (a lookup by
    its hash, the blob, the document, a check that the blob is still there), then its labels through
    `ImageLibrary.set_tags`, which records the history entry."""
    fmt = get_format("folder")
    source = FolderSource(root)
    found = fmt.read(source)
    for name in found.classes:
        library.projects.create_tag(PROJECT, name)
    for sample in found.samples:
        data = source.read(sample.path)
        project = library.projects.get(PROJECT)
        facts = inspect_image(data, max_pixels=library.max_pixels)
        try:
            image = public_image(library.documents.get(IMAGES, facts.sha256, partition_key=PROJECT))
        except DocumentNotFoundError:
            key = image_blob_key(PROJECT, facts.sha256)
            library.blobs.put(key, data, content_type=facts.content_type)
            now = utc_now()
            image = public_image(library.documents.create(IMAGES, {
                "id": facts.sha256, "project_id": PROJECT, "filename": sample.path, "content_type": facts.content_type,
                "width": facts.width, "height": facts.height, "size": len(data), "split": None, "created_at": now,
                "tags": [], "regions": [], "labeled": False, "label_revision": 0, "updated_at": now},
                partition_key=PROJECT))
            if not library.blobs.exists(key):
                library.blobs.put(key, data, content_type=facts.content_type)
        assert project.type == "multiclass"
        if image["labeled"] and image["tags"] == sample.tags:
            continue  # the same photo twice in the dataset: unchanged
        library.set_tags(PROJECT, image["id"], sample.tags, if_match=image["etag"],
                         change=LabelChange(source="upload"))


def batched(library: ImageLibrary, root: Path) -> None:
    fmt = get_format("folder")
    source = FolderSource(root)
    report = DatasetImporter(library, library.projects).run(PROJECT, fmt, fmt.read(source), source.read)
    assert not report["skipped"] and not report["conflicts"], report


@dataclass
class Result:
    backend: str
    path: str
    images: int
    seconds: float
    cpu_seconds: float  # of every process the import ran in (this one, the service, the emulators)
    document_calls: float | None = None  # per image
    blob_calls: float | None = None
    http_requests: float | None = None

    @property
    def rate(self) -> float:
        return self.images / self.seconds


def process_cpu_seconds(pid: int) -> float:
    """CPU time a process and its waited-for children have used (Linux /proc), 0 where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


@contextmanager
def cpu_used(where: Backend, *pids: int) -> Iterator[list[float]]:
    """CPU seconds this process, `pids` and the backend's emulators used inside the block: a figure
    that a busy machine changes far less than the wall time."""
    watched = [*pids, *where.emulator_pids()]
    spent: list[float] = []
    mine, others = time.process_time(), sum(process_cpu_seconds(pid) for pid in watched)
    yield spent
    spent.append(time.process_time() - mine + sum(process_cpu_seconds(pid) for pid in watched) - others)


def prefill(documents: DocumentStore, count: int) -> None:
    """`count` image documents (no bytes) in the project already: lookups by content hash and inserts
    into a large project."""
    for start in range(0, count, MAX_BATCH_DOCUMENTS):
        documents.create_many(IMAGES, [
            {"id": sha256_hex(f"existing-{n}".encode()), "project_id": PROJECT, "filename": f"{n}.jpg",
             "content_type": "image/jpeg", "width": 224, "height": 224, "size": 12000, "split": None,
             "created_at": f"2020-01-01T00:00:00.{n % 1000000:06d}+00:00", "tags": ["bluebell"], "regions": [],
             "labeled": True, "label_revision": 1, "updated_at": "2020-01-01T00:00:00+00:00"}
            for n in range(start, min(count, start + MAX_BATCH_DOCUMENTS))], partition_key=PROJECT)


def run_in_process(where: Backend, path: str, root: Path, count: int, existing: int = 0) -> Result:
    documents, blobs = where.open()
    counted_documents, counted_blobs = CountingDocuments(documents), CountingBlobs(blobs)
    projects = ProjectCatalog(counted_documents)
    library = ImageLibrary(counted_documents, counted_blobs, projects, history=LabelHistory(counted_documents))
    with ExitStack() as stack:
        stack.callback(documents.close)
        stack.callback(blobs.close)
        projects.create(PROJECT, "multiclass")
        prefill(documents, existing)
        counted_documents.calls.clear()
        http = stack.enter_context(HttpCounter().installed())
        with cpu_used(where) as cpu:
            started = time.perf_counter()
            (one_by_one if path == "one-by-one" else batched)(library, root)
            seconds = time.perf_counter() - started
        stats = ImageLibrary(documents, blobs, ProjectCatalog(documents)).stats(PROJECT)
        assert stats["image_count"] == stats["labeled_count"] == count + existing, stats
        document_calls = sum(counted_documents.calls.values()) / count
        blob_calls = sum(counted_blobs.calls.values()) / count
        requests = sum(http.by_port.values()) / count if where.name == "emulators" else None
    return Result(where.name, path, count, seconds, cpu[0], document_calls, blob_calls, requests)


def run_cli(where: Backend, root: Path, count: int) -> Result:
    env, key = where.service_env()
    process = ServiceProcess.spawn("services.annotation", name="annotation", port=free_port(), env=env,
                                   log_dir=Path(env["VISIONDOCK_HOME"]) / "logs")
    try:
        process.wait_ready()
        with AnnotationClient(process.url, key) as client:
            client.create_project(PROJECT, "multiclass")
            with cpu_used(where, process.pid) as cpu:
                started = time.perf_counter()
                report = import_dataset(client, PROJECT, root, "folder", progress=False)
                seconds = time.perf_counter() - started
    finally:
        process.stop()
    assert report["created"] == report["labeled"] == count, report
    return Result(where.name, "cli", count, seconds, cpu[0])


# -- the table ----------------------------------------------------------------------------------------
def _per_image(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_table(results: list[Result]) -> None:
    print(f"\n{'backend':<10} {'path':<11} {'images':>6} {'seconds':>8} {'images/s':>9} {'vs one-by-one':>14} "
          f"{'CPU ms/img':>11} {'doc calls/img':>14} {'blob calls/img':>15} {'HTTP req/img':>13}")
    baselines = {r.backend: r.rate for r in results if r.path == "one-by-one"}
    for r in results:
        ratio = f"{r.rate / baselines[r.backend]:.2f}x" if r.backend in baselines else "-"
        print(f"{r.backend:<10} {r.path:<11} {r.images:>6} {r.seconds:>8.2f} {r.rate:>9.1f} {ratio:>14} "
              f"{r.cpu_seconds / r.images * 1000:>11.2f} {_per_image(r.document_calls):>14} "
              f"{_per_image(r.blob_calls):>15} {_per_image(r.http_requests):>13}")
    print("CPU ms/img: CPU time of every process the import ran in (this one, the service for `cli`, the "
          "emulators) per image; less sensitive to a busy machine than the wall time.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=720, help="how many photos to import (default 720)")
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS,
                        help="the folder holding flowers12/ (default ../shared/datasets)")
    parser.add_argument("--existing", type=int, default=0,
                        help="image documents the project holds before the import, embedded storage only "
                             "(e.g. 100000, the size to plan for; the emulator scans a partition per query)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="embedded, emulators or both")
    parser.add_argument("--paths", default=",".join(PATHS), help="one-by-one, batched, cli (default all three)")
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    paths = [p for p in args.paths.split(",") if p]
    unknown = sorted(set(backends) - set(BACKENDS)) + sorted(set(paths) - set(PATHS))
    if unknown:
        parser.error(f"unknown backend or path: {', '.join(unknown)}")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        workdir = Path(tmp)
        root, described = dataset(args.images, workdir, args.datasets)
        count = distinct_images(root)
        print(f"dataset: {described}, {count} distinct; {os.cpu_count()} CPUs; load average before: {load()}",
              flush=True)
        if args.existing:
            print(f"embedded, in process: into a project of {args.existing:,} images already", flush=True)
        for name in backends:
            with backend(name, workdir) as where:
                for path in paths:
                    if path == "cli":
                        result = run_cli(where, root, count)
                    else:
                        result = run_in_process(where, path, root, count,
                                                args.existing if name == "embedded" else 0)
                    results.append(result)
                    print(f"  {name:<10} {path:<11} {result.rate:7.1f} images/s  (load {load()})", flush=True)
    print_table(results)
    print(f"\nload average after: {load()}")
    for r in results:
        if r.backend == "emulators" and r.path == "cli":
            verdict = "meets" if r.rate >= TARGET_EMULATORS else "misses"
            print(f"emulators through the CLI: {r.rate:.1f} images/s {verdict} the target of {TARGET_EMULATORS:.0f}")
    embedded = {r.path: r.rate for r in results if r.backend == "embedded"}
    if "one-by-one" in embedded and "batched" in embedded:
        print(f"embedded, batched against one-by-one: {embedded['batched'] / embedded['one-by-one']:.2f}x "
              "(target: no slower, >= 1.0x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
