"""Where a reader finds a dataset's files: a folder on disk (the CLI) or a zip archive (the API).

A zip archive comes from a stranger, so `ZipSource` refuses what could hurt before reading any
member: too many entries, member names that leave the archive (`../`, absolute paths, drive
letters), links, encrypted members, and sizes or compression ratios of a zip bomb. The entry
count and the size of the central directory are read from the end-of-central-directory record
(and its ZIP64 form) and refused there, before Python's zipfile parses the directory into an
object per entry (a million entries cost it half a gigabyte). It never extracts to disk: members
are read into memory one at a time, at most `max_member_bytes` each, and at most
`max_total_bytes` in all (counted as read, whatever the headers claim).
"""

from __future__ import annotations

import os
import stat
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .base import DatasetFormatError, DatasetSource, is_hidden, join


class ArchiveError(DatasetFormatError):
    """The archive is malformed or unsafe (`too_large`: over a size limit)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = 100_000
    # The central directory: about 150 bytes an entry for dataset paths; zipfile parses it whole.
    max_directory_bytes: int = 32 * 1024 * 1024
    max_member_bytes: int = 256 * 1024 * 1024  # a COCO file of a large dataset; images are far smaller
    max_total_bytes: int = 16 * 1024 * 1024 * 1024
    # Photos barely compress; text a lot. A bigger member that shrank more than this is a bomb.
    max_ratio: int = 200
    ratio_applies_above: int = 1024 * 1024


class FolderSource(DatasetSource):
    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise DatasetFormatError(f"{root} is not a folder")
        self.root = root

    def files(self) -> list[str]:
        found = []
        for folder, dirs, names in os.walk(self.root):
            dirs[:] = [d for d in dirs if not is_hidden(d)]
            relative = Path(folder).relative_to(self.root).as_posix()
            for name in names:
                path = name if relative == "." else f"{relative}/{name}"
                if not is_hidden(path) and (Path(folder) / name).is_file():
                    found.append(path)
        return sorted(found)

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()


_EOCD = struct.Struct("<4s4H2LH")  # end of central directory: signature, disks, entries, size, offset, comment
_ZIP64_LOCATOR = struct.Struct("<4sLQL")  # signature, disk, offset of the ZIP64 end record, disks
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")  # signature, size, versions, disks, entries (disk, total), size, offset
_MAX_COMMENT = 0xFFFF


def directory_extent(file: IO[bytes]) -> tuple[int, int]:
    """(entries, bytes) of a zip archive's central directory, as its end records declare them;
    ArchiveError when there are none. Reads at most 64 KiB from the end (and one ZIP64 record)."""
    file.seek(0, os.SEEK_END)
    size = file.tell()
    tail_start = max(0, size - _EOCD.size - _MAX_COMMENT)
    file.seek(tail_start)
    tail = file.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        raise ArchiveError("not a readable zip archive (no end of central directory)")
    _, _, _, _, entries, directory_bytes, _, _ = _EOCD.unpack_from(tail, at)
    locator_at = tail_start + at - _ZIP64_LOCATOR.size
    if locator_at >= 0:
        file.seek(locator_at)
        locator = file.read(_ZIP64_LOCATOR.size)
        if len(locator) == _ZIP64_LOCATOR.size and locator[:4] == b"PK\x06\x07":
            _, _, record_at, _ = _ZIP64_LOCATOR.unpack(locator)
            file.seek(record_at)
            record = file.read(_ZIP64_EOCD.size)
            if len(record) < _ZIP64_EOCD.size or record[:4] != b"PK\x06\x06":
                raise ArchiveError("not a readable zip archive (a broken ZIP64 end record)")
            _, _, _, _, _, _, _, entries, directory_bytes, _ = _ZIP64_EOCD.unpack(record)
    return entries, directory_bytes


class ZipSource(DatasetSource):
    def __init__(self, file: IO[bytes], limits: ArchiveLimits | None = None) -> None:
        self.limits = limits or ArchiveLimits()
        try:
            entries, directory_bytes = directory_extent(file)
        except (OSError, ValueError, struct.error) as exc:
            raise ArchiveError(f"not a readable zip archive ({exc})") from None
        if entries > self.limits.max_entries:
            raise ArchiveError(f"the archive lists {entries:,} entries; the limit is {self.limits.max_entries:,}",
                               too_large=True)
        if directory_bytes > self.limits.max_directory_bytes:
            raise ArchiveError(f"the archive's directory is {directory_bytes:,} bytes; the limit is "
                               f"{self.limits.max_directory_bytes:,}", too_large=True)
        try:
            file.seek(0)
            self.archive = zipfile.ZipFile(file)
            infos = self.archive.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise ArchiveError(f"not a readable zip archive ({exc})") from None
        if len(infos) > self.limits.max_entries:
            raise ArchiveError(f"the archive has {len(infos):,} entries; the limit is {self.limits.max_entries:,}",
                               too_large=True)
        self._members: dict[str, zipfile.ZipInfo] = {}
        declared = 0
        for info in infos:
            name = info.filename.replace("\\", "/")
            if join("", name) is None or "\x00" in name:
                raise ArchiveError(f"archive entry {info.filename!r} points outside the archive")
            if info.is_dir() or is_hidden(name):
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ArchiveError(f"archive entry {info.filename!r} is a link; links are not accepted")
            if info.flag_bits & 0x1:
                raise ArchiveError(f"archive entry {info.filename!r} is encrypted")
            self._check_size(info)
            declared += info.file_size
            key = join("", name)
            assert key is not None
            if key in self._members:
                raise ArchiveError(f"the archive holds {key!r} twice")
            self._members[key] = info
        if declared > self.limits.max_total_bytes:
            raise ArchiveError(f"the archive unpacks to {declared:,} bytes; the limit is "
                               f"{self.limits.max_total_bytes:,}", too_large=True)
        self._read_total = 0

    def _check_size(self, info: zipfile.ZipInfo) -> None:
        if info.file_size > self.limits.max_member_bytes:
            raise ArchiveError(f"archive entry {info.filename!r} unpacks to {info.file_size:,} bytes; the limit "
                               f"per file is {self.limits.max_member_bytes:,}", too_large=True)
        if (info.file_size > self.limits.ratio_applies_above
                and info.file_size > self.limits.max_ratio * max(info.compress_size, 1)):
            raise ArchiveError(f"archive entry {info.filename!r} unpacks {info.file_size // max(info.compress_size, 1)}"
                               f" times its packed size: refused as a zip bomb", too_large=True)

    def files(self) -> list[str]:
        return sorted(self._members)

    def read(self, path: str) -> bytes:
        info = self._members.get(path)
        if info is None:
            raise DatasetFormatError(f"{path} is not in the archive")
        limit = min(self.limits.max_member_bytes, info.file_size)
        try:
            with self.archive.open(info) as member:
                data = member.read(limit + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError) as exc:
            raise ArchiveError(f"archive entry {path!r} cannot be read ({exc})") from None
        if len(data) > limit:
            raise ArchiveError(f"archive entry {path!r} is longer than its header says", too_large=True)
        self._read_total += len(data)
        if self._read_total > self.limits.max_total_bytes:
            raise ArchiveError(f"the archive unpacks to more than {self.limits.max_total_bytes:,} bytes",
                               too_large=True)
        return data

    def close(self) -> None:
        self.archive.close()
