"""`visiondock demo`: the whole loop on one machine, from nothing to REST predictions.

Starts the services on free ports with embedded storage in a scratch home, generates
labeled shape photos, imports them, trains, promotes the version to `production`,
waits for the scoring service to load it, and scores held-out images the model never
saw, printing accuracy per class. Everything stops at the end.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from cli.importer import import_dataset
from cli.local_services import SERVICES, LocalServices
from cli.synthetic import SHAPES, write_folder
from visiondock.clients import AnnotationClient, RegistryClient, ScoringClient
from visiondock.settings import LOCAL_DEV_API_KEY
from visiondock.vocabulary import MULTICLASS

PROJECT = "shapes-demo"


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def wait_until_serving(scoring: ScoringClient, version: int, *, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = scoring.readiness()
        model = state.get("model") if isinstance(state, dict) else None
        if isinstance(model, dict) and model.get("version") == version:
            return
        time.sleep(0.5)
    raise TimeoutError(f"the scoring service did not load version {version} within {timeout:.0f} s: {state}")


def per_class_table(truth: list[str], predicted: list[str]) -> str:
    totals = Counter(truth)
    right = Counter(t for t, p in zip(truth, predicted, strict=True) if t == p)
    lines = [f"{'class':<12}{'correct':>9}{'images':>8}{'accuracy':>10}"]
    for label in sorted(totals):
        lines.append(f"{label:<12}{right[label]:>9}{totals[label]:>8}{right[label] / totals[label]:>10.1%}")
    overall = sum(right.values()) / max(1, len(truth))
    lines.append(f"{'all':<12}{sum(right.values()):>9}{len(truth):>8}{overall:>10.1%}")
    return "\n".join(lines)


def run_demo(*, home: Path | None = None, per_class: int = 40, heldout_per_class: int = 15, seed: int = 0,
             keep: bool = False) -> float:
    """Run the loop; returns the held-out accuracy the scoring service achieved."""
    from services.trainer.job import TrainingOptions, run_training

    started = time.perf_counter()
    scratch = home is None
    home = home or Path(tempfile.mkdtemp(prefix="visiondock-demo-"))
    services = LocalServices.on_free_ports(
        home, scoring_model=PROJECT,
        extra_env={"VISIONDOCK_SCORING_POLL_SECONDS": "1", "VISIONDOCK_API_KEYS": LOCAL_DEV_API_KEY,
                   "VISIONDOCK_API_KEY": LOCAL_DEV_API_KEY})
    try:
        _step("1/6 start the annotation, registry and scoring services")
        services.start()
        for name in SERVICES:
            print(f"   {name:<11} {services.url(name)}")
        print(f"   data and logs in {home}")
        annotation = AnnotationClient(services.url("annotation"), LOCAL_DEV_API_KEY)
        registry = RegistryClient(services.url("registry"), LOCAL_DEV_API_KEY)
        scoring = ScoringClient(services.url("scoring"), LOCAL_DEV_API_KEY)

        _step(f"2/6 generate labeled photos of {', '.join(SHAPES)}")
        data = home / "demo-data"
        write_folder(data / "train", per_class, seed=seed + 1)
        write_folder(data / "heldout", heldout_per_class, seed=seed + 2)
        print(f"   {per_class} per class to import, {heldout_per_class} per class held out for scoring")

        _step(f"3/6 create project {PROJECT!r} and import the images")
        annotation.create_project(PROJECT, MULTICLASS, description="Generated shapes: the VisionDock demo.")
        report = import_dataset(annotation, PROJECT, data / "train", "folder")
        print(f"   imported {report['created']} images ({report['duplicates']} duplicates, "
              f"{len(report['skipped'])} skipped)")

        _step("4/6 train (EfficientNet-Lite features, candidates chosen by cross-validation)")
        result = run_training(TrainingOptions(project=PROJECT, seed=seed, cache_dir=home / "feature-cache"),
                              annotation, registry)
        estimate = result.metrics["estimate"]
        print(f"   registered {result.model} version {result.version} ({result.params['selection']['chosen']}) in "
              f"{result.seconds:.1f} s; the trainer expects {estimate['value']:.1%} on new images (95 % interval "
              f"{estimate['interval'][0]:.1%}-{estimate['interval'][1]:.1%}, {estimate['images']} images)")

        _step(f"5/6 promote version {result.version} to production")
        registry.set_alias(PROJECT, "production", result.version)
        wait_until_serving(scoring, result.version)
        print(f"   the scoring service serves {PROJECT} version {result.version}")

        _step("6/6 score the held-out images over REST")
        truth, predicted = [], []
        files = sorted((data / "heldout").glob("*/*.jpg"))
        for path in tqdm(files, desc="predict", unit="img"):
            answer = scoring.predict(path.read_bytes(), filename=path.name)
            truth.append(path.parent.name)
            predicted.append(answer["predictions"][0]["label"])
        print(per_class_table(truth, predicted))
        accuracy = sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(truth)
        print(f"\nheld-out accuracy over REST: {accuracy:.1%} (chance: {1 / len(SHAPES):.0%}); "
              f"demo took {time.perf_counter() - started:.0f} s")
        for client in (annotation, registry, scoring):
            client.close()
        return accuracy
    finally:
        services.stop()
        if scratch and not keep:
            shutil.rmtree(home, ignore_errors=True)
        elif keep:
            print(f"kept {home}")
