"""Request ids for requests that bring none: unique within a process and across forked workers."""

from __future__ import annotations

import os
import re

from visiondock.telemetry import RequestIds


def test_ids_are_32_hex_digits_and_unique() -> None:
    ids = RequestIds()
    drawn = [ids.new() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in drawn)
    assert len(set(drawn)) == len(drawn)


def test_a_forked_worker_draws_ids_of_its_own() -> None:
    ids = RequestIds()
    parent = ids.new()
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child writes its first id and leaves at once
        os.write(writer, ids.new().encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    child_id = os.read(reader, 64).decode()
    os.close(reader)
    assert child_id[:16] != parent[:16] and child_id != ids.new()
