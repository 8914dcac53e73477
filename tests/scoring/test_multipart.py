"""The scoring routes' multipart reader: the files a client sends, as Starlette's form parser
reads them, or a 400 that says what is wrong with the body.

Bodies are generated the way clients write them (quoted and bare parameters, any names,
several files, file bytes holding line ends, dashes and pieces of the boundary) and then
damaged (flipped, inserted and deleted bytes, truncation, a preamble, bare LF line ends,
padding after a boundary, a charset, a plain field, no boundary).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from services.scoring.inputs import MULTIPART_ON_LOOP_BYTES
from services.scoring.multipart import MAX_FIELDS, FilePart, file_parts
from visiondock.errors import InvalidInput

from .conftest import AppFactory
from .tiny_models import solid

BOUNDARY_CHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=?"
SAFE_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-. éü", min_size=0, max_size=12)
# Names with the characters header parameters treat specially, and any others.
ANY_NAME = st.one_of(st.text(max_size=12), st.text(alphabet='ab;"\\= é\t%*:,', max_size=12))


@st.composite
def part_data(draw: st.DrawFn, boundary: str) -> bytes:
    """Bytes a file may hold, often with line ends, dashes and pieces of the boundary in them."""
    pieces = draw(st.lists(st.one_of(
        st.binary(max_size=24),
        st.sampled_from([b"\r\n", b"\r", b"\n", b"--", b"\r\n--", b"-", b"\r\n\r\n"]),
        st.just(boundary.encode()),
        st.just(f"\r\n--{boundary}".encode()[: draw(st.integers(1, len(boundary) + 4))]),
    ), max_size=8))
    return b"".join(pieces)


@st.composite
def multipart_bodies(draw: st.DrawFn, names: st.SearchStrategy[str] = ANY_NAME, *, usual: bool = False
                     ) -> tuple[str, bytes, list[FilePart]]:
    """(Content-Type, body, the files it was written from) as a client writes them; `usual`: with the
    headers as HTTP clients write them."""
    boundary = draw(st.text(alphabet=BOUNDARY_CHARS, min_size=1, max_size=40))
    content_types = ["multipart/form-data; boundary={}"]
    dispositions = ['form-data; name="{name}"; filename="{filename}"']
    if not usual:
        content_types += ['multipart/form-data; boundary="{}"', "multipart/form-data;boundary={}",
                          "Multipart/Form-Data; BOUNDARY={}", "multipart/form-data; boundary={} "]
        dispositions += ['form-data;name="{name}";filename="{filename}"', "form-data; name={name}; filename={filename}",
                         'form-data; filename="{filename}"; name="{name}"']
    content_type = draw(st.sampled_from(content_types)).format(boundary)
    files = []
    body = b""
    for _ in range(draw(st.integers(0, 4))):
        field, filename = draw(names), draw(names)
        data = draw(part_data(boundary))
        disposition = draw(st.sampled_from(dispositions)).format(name=field, filename=filename)
        lines = [f"Content-Disposition: {disposition}".encode()]
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from([b"Content-Type: image/jpeg", b"content-type:application/octet-stream",
                                               b"X-Extra:  yes"])))
        body += f"--{boundary}\r\n".encode() + b"\r\n".join(lines) + b"\r\n\r\n" + data + b"\r\n"
        files.append(FilePart(field, filename, data))
    body += f"--{boundary}--".encode() + draw(st.sampled_from([b"", b"\r\n", b"epilogue\r\n"]))
    return content_type, body, files


@st.composite
def damaged(draw: st.DrawFn, original: tuple[str, bytes, list[FilePart]]) -> tuple[str, bytes]:
    content_type, body, _ = original
    damage = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "preamble", "bare-lf", "padding",
                                   "charset", "plain-field", "no-boundary"]))
    at = draw(st.integers(0, len(body)))
    if damage == "flip" and body:
        at = min(at, len(body) - 1)
        body = body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1:]
    elif damage == "insert":
        body = body[:at] + draw(st.sampled_from([b"\r\n", b"\r", b"\n", b" ", b"\t", b"-", b":", b";", b'"',
                                                 b"\x00", b"\xff"])) + body[at:]
    elif damage == "delete":
        body = body[:at] + body[at + draw(st.integers(1, 8)):]
    elif damage == "truncate":
        body = body[:at]
    elif damage == "preamble":
        body = draw(st.sampled_from([b"\r\n", b"preamble\r\n", b"\n"])) + body
    elif damage == "bare-lf":
        body = body.replace(b"\r\n", b"\n")
    elif damage == "padding":
        body = body.replace(b"\r\n", b" \t\r\n", 1)
    elif damage == "charset":
        content_type += "; charset=" + draw(st.sampled_from(["utf-8", "latin-1", "nonsense"]))
    elif damage == "plain-field":
        body = body.replace(b'"; filename="', b'"; x="', 1)
    elif damage == "no-boundary":
        content_type = "multipart/form-data"
    return content_type, body


def starlette_reads(content_type: str, body: bytes, max_files: int) -> list[FilePart] | MultiPartException:
    """The files Starlette's form parser reads from `body`, or its refusal."""

    async def read() -> list[FilePart]:
        async def once() -> AsyncIterator[bytes]:
            yield body

        form = await MultiPartParser(Headers({"content-type": content_type}), once(), max_files=max_files,
                                     max_fields=MAX_FIELDS).parse()
        try:
            return [FilePart(field, value.filename or "", await value.read())
                    for field, value in form.multi_items() if isinstance(value, UploadFile)]
        finally:
            await form.close()

    try:
        return asyncio.run(read())
    except MultiPartException as exc:
        return exc


