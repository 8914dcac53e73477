"""The best version by a metric, deleting versions, cancelling runs and a run's log."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from tests.registry.conftest import register_version


def versions(client: TestClient, **params: object) -> list[int]:
    response = client.get("/v1/models/pets/versions", params=params)
    assert response.status_code == 200, response.text
    return [v["version"] for v in response.json()["data"]]


def test_the_best_version_by_a_metric_with_filters(any_backend_client: TestClient) -> None:
    client = any_backend_client
    for accuracy, mode in ((0.7, "quick"), (0.95, "quick"), (0.9, "advanced")):
        register_version(client, "pets", f"{accuracy}".encode(), metrics={"accuracy": accuracy},
                         params={"mode": mode})
    register_version(client, "pets", b"no metrics", metrics={})

    assert versions(client, order_by="metrics.accuracy", desc="true", limit=1) == [2]
    assert versions(client, order_by="metrics.accuracy", desc="false") == [1, 3, 2]  # v4 has no accuracy
    assert versions(client, order_by="metrics.accuracy", desc="true", where="params.mode=advanced") == [3]
    assert versions(client, where=["metrics.accuracy>=0.9", "task=multiclass"]) == [3, 2]
    assert versions(client, where="metrics.accuracy<0.9") == [1]
    assert versions(client) == [4, 3, 2, 1]

    for params, field in (({"order_by": "acuracy"}, "'acuracy'"), ({"where": "labels=cat"}, "'labels'"),
                          ({"order_by": "metrics"}, "'metrics'")):
        refused = client.get("/v1/models/pets/versions", params=params)
        assert refused.status_code == 400 and refused.json()["code"] == "unknown_field", refused.text
        assert field in refused.json()["detail"] and "metrics.<name>" in refused.json()["detail"]
    unreadable = client.get("/v1/models/pets/versions", params={"where": "metrics.accuracy ~ 3"})
    assert unreadable.status_code == 400 and "FIELD OP VALUE" in unreadable.json()["detail"]


def test_deleting_a_version_removes_its_files_but_not_while_an_alias_points_at_it(
        any_backend_client: TestClient) -> None:
    client = any_backend_client
    register_version(client, "pets", b"v1")
    register_version(client, "pets", b"v2")
    client.put("/v1/models/pets/aliases/production", json={"version": 1})
    client.put("/v1/models/pets/aliases/staging", json={"version": 1})

    refused = client.delete("/v1/models/pets/versions/1")
    assert refused.status_code == 409 and refused.json()["code"] == "version_in_use"
    assert "production, staging" in refused.json()["detail"]
    assert client.get("/v1/models/pets/versions/1/artifacts/model.onnx").content == b"v1"

    assert client.delete("/v1/models/pets/versions/2").status_code == 204
    assert client.get("/v1/models/pets/versions/2").status_code == 404
    assert client.get("/v1/models/pets/versions/2/artifacts/model.onnx").status_code == 404
    assert versions(client) == [1]
    assert client.delete("/v1/models/pets/versions/2").status_code == 404
    # The number is never handed out again.
    assert register_version(client, "pets", b"v3")["version"] == 3
    registry = client.app.state.catalog  # type: ignore[attr-defined]
    assert not registry.blobs.exists("models/pets/2/model.onnx")
    assert not registry.blobs.exists("models/pets/2/metadata.json")


def test_a_cancelled_run_registers_nothing_and_refuses_progress(any_backend_client: TestClient) -> None:
    client = any_backend_client
    run = client.post("/v1/runs", json={"model": "pets"}).json()
    client.patch(f"/v1/runs/{run['id']}", json={"status": "running", "stage": "train"})
    cancelled = client.post(f"/v1/runs/{run['id']}/cancel", json={"reason": "wrong data"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["error"] == "cancelled: wrong data" and cancelled.json()["finished_at"]
    progress = client.patch(f"/v1/runs/{run['id']}", json={"epoch": 3})
    assert progress.status_code == 409 and progress.json()["code"] == "run_finished"
    assert client.post(f"/v1/runs/{run['id']}/cancel").status_code == 409
    registration = client.post("/v1/models/pets/versions", files={"model": ("model.onnx", b"late")},
                               data={"metadata": json.dumps({"task": "multiclass", "labels": ["a"],
                                                             "run_id": run["id"]})})
    assert registration.status_code == 409
    listed = client.get("/v1/runs", params={"status": "cancelled"}).json()["data"]
    assert [r["id"] for r in listed] == [run["id"]]


def test_a_run_log_can_be_tailed_and_followed(any_backend_client: TestClient) -> None:
    client = any_backend_client
    run = client.post("/v1/runs", json={"model": "pets"}).json()
    logs = f"/v1/runs/{run['id']}/logs"
    assert client.get(logs).json() == {"lines": [], "next": 0, "total": 0}
    assert client.post(logs, json={"lines": ["stage download", "stage features"]}).json()["next"] == 2
    assert client.post(logs, json={"lines": [f"epoch {n}/5" for n in range(1, 6)]}).json()["next"] == 7

    everything = client.get(logs).json()
    assert [line["n"] for line in everything["lines"]] == list(range(1, 8)) and everything["next"] == 7
    tail = client.get(logs, params={"tail": 3}).json()
    assert [line["text"] for line in tail["lines"]] == ["epoch 3/5", "epoch 4/5", "epoch 5/5"]
    assert tail["next"] == 7 and tail["total"] == 7
    after = client.get(logs, params={"after": 4, "limit": 2}).json()
    assert [line["n"] for line in after["lines"]] == [5, 6] and after["next"] == 6
    client.post(logs, json={"lines": ["registered version 1"]})
    follow = client.get(logs, params={"after": 7}).json()
    assert [line["text"] for line in follow["lines"]] == ["registered version 1"] and follow["next"] == 8
    assert client.get(logs, params={"after": 8}).json()["lines"] == []

    assert client.post(logs, json={"lines": []}).status_code == 422
    assert client.get("/v1/runs/run-0000000000000000/logs").status_code == 404


def test_a_version_registered_without_lineage_says_so(any_backend_client: TestClient) -> None:
    client = any_backend_client
    register_version(client, "pets", b"by hand")
    missing = client.get("/v1/models/pets/versions/1/lineage")
    assert missing.status_code == 404 and missing.json()["code"] == "no_lineage"
    assert client.get("/v1/models/pets/versions/7/lineage").status_code == 404


def test_two_versions_compared_class_by_class(any_backend_client: TestClient) -> None:
    client = any_backend_client
    per_class = {"cat": {"precision": 0.8, "recall": 0.5, "f1": 0.6, "ap": 0.7},
                 "dog": {"precision": 0.9, "recall": 0.9, "f1": 0.9, "ap": 0.95}}
    register_version(client, "pets", b"a", metrics={"accuracy": 0.7, "per_class": per_class})
    better_cat = {**per_class, "cat": {"precision": 0.85, "recall": 0.75, "f1": 0.8, "ap": 0.7}}
    register_version(client, "pets", b"b", metrics={"accuracy": 0.8, "per_class": {**better_cat, "dog": {
        "precision": 0.88, "recall": 0.9, "f1": 0.89, "ap": 0.95}}})

    compared = client.get("/v1/models/pets/compare", params={"a": 1, "b": 2}).json()
    assert compared["headline"]["accuracy"]["change"] == "better"
    assert abs(compared["headline"]["accuracy"]["delta"] - 0.1) < 1e-9
    cat, dog = compared["per_class"]["cat"], compared["per_class"]["dog"]
    assert (cat["recall"]["change"], cat["ap"]["change"], dog["precision"]["change"]) == ("better", "same", "worse")
    assert compared["summary"] == {"better": 3, "worse": 2, "same": 3}
    assert client.get("/v1/models/pets/compare", params={"a": 1, "b": 9}).status_code == 404
    assert client.get("/v1/models/pets/compare", params={"a": 1}).status_code == 422
