"""BlobStore on the local filesystem: the embedded default.

Each blob is a file under `root/data/<key>`; its content type and etag sit beside it
in `root/meta/<key>.json`. Bytes are written to a temporary file and renamed into
place, so a reader never sees half a blob.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from visiondock.storage.blobs import (
    DEFAULT_CONTENT_TYPE,
    STREAM_CHUNK_SIZE,
    BlobExistsError,
    BlobInfo,
    BlobNotFoundError,
    BlobStore,
    validate_key,
    validate_prefix,
)


class LocalBlobStore(BlobStore):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._data = self.root / "data"
        self._meta = self.root / "meta"
        self._data.mkdir(parents=True, exist_ok=True)
        self._meta.mkdir(parents=True, exist_ok=True)
        # Serialises check-then-write for overwrite=False within this process; across
        # processes os.link below refuses an existing target.
        self._lock = threading.Lock()

    def _paths(self, key: str) -> tuple[Path, Path]:
        validate_key(key)
        return self._data / key, self._meta / f"{key}.json"

    def put(
        self,
        key: str,
        data: bytes | IO[bytes],
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        overwrite: bool = True,
    ) -> BlobInfo:
        data_path, meta_path = self._paths(key)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=data_path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(data, bytes | bytearray | memoryview):
                    out.write(data)
                    digest.update(data)
                    size = len(data)
                else:
                    while chunk := data.read(STREAM_CHUNK_SIZE):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            now = datetime.now(UTC)
            # The etag changes on every write, even of the same bytes, as Azure's does.
            etag = f'"{digest.hexdigest()[:16]}-{now.timestamp():.6f}"'
            meta = {"content_type": content_type or DEFAULT_CONTENT_TYPE, "etag": etag, "size": size,
                    "last_modified": now.isoformat()}
            with self._lock:
                if overwrite:
                    os.replace(tmp_name, data_path)
                else:
                    try:
                        os.link(tmp_name, data_path)
                    except FileExistsError:
                        raise BlobExistsError(key) from None
                    os.unlink(tmp_name)
                self._write_meta(meta_path, meta)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return BlobInfo(key=key, size=size, content_type=content_type or DEFAULT_CONTENT_TYPE, etag=etag,
                        last_modified=now)

    def _write_meta(self, meta_path: Path, meta: dict[str, object]) -> None:
        fd, tmp_name = tempfile.mkstemp(dir=meta_path.parent, prefix=".meta-")
        with os.fdopen(fd, "w") as out:
            json.dump(meta, out)
        os.replace(tmp_name, meta_path)

    def get(self, key: str) -> bytes:
        data_path, _ = self._paths(key)
        try:
            return data_path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFoundError(key) from None

    def stream(self, key: str, chunk_size: int = STREAM_CHUNK_SIZE) -> Iterator[bytes]:
        data_path, _ = self._paths(key)
        try:
            handle = data_path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFoundError(key) from None

        def chunks() -> Iterator[bytes]:
            with handle:
                while chunk := handle.read(chunk_size):
                    yield chunk

        return chunks()

    def info(self, key: str) -> BlobInfo:
        data_path, meta_path = self._paths(key)
        if not data_path.is_file():
            raise BlobNotFoundError(key)
        return self._info(key, data_path, meta_path)

    def _info(self, key: str, data_path: Path, meta_path: Path) -> BlobInfo:
        try:
            meta = json.loads(meta_path.read_text())
        except (FileNotFoundError, ValueError):
            # Bytes without metadata (copied in by hand): describe them from the file.
            stat = data_path.stat()
            meta = {"content_type": DEFAULT_CONTENT_TYPE, "etag": f'"{stat.st_mtime_ns}-{stat.st_size}"',
                    "last_modified": datetime.fromtimestamp(stat.st_mtime, UTC).isoformat()}
        return BlobInfo(
            key=key,
            size=data_path.stat().st_size,
            content_type=meta["content_type"],
            etag=meta["etag"],
            last_modified=datetime.fromisoformat(meta["last_modified"]),
        )

    def exists(self, key: str) -> bool:
        data_path, _ = self._paths(key)
        return data_path.is_file()

    def delete(self, key: str) -> bool:
        data_path, meta_path = self._paths(key)
        with self._lock:
            try:
                data_path.unlink()
            except (FileNotFoundError, IsADirectoryError):
                return False
            meta_path.unlink(missing_ok=True)
        return True

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        validate_prefix(prefix)
        # Walk only the folder the prefix points into, then filter by the full prefix.
        folder = self._data / prefix.rsplit("/", 1)[0] if "/" in prefix else self._data
        if not folder.is_dir():
            return
        keys = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for name in filenames:
                if name.startswith((".upload-", ".meta-")):
                    continue
                key = Path(dirpath, name).relative_to(self._data).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        for key in sorted(keys):
            data_path, meta_path = self._paths(key)
            if data_path.is_file():
                yield self._info(key, data_path, meta_path)
