"""Feature-extraction throughput of each backbone at its own input size and at larger ones.

Pooled features by the trainer's own runner (ONNX Runtime on CPU, `features.FrozenRunner`) over
the same photos, batch 32, after a warm-up batch. Backbones take turns round by round, so load
from other processes falls on all of them alike; each figure is the median over the rounds, and
the ratio to Lite0 at 224 px (the unit `--selection-budget` counts in) is taken within each round.
Below the table: the feature time of quick training of 720 images projected from this machine's
Lite0 figure for the passes the default budget computes. "area-scaled" is the ratio a size should
have (the backbone's budget cost x the input area over its own size's), to tell measured ratios
from load noise.

    python -m bench.feature_throughput [--images 64] [--rounds 3] [--threads 2] [--sizes lite1:320 ...]

Images come from the shared flowers12 set (224 x 224 photos; decoding and resizing are included,
as in training). The frozen graphs are exported once under --cache-dir.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from bench.shared_sets import DEFAULT_DATASETS, FileLoader, classification_set

DEFAULT_CACHE = Path.home() / ".cache" / "visiondock-bench" / "throughput"
DEFAULT_SIZES = ("lite0:224", "lite0:320", "lite1:240", "lite1:320", "lite1:384", "lite2:260", "lite2:380")


def load_average() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.feature_throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", nargs="*", default=list(DEFAULT_SIZES), help="backbone:size pairs")
    args = parser.parse_args(argv)

    from services.trainer.backbone import PooledFeatures, backbone_spec, load_pretrained
    from services.trainer.features import FrozenRunner, run_batched
    from services.trainer.options import SELECTION_BUDGET
    from services.trainer.selection import affordable_passes
    from visiondock.preprocess import PreprocessSpec, to_tensor
    from visiondock.vocabulary import BACKBONES

    dataset = classification_set(args.datasets, "flowers12")
    if dataset is None:
        print(f"skipped: {args.datasets / 'flowers12'} is absent")
        return 0
    records = dataset.records[:: max(1, len(dataset.records) // args.images)][: args.images]
    loader = FileLoader(dataset.paths)
    pairs = []
    for item in args.sizes:
        short, size = item.split(":")
        pairs.append((f"efficientnet-{short}", int(size)))
    print(f"feature throughput: {len(records)} flowers12 photos, batch 32, {args.threads} threads, {args.rounds} "
          f"rounds; load {load_average()} on {os.cpu_count()} cores", flush=True)
    runners = {}
    for name, size in pairs:
        path = args.cache_dir / f"{name}-pooled-{size}.onnx"

        def build(name: str = name, size: int = size) -> PooledFeatures:
            return PooledFeatures(load_pretrained(name, size))

        runners[(name, size)] = FrozenRunner(build, input_size=size, onnx_path=path, threads=args.threads)
    seconds: dict[tuple[str, int], list[float]] = {pair: [] for pair in pairs}
    ratios: dict[tuple[str, int], list[float]] = {pair: [] for pair in pairs}
    # CPU seconds of this process per image (all its threads): what a quiet machine's cores must supply.
    cpu: dict[tuple[str, int], list[float]] = {pair: [] for pair in pairs}
    baseline = ("efficientnet-lite0", 224)
    for _ in range(args.rounds):
        this_round = {}
        for pair in pairs:
            name, size = pair
            spec = PreprocessSpec(size=size, resize=round(size / 0.875))
            images = loader.load(records, draft_size=spec.draft_size)
            ordered = [images[r.id] for r in records]
            run_batched(runners[pair], ordered[:8], lambda image, spec=spec: to_tensor(image, spec), desc="",
                        progress=False)  # warm-up
            started, cpu_started = time.perf_counter(), time.process_time()
            run_batched(runners[pair], ordered, lambda image, spec=spec: to_tensor(image, spec), desc="",
                        progress=False)
            this_round[pair] = (time.perf_counter() - started) / len(ordered)
            seconds[pair].append(this_round[pair])
            cpu[pair].append((time.process_time() - cpu_started) / len(ordered))
        if baseline in this_round:
            for pair in pairs:
                ratios[pair].append(this_round[pair] / this_round[baseline])
    print(f"  {'backbone':<12}{'size':>6}{'ms / image':>12}{'CPU ms':>9}{'x Lite0@224':>13}{'area-scaled':>12}"
          f"{'budget cost':>13}")
    for pair in pairs:
        name, size = pair
        spec = backbone_spec(name)
        flops = spec.relative_cost * (size / spec.image_size) ** 2
        ratio = statistics.median(ratios[pair]) if ratios[pair] else float("nan")
        native = "" if size != spec.image_size else f"{spec.relative_cost:.2f}"
        print(f"  {name.removeprefix('efficientnet-'):<12}{size:>6}{statistics.median(seconds[pair]) * 1000:>12.1f}"
              f"{statistics.median(cpu[pair]) * 1000:>9.1f}{ratio:>13.2f}{flops:>12.2f}{native:>13}")
    if baseline in seconds:
        lite0 = statistics.median(seconds[baseline])
        passes = affordable_passes(BACKBONES, 720, SELECTION_BUDGET)
        units = sum(p.cost(720) for p in passes)
        names = ", ".join(p.backbone.removeprefix("efficientnet-") + (" mirrored" if p.mirrored else "")
                          for p in passes)
        lite0_cpu = statistics.median(cpu[baseline])
        print(f"  720 images, default budget ({names}: {units:.0f} Lite0 image-passes): features projected "
              f"{units * lite0:.1f} s at this machine's Lite0 figure now; {units * lite0_cpu:.1f} CPU seconds, "
              f"{units * lite0_cpu / args.threads:.1f} s on {args.threads} otherwise idle cores if the threads "
              "kept them busy")
    print(f"load average at end {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
