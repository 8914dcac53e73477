"""BlobStore on Azure Blob Storage (block blobs in one container), through the sync SDK.

Keys are blob names. `put` with `overwrite=False` sends If-None-Match: * so the service,
not a check-then-write here, refuses an existing name. Uploads of known size up to 8 MiB
go in one request; larger or unsized streams go in 4 MiB blocks committed at the end,
so a reader sees the old or the new blob, never a part. Downloads ask for 4 MiB at a
time, and a blob overwritten while it streams fails the stream (the SDK pins the etag)
instead of mixing versions. SDK errors come out as the BlobStore errors.

Etags: the service quotes them in headers ("0x8D...") but not in listings (0x8D...), so
`put`/`info` and `list` would disagree; they are given out quoted, as HTTP writes them.

Tested against Azurite (tests/emulators), which needs no workaround here.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import IO, Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient, ContentSettings

from visiondock.storage.blobs import (
    DEFAULT_CONTENT_TYPE,
    STREAM_CHUNK_SIZE,
    BlobError,
    BlobExistsError,
    BlobInfo,
    BlobNotFoundError,
    BlobStore,
    validate_key,
    validate_prefix,
)

_SINGLE_PUT_MAX = 8 << 20
_BLOCK_SIZE = 4 << 20
_GET_CHUNK = 4 << 20


def _quoted_etag(etag: str) -> str:
    # Headers carry the etag quoted ("0x8D..."), listings bare (0x8D...): one form for callers.
    return etag if etag.startswith('"') else f'"{etag}"'


def _short_message(exc: AzureError) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


@contextmanager
def _sdk_errors(key: str | None) -> Iterator[None]:
    """Map the SDK's errors for one blob (`key`) or for the container (None) to the
    interface's; the rest become BlobError."""
    try:
        yield
    except BlobError:
        raise
    except ResourceNotFoundError as exc:
        if key is not None:
            raise BlobNotFoundError(key) from None
        raise BlobError(f"Azure Blob Storage container not found: {_short_message(exc)}") from exc
    except AzureError as exc:
        target = f"blob {key!r}" if key is not None else "container"
        raise BlobError(f"Azure Blob Storage request for {target} failed: {_short_message(exc)}") from exc


class _CountingReader(io.RawIOBase):
    """A read-only view of a stream that counts the bytes read through it. It does not
    offer seek/tell, so the SDK uploads it in blocks without needing its length."""

    def __init__(self, source: IO[bytes]) -> None:
        super().__init__()
        self._source = source
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        chunk = self._source.read(-1 if size is None else size)
        self.count += len(chunk)
        return chunk

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _remaining_length(stream: IO[bytes]) -> int | None:
    """Bytes left in a seekable stream, or None when it cannot tell."""
    try:
        if not stream.seekable():
            return None
        position = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(position)
    except (AttributeError, OSError, ValueError):
        return None
    return end - position


class AzureBlobStore(BlobStore):
    def __init__(self, connection_string: str | None = None, *, container: str, account_url: str | None = None,
                 credential: Any = None) -> None:
        """Signed in by the connection string, or else at `account_url` with a token `credential`."""
        sizes: dict[str, Any] = {"max_single_put_size": _SINGLE_PUT_MAX, "max_block_size": _BLOCK_SIZE,
                 "max_single_get_size": _GET_CHUNK, "max_chunk_get_size": _GET_CHUNK}
        with _sdk_errors(None):
            if connection_string is not None:
                self._service = BlobServiceClient.from_connection_string(connection_string, **sizes)
            elif account_url is not None and credential is not None:
                self._service = BlobServiceClient(account_url, credential=credential, **sizes)
            else:
                raise BlobError("Azure Blob Storage needs a connection string, or an account URL and a credential")
            self._container: ContainerClient = self._service.get_container_client(container)
            with suppress(ResourceExistsError):  # created before, by us or by the operator
                self._container.create_container()
        self.container_name = container

    def close(self) -> None:
        self._container.close()
        self._service.close()

    def _blob(self, key: str) -> BlobClient:
        return self._container.get_blob_client(validate_key(key))

    def put(
        self,
        key: str,
        data: bytes | IO[bytes],
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        overwrite: bool = True,
    ) -> BlobInfo:
        blob = self._blob(key)
        content_type = content_type or DEFAULT_CONTENT_TYPE
        conditions: dict[str, Any] = {}
        if not overwrite:
            conditions = {"match_condition": MatchConditions.IfMissing}  # If-None-Match: *
        counter: _CountingReader | None = None
        payload: bytes | IO[bytes] | _CountingReader
        if isinstance(data, bytes | bytearray | memoryview):
            payload = bytes(data)
            size: int | None = len(payload)
        else:
            size = _remaining_length(data)
            payload = data
            if size is None:
                payload = counter = _CountingReader(data)
        with _sdk_errors(key):
            try:
                result = blob.upload_blob(
                    payload,
                    length=size,
                    overwrite=overwrite,
                    content_settings=ContentSettings(content_type=content_type),
                    **conditions,
                )
            except ResourceExistsError:
                raise BlobExistsError(key) from None
        if counter is not None:
            size = counter.count
        assert size is not None
        return BlobInfo(
            key=key,
            size=size,
            content_type=content_type,
            etag=_quoted_etag(result["etag"]),
            last_modified=result["last_modified"],
        )

    def get(self, key: str) -> bytes:
        blob = self._blob(key)
        with _sdk_errors(key):
            return blob.download_blob().readall()

    def stream(self, key: str, chunk_size: int = STREAM_CHUNK_SIZE) -> Iterator[bytes]:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        blob = self._blob(key)
        # The first request runs now, so a missing blob raises here, before any chunk.
        with _sdk_errors(key):
            downloader = blob.download_blob()

        def chunks() -> Iterator[bytes]:
            with _sdk_errors(key):
                while chunk := downloader.read(chunk_size):
                    yield chunk

        return chunks()

    def info(self, key: str) -> BlobInfo:
        blob = self._blob(key)
        with _sdk_errors(key):
            properties = blob.get_blob_properties()
        return BlobInfo(
            key=key,
            size=properties.size,
            content_type=properties.content_settings.content_type or DEFAULT_CONTENT_TYPE,
            etag=_quoted_etag(properties.etag),
            last_modified=properties.last_modified,
        )

    def exists(self, key: str) -> bool:
        blob = self._blob(key)
        with _sdk_errors(key):
            return blob.exists()

    def delete(self, key: str) -> bool:
        blob = self._blob(key)
        try:
            with _sdk_errors(key):
                blob.delete_blob()
        except BlobNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        validate_prefix(prefix)
        # The service lists names in order; an iterator, so long listings page lazily.
        with _sdk_errors(None):
            pages = self._container.list_blobs(name_starts_with=prefix or None)
        return self._infos(pages)

    @staticmethod
    def _infos(blobs: Iterator[Any]) -> Iterator[BlobInfo]:
        with _sdk_errors(None):
            for properties in blobs:
                last_modified: datetime = properties.last_modified
                yield BlobInfo(
                    key=properties.name,
                    size=properties.size,
                    content_type=properties.content_settings.content_type or DEFAULT_CONTENT_TYPE,
                    etag=_quoted_etag(properties.etag),
                    last_modified=last_modified,
                )
