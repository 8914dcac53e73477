"""An alias never points at a deleted version: a move and a delete of the same version, interleaved at
each point where one could miss the other, on SQLite and on Cosmos DB (the emulator)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.registry.aliases import ALIASES, HISTORY
from services.registry.catalog import VERSIONS, ModelCatalog
from tests.registry.conftest import backend_settings
from tests.support.interleave import Interleaved
from visiondock.errors import Conflict, NotFound
from visiondock.storage import Stores


@pytest.fixture(params=["sqlite", pytest.param("cosmos", marks=pytest.mark.azure)])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ModelCatalog, Interleaved]]:
    stores = Stores(backend_settings(request, tmp_path))
    try:
        documents = Interleaved(stores.documents)
        catalog = ModelCatalog(documents, stores.blobs)  # type: ignore[arg-type]
        for _ in range(2):
            catalog.register("shapes", io.BytesIO(b"onnx bytes"), {"task": "multiclass", "labels": ["a", "b"]})
        catalog.set_alias("shapes", "production", 1, actor="test")
        yield catalog, documents
    finally:
        stores.close()


def _outcome(catalog: ModelCatalog, action: object) -> str:
    try:
        action()  # type: ignore[operator]
        return "done"
    except Conflict as exc:
        return exc.code


def _consistent(catalog: ModelCatalog) -> tuple[int | None, bool]:
    """Where production points, whether version 2 still exists; the alias must resolve."""
    try:
        resolved = catalog.resolve_alias("shapes", "production")
        target = resolved["version"]
    except NotFound:
        target = None
    try:
        catalog.get_version("shapes", 2)
        exists = True
    except NotFound:
        exists = False
    assert target != 2 or exists, "the alias points at a deleted version"
    history = [entry["to_version"] for entry in catalog.alias_history("shapes", "production", limit=10,
                                                                        continuation=None)[0]]
    assert history[0] == target, history  # the history's last move is where the alias is
    return target, exists


def test_a_delete_between_a_moves_check_and_its_write_leaves_the_alias_where_it_was(
        catalog: tuple[ModelCatalog, Interleaved]) -> None:
    registry, documents = catalog
    deleted: list[str] = []
    # The move has found version 2; before it writes, the whole delete runs (no alias points at 2 yet).
    documents.at("create", HISTORY, lambda: deleted.append(_outcome(registry, lambda: registry.delete_version(
        "shapes", 2))))
    moved = _outcome(registry, lambda: registry.set_alias("shapes", "production", 2, actor="test"))
    assert documents.fired and deleted == ["done"]
    assert moved == "version_deleted"
    assert _consistent(registry) == (1, False)


def test_a_move_between_a_deletes_check_and_its_delete_is_undone(catalog: tuple[ModelCatalog, Interleaved]) -> None:
    registry, documents = catalog
    moved: list[str] = []
    # The delete has seen no alias on version 2; before the version goes, the whole move runs.
    documents.at("delete", VERSIONS, lambda: moved.append(_outcome(registry, lambda: registry.set_alias(
        "shapes", "production", 2, actor="test"))))
    deleted = _outcome(registry, lambda: registry.delete_version("shapes", 2))
    assert documents.fired and deleted == "done"
    assert moved == ["version_deleted"]
    assert _consistent(registry) == (1, False)


def test_a_move_written_before_the_deletes_check_keeps_the_version(catalog: tuple[ModelCatalog, Interleaved]) -> None:
    registry, documents = catalog
    deleted: list[str] = []
    # The move writes the alias; at its next read of the version, the whole delete runs, and sees the alias.
    documents.at("put", ALIASES, lambda: documents.at("get", VERSIONS, lambda: deleted.append(
        _outcome(registry, lambda: registry.delete_version("shapes", 2)))))
    moved = _outcome(registry, lambda: registry.set_alias("shapes", "production", 2, actor="test"))
    assert documents.fired and deleted == ["version_in_use"] and moved == "done"
    assert _consistent(registry) == (2, True)
    # The delete's mark was taken off: the version can be deleted once the alias moves away.
    registry.set_alias("shapes", "production", 1, actor="test")
    registry.delete_version("shapes", 2)
    assert _consistent(registry) == (1, False)


def test_a_deletion_that_crashed_does_not_block_the_version_for_ever(catalog: tuple[ModelCatalog, Interleaved]) -> None:
    registry, documents = catalog
    documents.store.patch(VERSIONS, "2", partition_key="shapes",
                          set_fields={"deleting_at": "2020-01-01T00:00:00+00:00"})
    registry.set_alias("shapes", "production", 2, actor="test")
    assert _consistent(registry) == (2, True)
    assert documents.store.get(ALIASES, "production", partition_key="shapes").data["version"] == 2
