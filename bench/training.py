"""`make bench-train`: the trainer's benchmarks on real photos in ../shared/datasets.

Runs the classification benchmark (flowers12: repeated stratified held-out splits,
quick and advanced training, quick retraining with a cold and a warm feature cache)
and then the detection benchmark (grocery: leave-images-out cross-validation). Each
prints its own table; each skips with a note when its data set is absent.

    python -m bench.training [--only classification|detection] [--datasets PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench import training_classification

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASETS = ROOT.parent / "shared" / "datasets"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.training", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("classification", "detection"))
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    status = 0
    if args.only in (None, "classification"):
        print("== classification: flowers12", flush=True)
        status |= training_classification.main(["--datasets", str(args.datasets)])
    if args.only in (None, "detection"):
        print("\n== detection: grocery", flush=True)
        try:
            from bench import training_detection
        except ImportError as exc:
            print(f"detection benchmark unavailable: {exc}")
            status |= 1
        else:
            status |= training_detection.main(["--datasets", str(args.datasets)])
    print(f"\nbench-train took {time.perf_counter() - started:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
