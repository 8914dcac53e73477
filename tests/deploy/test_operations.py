"""Operations the chart must get right: scratch space sized from the APIs' own limits, and the daily
purge of captured predictions running where it can reach the captures."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.chart import PROFILES, find, rendered_profile
from tests.deploy.test_routes_and_scaling import largest_request

pytestmark = pytest.mark.chart

_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(text: str | int) -> float:
    """A Kubernetes quantity ("5Gi", "500Mi", "64M") in bytes."""
    found = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text))
    assert found and found.group(2) in _UNITS, text
    return float(found.group(1)) * _UNITS[found.group(2)]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "Pod":
        return doc["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def volume_size(spec: dict[str, Any], mount_path: str) -> float | None:
    container = spec["containers"][0]
    name = next(m["name"] for m in container["volumeMounts"] if m["mountPath"] == mount_path)
    volume = next(v for v in spec["volumes"] if v["name"] == name)
    return quantity(volume["emptyDir"]["sizeLimit"]) if "emptyDir" in volume else None


@pytest.fixture(scope="module")
def limits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    home: Path = tmp_path_factory.mktemp("limits")
    return {service: largest_request(service, home) for service in ("annotation", "registry", "scoring")}


@pytest.mark.parametrize("profile", PROFILES)
def test_tmp_holds_each_services_largest_upload(profile: str, limits: dict[str, int]) -> None:
    docs = rendered_profile(profile)
    # Uploads are spooled to /tmp while they are read; the registry copies a version's file once more
    # (services/registry/catalog.py) before it stores it.
    copies = {"annotation": 1, "registry": 2, "scoring": 1}
    for service, count in copies.items():
        spec = pod_spec(find(docs, "Deployment", f"vd-visiondock-{service}"))
        assert volume_size(spec, "/tmp") >= count * limits[service], service


@pytest.mark.parametrize("profile", PROFILES)
def test_ephemeral_storage_is_requested_and_covers_every_scratch_volume(profile: str) -> None:
    for doc in rendered_profile(profile):
        if doc["kind"] not in ("Deployment", "CronJob", "Job", "Pod"):
            continue
        spec = pod_spec(doc)
        scratch = sum(quantity(v["emptyDir"]["sizeLimit"]) for v in spec.get("volumes", [])
                      if "emptyDir" in v and v["emptyDir"].get("medium") != "Memory")
        resources = spec["containers"][0]["resources"]
        where = doc["metadata"]["name"]
        assert quantity(resources["requests"]["ephemeral-storage"]) > 0, where
        # Disk-backed emptyDirs count against the pod's ephemeral storage: the limit must hold them all.
        assert quantity(resources["limits"]["ephemeral-storage"]) >= scratch, (where, scratch)


@pytest.mark.parametrize("profile", PROFILES)
def test_captured_predictions_are_purged_daily_where_the_captures_are(profile: str) -> None:
    docs = rendered_profile(profile)
    cronjob = find(docs, "CronJob", "vd-visiondock-purge-captures")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid" and "suspend" not in cronjob["spec"]
    assert re.fullmatch(r"\d+ \d+ \* \* \*", cronjob["spec"]["schedule"])  # once a day
    spec = pod_spec(cronjob)
    container = spec["containers"][0]
    assert container["command"] == ["visiondock", "purge-captures"]
    assert re.search(r"(^|/)visiondock/api[:@]", container["image"]), container["image"]  # the CLI's image
    annotation = pod_spec(find(docs, "Deployment", "vd-visiondock-annotation"))
    # The same storage as the annotation service: its settings, and its data volume when storage is embedded.
    assert container["envFrom"] == annotation["containers"][0]["envFrom"]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in annotation["volumes"] if "persistentVolumeClaim" in v]
    mine = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert mine == claims
