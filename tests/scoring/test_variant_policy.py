"""The variant policy on real ONNX files: which file of a version is served for each
setting, and `auto`'s timing trial on this device (ONNX Runtime's CPU build here)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest

from services.scoring.model import Device, LoadedModel, ModelIdentity, session_options
from services.scoring.settings import ScoringSettings
from services.scoring.variant_policy import VariantChoice, VariantPolicy

from . import tiny_models

SETTINGS = ScoringSettings(scoring_intra_op_threads=1)


class Files:
    """A version's files on disk, opened as the served model opens them, counting each opening."""

    def __init__(self, files: dict[str, Path], device: Device) -> None:
        self.files = files
        self.device = device
        self.opened: list[str] = []

    def document(self, version: int = 7) -> dict[str, Any]:
        def artifact(path: Path) -> dict[str, Any]:
            return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "size": path.stat().st_size}

        return {"model": "colours", "version": version, "artifact": artifact(self.files["fp32"]),
                "variants": {name: artifact(path) for name, path in self.files.items() if name != "fp32"}}

    def open(self, variant: str, artifact: dict[str, Any]) -> LoadedModel:
        self.opened.append(variant)
        loaded = LoadedModel(self.files[variant], ModelIdentity("colours", 7, artifact["sha256"], "production",
                                                                variant=variant),
                             options=session_options(SETTINGS, gpu=self.device.gpu))
        self.device.observe(loaded)
        return loaded


def policy(wanted: str, device: Device) -> VariantPolicy:
    return VariantPolicy(wanted, device=device,
                         batch_size=lambda variant, gpu: SETTINGS.resolved_max_batch_size(variant=variant, gpu=gpu))


@pytest.fixture(scope="module")
def fast_int8(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """fp32 slower than its INT8 file (as on most CPUs), and an fp16 file (for GPUs)."""
    root = tmp_path_factory.mktemp("fast-int8")
    return {"fp32": tiny_models.classifier(root / "fp32.onnx", busywork=2),
            "int8": tiny_models.classifier(root / "int8.onnx", gain=11),
            "fp16": tiny_models.classifier(root / "fp16.onnx", gain=9)}


@pytest.fixture(scope="module")
def slow_int8(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An INT8 file slower than fp32, as on some CPUs."""
    root = tmp_path_factory.mktemp("slow-int8")
    return {"fp32": tiny_models.classifier(root / "fp32.onnx"),
            "int8": tiny_models.classifier(root / "int8.onnx", busywork=2)}


def test_a_named_variant_is_served_when_the_version_has_it_else_fp32_with_a_note(fast_int8: dict[str, Path]
                                                                                   ) -> None:
    device = Device(expect_gpu=False)
    files = Files(fast_int8, device)
    document = files.document()
    for wanted in ("fp32", "int8", "fp16"):
        choice = policy(wanted, device).choose(document, files.open)
        assert (choice.variant, choice.artifact, choice.session, choice.note) == (
            wanted, document["artifact"] if wanted == "fp32" else document["variants"][wanted], None, None)
    only_fp32 = {**document, "variants": {}}
    choice = policy("int8", device).choose(only_fp32, files.open)
    assert (choice.variant, choice.note) == ("fp32", "version 7 has no 'int8' variant; serving the fp32 file")
    assert files.opened == []  # choosing by name loads nothing


def test_auto_serves_int8_on_a_cpu_where_it_is_faster_and_times_it_once(fast_int8: dict[str, Path]) -> None:
    device = Device(expect_gpu=False)
    files = Files(fast_int8, device)
    auto = policy("auto", device)
    choice = auto.choose(files.document(), files.open)
    assert (choice.variant, choice.note) == ("int8", None)
    # The trial's winning session is the one served: the file is not opened again.
    assert choice.session is not None and choice.session.identity.variant == "int8"
    assert files.opened == ["fp32", "int8"]
    again = auto.choose(files.document(), files.open)
    assert (again.variant, again.session) == ("int8", None) and files.opened == ["fp32", "int8"]


def test_auto_serves_fp32_with_the_timings_where_int8_is_not_faster(slow_int8: dict[str, Path],
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    device = Device(expect_gpu=False)
    files = Files(slow_int8, device)
    with caplog.at_level(logging.INFO, logger="services.scoring.variant_policy"):
        choice = policy("auto", device).choose(files.document(), files.open)
    assert (choice.variant, choice.session) == ("fp32", None)
    assert choice.note is not None and choice.note.startswith("version 7's INT8 variant is not faster on this CPU (")
    assert choice.note.endswith("; serving the fp32 file")
    int8_ms, fp32_ms = (float(part.split(" ms")[0]) for part in choice.note.split("(INT8 ")[1].split(", fp32 "))
    assert int8_ms > fp32_ms
    assert any(r.getMessage().startswith("colours version 7 on this CPU: INT8 ") for r in caplog.records)


def test_auto_without_variants_serves_fp32_and_opens_nothing_once_the_device_is_known(
        fast_int8: dict[str, Path]) -> None:
    device = Device(expect_gpu=False)
    files = Files({"fp32": fast_int8["fp32"]}, device)
    assert policy("auto", device).choose(files.document(), files.open) == VariantChoice(
        "fp32", files.document()["artifact"])
    assert files.opened == []


def test_auto_asks_the_session_not_the_settings_where_it_runs(fast_int8: dict[str, Path]) -> None:
    # The settings expect a GPU, but this ONNX Runtime gives the session the CPU (as a CUDA build whose
    # libraries do not match the machine does): the first session says so, and auto times INT8, the
    # CPU's variant, not the GPU's fp16.
    device = Device(expect_gpu=True)
    files = Files(fast_int8, device)
    choice = policy("auto", device).choose(files.document(), files.open)
    assert device.known and device.gpu is False
    assert choice.variant == "int8" and files.opened == ["fp32", "int8"]
