"""The files of a multipart/form-data body already in memory, read with python-multipart's parser.

Starlette's form parser drives the same parser but writes each file into a spooled temporary
file through awaited writes, a cost the scoring routes pay on every upload for bytes they
already hold; here the parser's callbacks collect each part's bytes in memory. The rules are
Starlette's (a part needs a `name`; a part with a `filename` is a file; at most `max_files`
files and `MAX_FIELDS` plain fields, each at most `MAX_FIELD_BYTES`), and one more: a body
must end with its closing boundary, so that a cut-off upload is refused rather than read
without its last file. Anything else wrong is refused as a 400 that says what.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from visiondock.errors import InvalidInput

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

# Plain (non-file) fields a scoring body may carry alongside its files, and their size: the routes read none.
MAX_FIELDS = 16
MAX_FIELD_BYTES = 64 * 1024


@dataclass(frozen=True)
class FilePart:
    """One file of a multipart body: its form field, its file name and its bytes."""

    field: str
    filename: str
    data: bytes


def _decoded(value: bytes, charset: str) -> str:
    # As Starlette decodes names: the body's charset (UTF-8 by default), else Latin-1.
    try:
        return value.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return value.decode("latin-1")


class _Collector:
    """python-multipart's callbacks, keeping the file parts' bytes."""

    def __init__(self, *, max_files: int, charset: str) -> None:
        self.max_files, self.charset = max_files, charset
        self.files: list[FilePart] = []
        self.fields = 0
        self._header_name = b""
        self._header_value = b""
        self._disposition: bytes | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._name = ""
        self._filename: str | None = None

    def on_part_begin(self) -> None:
        self._disposition, self._chunks, self._size = None, [], 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            if self._disposition is not None:
                raise InvalidInput("malformed multipart body: a part has two Content-Disposition headers")
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if name is None:
            raise InvalidInput('malformed multipart body: a part\'s Content-Disposition header needs a name '
                               '(form-data; name="file"; filename="photo.jpg")')
        self._name = _decoded(name, self.charset)
        filename = options.get(b"filename")
        if filename is not None:
            if len(self.files) >= self.max_files:
                raise InvalidInput(f"multipart body has more than {self.max_files} file(s)")
            self._filename = _decoded(filename, self.charset)
        else:
            self.fields += 1
            if self.fields > MAX_FIELDS:
                raise InvalidInput(f"multipart body has more than {MAX_FIELDS} plain fields")
            self._filename = None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._filename is None and self._size > MAX_FIELD_BYTES:
            raise InvalidInput(f"multipart field {self._name!r} is larger than {MAX_FIELD_BYTES // 1024} KiB")
        self._chunks.append(data[start:end])

    def on_part_end(self) -> None:
        if self._filename is not None:
            data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
            self.files.append(FilePart(self._name, self._filename, data))
        self._chunks = []


def file_parts(content_type: str, body: bytes, *, max_files: int) -> list[FilePart]:
    """The file parts of a multipart/form-data `body`, in order; a malformed body, or one with more
    than `max_files` files, is an InvalidInput (400) saying why."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidInput("multipart body without a boundary: the Content-Type needs one "
                           "(multipart/form-data; boundary=...)")
    charset = _decoded(options.get(b"charset", b"utf-8"), "latin-1")
    collector = _Collector(max_files=max_files, charset=charset)
    callbacks: MultipartCallbacks = {
        "on_part_begin": collector.on_part_begin, "on_header_field": collector.on_header_field,
        "on_header_value": collector.on_header_value, "on_header_end": collector.on_header_end,
        "on_headers_finished": collector.on_headers_finished, "on_part_data": collector.on_part_data,
        "on_part_end": collector.on_part_end}
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
    except FormParserError as exc:
        raise InvalidInput(f"malformed multipart body: {exc}") from None
    if parser.state != MultipartState.END:
        raise InvalidInput("malformed multipart body: it ends before its closing boundary (--BOUNDARY--)")
    return collector.files