def reads_like_starlette(content_type: str, body: bytes, max_files: int) -> list[FilePart] | InvalidInput:
    """What the reader makes of `body`, checked against Starlette's parser: the same files, or a refusal
    where Starlette refuses too or the body stops before its closing boundary (read by Starlette without
    the file it cuts)."""
    theirs = starlette_reads(content_type, body, max_files)
    try:
        mine = file_parts(content_type, body, max_files=max_files)
    except InvalidInput as exc:
        assert exc.message, "a refusal says why"
        if not isinstance(theirs, MultiPartException):
            assert "closing boundary" in exc.message or "two Content-Disposition" in exc.message, (
                f"refused what Starlette reads: {exc.message}")
        return exc
    assert not isinstance(theirs, MultiPartException), f"read what Starlette refuses ({theirs.message})"
    assert mine == theirs
    return mine


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(multipart_bodies(), st.integers(1, 5))
def test_bodies_are_read_as_starlette_reads_them(generated: tuple[str, bytes, list[FilePart]], max_files: int
                                                  ) -> None:
    content_type, body, _ = generated
    reads_like_starlette(content_type, body, max_files)


@FUZZ
@given(st.data(), st.integers(1, 5))
def test_damaged_bodies_are_read_alike_or_refused(data: st.DataObject, max_files: int) -> None:
    content_type, body = data.draw(damaged(data.draw(multipart_bodies())))
    reads_like_starlette(content_type, body, max_files)


@FUZZ
@given(multipart_bodies(names=SAFE_NAME, usual=True))
def test_bodies_as_clients_write_them_give_their_files(generated: tuple[str, bytes, list[FilePart]]) -> None:
    content_type, body, files = generated
    boundary = content_type.split("boundary=", 1)[1].strip().encode()
    if any(b"\r\n--" + boundary in part.data for part in files):
        return  # a file holding the delimiter ends there, for every parser
    assert file_parts(content_type, body, max_files=max(len(files), 1)) == files


