"""Tiny data sets through the real trainer: 2 and 5 photos per class drawn from flowers12.

For each size and seed, a project holds n photos per class drawn (seeded) from the
training side of the fixed held-out split of `bench.classification_options` (20 % of
each class, seed 0); the trainer runs as a user runs it, once with `--evaluation auto`
(cross-validated metrics, the model trained on every photo) and once with
`--evaluation held-out --no-refit` (what training did before: a test photo per class
kept out of the model). Each model is then scored on the 144 fixed held-out photos
with ONNX Runtime, decoded as the scoring service decodes them, so the table shows
the true accuracy beside the estimate the version reports.

    python -m bench.training_tiny [--seeds 3] [--sizes 2 5]

Skips (exit 0 with a note) when the data set folder is absent.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.classification_options import DEFAULT_DATASETS, flower_files, held_out_split, load_average
from cli.local_services import SERVICES, LocalServices, free_port
from visiondock.clients import AnnotationClient, RegistryClient
from visiondock.settings import LOCAL_DEV_API_KEY

# What the issue asks of tiny data: training works from two photos per class; more is better.
TARGET_TWO_PER_CLASS_TRAINS = True
SETTINGS = {"auto (cross-validated, trained on all)": {},
            "held-out, no refit (before)": {"evaluation": "held-out", "refit": False}}


def held_out_accuracy(registry: RegistryClient, model: str, version: int, files: list[Path], labels: list[str],
                      workdir: Path) -> float:
    from services.scoring.model import LoadedModel, ModelIdentity, session_options
    from services.scoring.settings import ScoringSettings

    path = registry.download_artifact(model, version, workdir / f"{model}-{version}.onnx")
    loaded = LoadedModel(path, ModelIdentity(model, version, "", "bench"), options=session_options(ScoringSettings()))
    right = 0
    for start in range(0, len(files), 16):
        chunk = files[start:start + 16]
        batch = np.stack([loaded.prepare(f.read_bytes(), max_pixels=50_000_000).tensor for f in chunk])
        predicted = loaded.run(batch)[0].argmax(1)
        right += sum(loaded.card.labels[int(p)] == labels[start + i] for i, p in enumerate(predicted))
    return right / len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.training_tiny", description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="*", default=[2, 5])
    args = parser.parse_args(argv)
    if not (args.datasets / "flowers12" / "train").is_dir():
        print(f"tiny data benchmark skipped: {args.datasets / 'flowers12'} is absent")
        return 0
    logging.basicConfig(level=logging.ERROR)
    from services.trainer.job import run_training
    from services.trainer.options import TrainingOptions

    classes = flower_files(args.datasets)
    names = list(classes)
    files = [f for name in names for f in classes[name]]
    labels = np.array([i for i, name in enumerate(names) for _ in classes[name]])
    train, test = held_out_split(labels)
    test_files, test_labels = [files[i] for i in test], [names[labels[i]] for i in test]
    print(f"flowers12 tiny subsets: {args.sizes} photos per class from the {len(train)} training photos; scored on "
          f"the fixed {len(test)} held-out photos; load average {load_average()}", flush=True)
    home = Path(tempfile.mkdtemp(prefix="visiondock-bench-tiny-"))
    services = LocalServices(home=home, ports={name: free_port() for name in SERVICES},
                             extra_env={"VISIONDOCK_LOG_LEVEL": "WARNING"})
    rows: dict[tuple[int, str], list[tuple[float, float, int]]] = {}
    try:
        services.start()
        with AnnotationClient(services.url("annotation"), LOCAL_DEV_API_KEY) as annotation, \
                RegistryClient(services.url("registry"), LOCAL_DEV_API_KEY) as registry:
            for size in args.sizes:
                for seed in range(args.seeds):
                    rng = np.random.default_rng([size, seed])
                    project = f"tiny-{size}-s{seed}"
                    annotation.create_project(project, "multiclass", tags=names)
                    for c, name in enumerate(names):
                        chosen = rng.choice(train[labels[train] == c], size, replace=False)
                        annotation.upload_images(project, [(files[i].name, files[i].read_bytes()) for i in chosen],
                                                 tags=[name])
                    for setting, values in SETTINGS.items():
                        options = TrainingOptions(project=project, model=f"{project}-{len(rows)}", seed=seed,
                                                  cache_dir=home / "feature-cache", progress=False, int8=False,
                                                  **values)
                        result = run_training(options, annotation, registry)
                        accuracy = held_out_accuracy(registry, result.model, result.version, test_files,
                                                     test_labels, home)
                        metrics = result.metrics
                        learned = metrics["refit"]["images"] if metrics["refit"] else metrics["train_count"]
                        rows.setdefault((size, setting), []).append((float(metrics["accuracy"]), accuracy, learned))
                        print(f"  {size}/class seed {seed} {setting}: reported {metrics['accuracy']:.1%} "
                              f"({metrics['evaluation']['method']}), held-out {accuracy:.1%}, learned from "
                              f"{learned} photos", flush=True)
    finally:
        services.stop()
        shutil.rmtree(home, ignore_errors=True)

    print(f"\n{'photos/class':>12}  {'setting':<40} {'reported (estimate)':>20} {'true held-out (144)':>21}")
    for (size, setting), values in rows.items():
        reported = [v[0] for v in values]
        true = [v[1] for v in values]
        print(f"{size:>12}  {setting:<40} {statistics.fmean(reported) * 100:>11.1f} ± "
              f"{statistics.pstdev(reported) * 100:4.1f} % {statistics.fmean(true) * 100:>12.1f} ± "
              f"{statistics.pstdev(true) * 100:4.1f} %")
    trained_two = any(size == 2 for size, _ in rows)
    print(f"\ntarget: two photos per class trains (a warning, not an error): "
          f"{'met' if trained_two else 'not measured'}; load average {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
