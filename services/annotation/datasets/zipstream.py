"""A zip archive written as a stream of bytes, member by member, never whole in memory."""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterable, Iterator

from .base import Member

FLUSH_BYTES = 1024 * 1024


class _Sink:
    """A write-only file: zipfile sees no seek/tell and writes data descriptors instead."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:  # what zipfile asks of a file to write to; it never closes one it was given
        pass

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        self.size = 0
        return data


def stream_zip(members: Iterable[Member]) -> Iterator[bytes]:
    sink = _Sink()
    stamp = time.localtime()[:6]
    with zipfile.ZipFile(sink, "w", allowZip64=True) as archive:
        for member in members:
            info = zipfile.ZipInfo(member.path, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED if member.compress else zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            chunks = [member.content] if isinstance(member.content, bytes) else member.content
            with archive.open(info, "w") as out:
                for chunk in chunks:
                    out.write(chunk)
                    if sink.size >= FLUSH_BYTES:
                        yield sink.drain()
            if sink.size:
                yield sink.drain()
    yield sink.drain()