def test_an_httpx_upload_of_several_files_and_a_field() -> None:
    request = httpx.Request("POST", "http://scoring/v1/predict/batch", data={"note": "ignored"},
                            files=[("files", ("a.jpg", b"\xff\xd8\r\n--not-it\r\n\xff\xd9", "image/jpeg")),
                                   ("files", ("b é.jpg", b"b", "image/jpeg"))])
    found = file_parts(request.headers["content-type"], request.read(), max_files=2)
    assert found == [FilePart("files", "a.jpg", b"\xff\xd8\r\n--not-it\r\n\xff\xd9"),
                     FilePart("files", "b é.jpg", b"b")]


HEADERS = "multipart/form-data; boundary=x"
ONE_FILE = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\nab\r\n--x--\r\n'


@pytest.mark.parametrize(("content_type", "body", "words"), [
    (HEADERS, b'--x\r\nContent-Disposition: form-data; filename="a.jpg"\r\n\r\nab\r\n--x--', "needs a name"),
    (HEADERS, ONE_FILE.replace(b"--x--", b'--x\r\nContent-Disposition: form-data; name="file"; filename="b"'
                               b"\r\n\r\ncd\r\n--x--"), "more than 1 file"),
    (HEADERS, b"--x\r\nBad Header: 1\r\n\r\nab\r\n--x--", "malformed multipart body"),
    (HEADERS, b"no boundary anywhere", "malformed multipart body"),
    (HEADERS, ONE_FILE[:-9], "closing boundary"),  # cut inside the file: Starlette reads no file
    (HEADERS, ONE_FILE[:-4], "closing boundary"),  # cut after the file: Starlette reads it
    (HEADERS, b"", "closing boundary"),
    ("multipart/form-data", ONE_FILE, "boundary"),
    (HEADERS, ONE_FILE.replace(b"\r\n\r\n", b"\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\n"),
     "two Content-Disposition"),
    (HEADERS, b"".join(b'--x\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i
                       for i in range(MAX_FIELDS + 1)) + b"--x--", "plain fields"),
    (HEADERS, b'--x\r\nContent-Disposition: form-data; name="big"\r\n\r\n' + b"v" * 70_000 + b"\r\n--x--",
     "larger than"),
])
def test_malformed_bodies_are_refused_saying_why(content_type: str, body: bytes, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        file_parts(content_type, body, max_files=1)


def test_a_cut_off_batch_is_refused_not_scored_without_its_last_image(serve: AppFactory,
                                                                      models: dict[str, Path]) -> None:
    request = httpx.Request("POST", "http://scoring/v1/predict/batch",
                            files=[("files", ("a.png", solid((255, 0, 0), fmt="PNG"), "image/png")),
                                   ("files", ("b.png", solid((0, 0, 255), fmt="PNG"), "image/png"))])
    body = request.read()
    cut = body[:body.rindex(b'Content-Disposition: form-data; name="files"; filename="b.png"')]
    with serve(models["multiclass"]) as client:
        headers = {"Content-Type": request.headers["content-type"]}
        response = client.post("/v1/predict/batch", content=cut, headers=headers)
        assert response.status_code == 400 and "closing boundary" in response.json()["detail"], response.text
        for path in ("/v1/predict", "/v1/predict/batch"):
            response = client.post(path, content=b"--x\r\nBad Header: 1\r\n\r\nab\r\n--x--",
                                   headers={"Content-Type": "multipart/form-data; boundary=x"})
            assert response.status_code == 400 and "malformed multipart body" in response.json()["detail"]
        response = client.post("/v1/predict/batch", content=body, headers=headers)  # still up, reads it whole
        assert response.status_code == 200 and len(response.json()["results"]) == 2, response.text
        # A photo bigger than what is parsed on the event loop is parsed on a thread, to the same answer.
        noisy = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (700, 700, 3), dtype=np.uint8)).save(noisy, "PNG")
        assert len(noisy.getvalue()) > MULTIPART_ON_LOOP_BYTES
        response = client.post("/v1/predict", files={"file": ("noise.png", noisy.getvalue(), "image/png")})
        assert response.status_code == 200 and response.json()["image"] == {"width": 700, "height": 700}
