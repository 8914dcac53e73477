"""Scoring benchmark (`make bench-scoring`): the service against raw ONNX Runtime and
against a tutorial-style service, same model, same images, one run.

- (a) the in-process pipeline: decode + preprocess + ONNX Runtime in batches of the
  service's batch size for the variant (8, but fp32 on a CPU shares 8 among the batch
  runners: 4 with two), in as many threads as the service has batch runners,
  measured two ways, each thread decoding then running each batch, and decode threads
  preparing the next batch while ONNX Runtime runs this one; the better of the two is
  the ceiling. ONNX Runtime alone on ready tensors is shown beside them;
- (b) the scoring service over HTTP (registry + scoring as uvicorn processes, the model
  pulled from the registry) at concurrency 1, 8 and 32, load from a separate process;
- (c) a naive service as the tutorials build it: FastAPI + torch eager, one image per
  request, no batching (bench/naive_service.py);
- (d) the INT8 variant made by the trainer's quantizer (services/trainer/quantize.py,
  static QDQ, per-channel, calibrated on 64 of the images), registered as the version's
  `int8` variant: in-process like (a), and served with VISIONDOCK_SCORING_VARIANT=int8.
  The INT8 target is judged on ONNX Runtime alone: decoding costs the same for both;
- (e) the default variant (`auto`: both files timed at load, the faster served) served at
  concurrency 32, against the same file in process (the better of its (a) or (d)
  pipelines): what the HTTP path, with its key check and limits, costs per image. The
  two are measured in turns, `--rounds` rounds of both (the first of the pair
  alternating), with the service idle while the in-process pipeline runs; the ratio is
  the median of the rounds' ratios, printed with each round's figures and load average,
  so that load from other processes drifting during the run weighs on both sides alike.
  Each round also prints the CPU time an image costs on each side (served: the service's
  processes and the load generator, per image answered; in process: this process) and
  their ratio, which other load on a shared machine moves less than it moves throughput.
  `--default-only` runs (e) alone (a few minutes).

The model is EfficientNet-Lite0 with its ImageNet head (1000 classes), exported by the
trainer's exporter with a real model card. Images: the flowers12 photos of
../shared/datasets (or of VISIONDOCK_DATASETS) when present, else generated JPEGs (the
output says which). Also
measured: process start → ready, the scoring process's resident memory, and /healthz
latency while the service is under load.

The machine may be shared: the load average is printed next to the numbers. The load
generator shares the machine's cores with the service (the in-process pipelines have no
client to feed): its CPU time counts against the served rows.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from cli.local_services import ServiceProcess, free_port
from visiondock.settings import LOCAL_DEV_API_KEY

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("VISIONDOCK_DATASETS") or ROOT.parent / "shared" / "datasets")
MODEL = "bench-lite0"
AUTH = {"X-API-Key": LOCAL_DEV_API_KEY}

TARGET_HTTP_VS_CEILING = 0.8
TARGET_DEFAULT_SERVED_VS_IN_PROCESS = 0.9
TARGET_HTTP_VS_NAIVE = 4.0
TARGET_INT8_VS_FP32 = 2.0
TARGET_READY_SECONDS = 3.0
TARGET_RSS_MB = 400.0


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min) / {five:.2f} (5 min)"


# -- inputs ------------------------------------------------------------------------------
def benchmark_images(workdir: Path, count: int) -> tuple[list[Path], str]:
    flowers = DATASETS / "flowers12" / "train"
    if flowers.is_dir():
        classes = sorted(p for p in flowers.iterdir() if p.is_dir())
        per_class = max(1, count // len(classes))
        chosen = [path for folder in classes for path in sorted(folder.glob("*.jpg"))[:per_class]]
        return chosen, f"{len(chosen)} flowers12 photos (224x224 JPEG, {len(classes)} classes)"
    from cli.synthetic import SHAPES, render

    folder = workdir / "generated"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        path = folder / f"{index:04d}.jpg"
        render(SHAPES[index % len(SHAPES)], rng, 224).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths, f"{count} generated shape JPEGs 224x224 ({DATASETS} not found)"


def export_model(path: Path) -> Path:
    """EfficientNet-Lite0 with its ImageNet head and a softmax, exported with a real model card."""
    import torch
    from torch import nn

    from services.trainer.backbone import default_preprocess, load_pretrained
    from services.trainer.export import export_onnx
    from visiondock.modelcard import ModelCard

    class WithSoftmax(nn.Module):
        def __init__(self, network: nn.Module) -> None:
            super().__init__()
            self.network = network

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.network(images), dim=1)

    card = ModelCard(task="multiclass", labels=[f"class_{i}" for i in range(1000)],
                     preprocess=default_preprocess("efficientnet-lite0"), backbone="efficientnet-lite0",
                     model_name=MODEL)
    return export_onnx(WithSoftmax(load_pretrained("efficientnet-lite0")).eval(), card, path)


def quantize(fp32: Path, int8: Path, images: list[Path]) -> Path:
    from services.scoring.model import LoadedModel, ModelIdentity, session_options
    from services.scoring.settings import ScoringSettings
    from services.trainer.quantize import CALIBRATION_IMAGES, quantize_int8

    model = LoadedModel(fp32, ModelIdentity(MODEL, 1, "", "bench"), options=session_options(ScoringSettings()))
    step = max(1, len(images) // CALIBRATION_IMAGES)
    calibration = np.stack([model.prepare(p.read_bytes(), max_pixels=50_000_000).tensor
                            for p in images[::step][:CALIBRATION_IMAGES]])
    return quantize_int8(fp32, int8, calibration)


# -- (a) and (d): in process ---------------------------------------------------------------
@dataclass
class Result:
    name: str
    concurrency: str
    throughput: float
    p50_ms: float
    p99_ms: float
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class InProcess:
    sequential: Result  # one thread: decode a batch, then run it
    overlapped: Result  # decode threads prepare the next batch while ONNX Runtime runs this one
    alone: Result  # ONNX Runtime on a ready batch: the model's own speed
    outputs: np.ndarray

    @property
    def ceiling(self) -> Result:
        return max(self.sequential, self.overlapped, key=lambda r: r.throughput)


class Pipelines:
    """The model in this process, with the scoring service's session options, batch size, batch runners
    (each measurement runs in as many threads, each on its own batches) and decode threads; each
    measurement runs for `seconds` (and over every image at least twice)."""

    def __init__(self, path: Path, images: list[Path], *, label: str, variant: str) -> None:
        from services.scoring.model import LoadedModel, ModelIdentity, session_options
        from services.scoring.settings import ScoringSettings

        self.settings = settings = ScoringSettings()
        self.label = label
        self.model = LoadedModel(path, ModelIdentity(MODEL, 1, "", "bench"),
                                 options=session_options(settings, gpu=settings.scoring_require_gpu))
        # Sized as the service sizes them: by where the session actually runs.
        self.runners = settings.resolved_batch_runners(gpu=self.model.on_gpu)
        # The service's batch size for this variant, so (a) and (d) batch as (b) and (d served) do.
        self.batch_size = settings.resolved_max_batch_size(variant=variant, gpu=self.model.on_gpu)
        self.encoded = [p.read_bytes() for p in images]
        self.model.run(self.batch_at(0))  # warm-up

    def prepare(self, data: bytes) -> np.ndarray:
        return self.model.prepare(data, max_pixels=self.settings.scoring_max_pixels).tensor

    def batch_at(self, start: int, mapper: Any = map) -> np.ndarray:
        encoded = self.encoded
        return np.stack(list(mapper(self.prepare, [encoded[(start + i) % len(encoded)]
                                                   for i in range(self.batch_size)])))

    def outputs(self) -> np.ndarray:
        """The model's first output for every image, in order."""
        encoded, size = self.encoded, self.batch_size
        return np.concatenate([self.model.run(self.batch_at(start))[0]
                               for start in range(0, len(encoded), size)])[:len(encoded)]

    def _measure(self, name: str, step_of: Any, seconds: float, note: str) -> Result:
        """`step_of(runner)` makes each runner's step; the runners loop at once, as the service's do."""
        from concurrent.futures import ThreadPoolExecutor

        runners, count = self.runners, len(self.encoded)
        started, cpu_started = time.perf_counter(), time.process_time()

        def loop(runner: int) -> tuple[int, list[float]]:
            step, offset = step_of(runner), runner * count // runners
            latencies, done = [], 0
            while time.perf_counter() - started < seconds or done < 2 * count // runners:
                mark = time.perf_counter()
                step(offset + done)
                latencies.append((time.perf_counter() - mark) * 1000)
                done += self.batch_size
            return done, latencies

        with ThreadPoolExecutor(runners) as pool:
            parts = list(pool.map(loop, range(runners)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        latencies = np.array([v for _, values in parts for v in values])
        images = sum(done for done, _ in parts)
        return Result(f"{self.label} {name}", "-", images / elapsed, *np.percentile(latencies, [50, 99]), note=note,
                      extra={"images": images, "cpu_seconds": cpu})

    def sequential(self, seconds: float) -> Result:
        """One thread per runner: decode a batch, then run it."""
        return self._measure("decode, then ORT", lambda _: lambda done: self.model.run(self.batch_at(done)),
                             seconds, f"{self.runners} runner thread(s); latency of a batch of {self.batch_size}")

    def overlapped(self, seconds: float) -> Result:
        """Decode threads prepare each runner's next batch while ONNX Runtime runs this one."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.settings.scoring_decode_threads) as decoders:
            feeders = [ThreadPoolExecutor(1) for _ in range(self.runners)]

            def overlapped_step(runner: int) -> Any:
                first = runner * len(self.encoded) // self.runners
                upcoming = {"batch": feeders[runner].submit(self.batch_at, first, decoders.map)}

                def step(done: int) -> None:
                    batch = upcoming["batch"].result()
                    upcoming["batch"] = feeders[runner].submit(self.batch_at, done + self.batch_size, decoders.map)
                    self.model.run(batch)

                return step

            try:
                return self._measure("decode || ORT", overlapped_step, seconds,
                                     f"{self.runners} runner thread(s), {self.settings.scoring_decode_threads} "
                                     "decode threads ahead of them; per batch")
            finally:
                for feeder in feeders:
                    feeder.shutdown(wait=True)

    def alone(self, seconds: float) -> Result:
        """ONNX Runtime on a ready batch: the model's own speed."""
        ready = self.batch_at(0)
        return self._measure("ORT alone", lambda _: lambda _done: self.model.run(ready), seconds,
                             f"{self.runners} runner thread(s); ready tensors; per batch")


def in_process(path: Path, images: list[Path], *, seconds: float, label: str, variant: str) -> InProcess:
    """The three in-process measurements of a file (see `Pipelines`)."""
    pipelines = Pipelines(path, images, label=label, variant=variant)
    outputs = pipelines.outputs()
    return InProcess(pipelines.sequential(seconds), pipelines.overlapped(seconds), pipelines.alone(seconds), outputs)


# -- services as processes -----------------------------------------------------------------
@contextlib.contextmanager
def running(module: str, env: dict[str, str], logs: Path, name: str, *, probe: str = "/healthz",
            args: tuple[str, ...] = ()) -> Iterator[ServiceProcess]:
    """`module` as a process on a free port (the launcher of `visiondock up`), stopped after the block."""
    process = ServiceProcess.spawn(module, name=name, port=free_port(), env={**os.environ, **env}, log_dir=logs,
                                   args=args, cwd=ROOT)
    try:
        process.wait_ready(probe=probe, timeout=120)
        yield process
    finally:
        process.stop(grace=15)


def rss_mb(process: ServiceProcess) -> tuple[float, float]:
    """(resident now, peak resident) in MB."""
    now, peak = process.memory_bytes()
    return now / 2**20, peak / 2**20


@contextlib.contextmanager
def probing(url: str, every: float = 0.05) -> Iterator[list[float]]:
    """Time a health probe every `every` seconds while the block runs (milliseconds, appended)."""
    timings: list[float] = []
    stop = threading.Event()

    def loop() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.wait(every):
                mark = time.perf_counter()
                with contextlib.suppress(httpx.HTTPError):
                    client.get(url)
                timings.append((time.perf_counter() - mark) * 1000)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield timings
    finally:
        stop.set()
        thread.join()


def load(url: str, image_list: Path, *, concurrency: int, seconds: float, mode: str = "multipart",
         processes: int = 1) -> dict:
    command = [sys.executable, "-m", "bench.loadgen", "--url", url, "--images", str(image_list),
               "--concurrency", str(concurrency), "--duration", str(seconds), "--warmup", "1.5", "--mode", mode,
               "--api-key", LOCAL_DEV_API_KEY, "--processes", str(processes)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    failed = {k: v for k, v in result["statuses"].items() if k != "200"}
    if failed or result["errors"]:
        say(f"   !! non-200 answers {failed} errors {result['errors']}")
    return result


def http_row(name: str, result: dict, note: str = "") -> Result:
    say(f"   {name} @{result['concurrency']}: {result['throughput']:.1f} images/s, p50 {result['p50_ms']:.0f} ms")
    statuses = {k: v for k, v in result["statuses"].items() if k != "200"}
    if statuses or result["errors"]:
        note = (note + f" failed: {statuses} {result['errors']}").strip()
    if result.get("abandoned"):
        note = (note + f" {result['abandoned']} requests still unanswered 20 s after the window").strip()
    return Result(name, str(result["concurrency"]), result["throughput"], result["p50_ms"], result["p99_ms"], note,
                  extra=result)


# -- (e): the default variant served against the same file in process, in turns --------------------
def process_tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by `pid` and its live descendants (the service's worker processes)."""
    tick, total, pending = os.sysconf("SC_CLK_TCK"), 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return total


@dataclass
class Alternation:
    """(e): rounds of the served default variant at 32 clients and the same file in process, each round
    measuring both, one right after the other."""

    variant: str  # the file `auto` serves
    kind: str  # the in-process pipeline measured: the better of the file's two in (a) / (d)
    served: list[Result]
    local: list[Result]
    loads: list[float]  # the 1-minute load average after each round
    served_cpu_ms: list[float] = field(default_factory=list)  # service + load generator, per image answered
    local_cpu_ms: list[float] = field(default_factory=list)  # the in-process pipeline, per image

    @property
    def cpu_ratios(self) -> list[float]:
        """Images per CPU second served over in process: what the ratio would be with both sides alone on
        the same cores, whatever else runs on the machine."""
        return [local / served if served > 0 else 0.0 for served, local in zip(self.served_cpu_ms, self.local_cpu_ms,
                                                                              strict=True)]

    @property
    def ratios(self) -> list[float]:
        return [s.throughput / i.throughput if i.throughput > 0 else 0.0 for s, i in zip(self.served, self.local,
                                                                                         strict=True)]

    @property
    def ratio(self) -> float:
        return float(np.median(self.ratios))

    def median_row(self, rows: list[Result], name: str) -> Result:
        """The round with the median throughput, named as the median of them all."""
        middle = sorted(rows, key=lambda r: r.throughput)[len(rows) // 2]
        return Result(name, middle.concurrency, float(np.median([r.throughput for r in rows])), middle.p50_ms,
                      middle.p99_ms, note=f"median of {len(rows)} rounds, " + middle.note)


def alternate(pipelines: Pipelines, kind: str, url: str, image_list: Path, *, seconds: float, rounds: int,
              variant: str, service_pid: int) -> Alternation:
    """`rounds` rounds, each measuring the served default variant @32 and the same file in process; the
    first of the two alternates from round to round, so that load that drifts during the run (another
    process starting or ending on a shared machine) weighs on both sides alike."""
    measured = Alternation(variant, kind, [], [], [])
    for index in range(rounds):
        sides = ("in process", "served") if index % 2 == 0 else ("served", "in process")
        for side in sides:
            if side == "served":
                cpu_before = process_tree_cpu_seconds(service_pid)
                result = load(url + "/v1/predict", image_list, concurrency=32, seconds=seconds)
                service_cpu = process_tree_cpu_seconds(service_pid) - cpu_before
                measured.served.append(http_row(f"(e) scoring service HTTP auto={variant}", result))
                # The load generator's CPU while it sent and read (not its start-up), warm-up included as in
                # `answered` and in the service's.
                measured.served_cpu_ms.append((service_cpu + result["cpu_seconds"]) * 1000
                                              / max(1, result["answered"]))
            else:
                local = getattr(pipelines, kind)(seconds)
                measured.local.append(local)
                measured.local_cpu_ms.append(local.extra["cpu_seconds"] * 1000 / max(1, local.extra["images"]))
        measured.loads.append(os.getloadavg()[0])
        say(f"   round {index + 1}: served {measured.served[-1].throughput:.1f}, in process "
            f"{measured.local[-1].throughput:.1f} images/s = {measured.ratios[-1]:.2f}; CPU ms an image served "
            f"{measured.served_cpu_ms[-1]:.2f}, in process {measured.local_cpu_ms[-1]:.2f} = "
            f"{measured.cpu_ratios[-1]:.2f}; load {measured.loads[-1]:.1f}")
    return measured


def default_variant_phase(scoring: ServiceProcess, paths: dict[str, Path], images: list[Path], image_list: Path, *,
                          seconds: float, rounds: int, locals_: dict[str, InProcess] | None) -> Alternation:
    """(e) on the running `auto` service: which file it serves, then the rounds."""
    chosen = httpx.get(scoring.url + "/v1/model", headers=AUTH).json()
    variant = chosen["model"]["variant"]
    say(f"   auto serves {variant} ({chosen['variant_note'] or 'INT8 was faster'})")
    pipelines = Pipelines(paths[variant], images, label=f"(e) {variant}", variant=variant)
    local = (locals_ or {}).get(variant)
    if local is None:  # no (a) / (d) in this run: measure both pipelines once to choose
        local = InProcess(pipelines.sequential(seconds), pipelines.overlapped(seconds), pipelines.alone(seconds),
                          np.zeros(0))
    kind = "overlapped" if local.overlapped.throughput >= local.sequential.throughput else "sequential"
    say(f"== (e) {rounds} rounds: served @32 and {variant} in process ({getattr(pipelines, kind).__doc__.strip()})")
    return alternate(pipelines, kind, scoring.url, image_list, seconds=seconds, rounds=rounds, variant=variant,
                     service_pid=scoring.pid)


def default_report(measured: Alternation) -> str:
    out = io.StringIO()
    kind = "decode || ORT" if measured.kind == "overlapped" else "decode, then ORT"
    out.write(f"(e) the default variant (auto serves {measured.variant}) at 32 clients against the same file in "
              f"process ({kind}), measured in turns:\n")
    out.write(f"    {'':>5}{'images/s':^28}{'CPU ms an image':^28}\n")
    out.write(f"    {'round':>5}{'served':>9}{'in process':>12}{'ratio':>7}{'served':>9}{'in process':>12}{'ratio':>7}"
              f"{'load':>7}\n")
    rounds = zip(measured.served, measured.local, measured.ratios, measured.served_cpu_ms, measured.local_cpu_ms,
                 measured.cpu_ratios, measured.loads, strict=True)
    for index, (served, local, ratio, served_cpu, local_cpu, cpu_ratio, load_now) in enumerate(rounds):
        out.write(f"    {index + 1:>5}{served.throughput:>9.1f}{local.throughput:>12.1f}{ratio:>7.2f}"
                  f"{served_cpu:>9.2f}{local_cpu:>12.2f}{cpu_ratio:>7.2f}{load_now:>7.1f}\n")
    ratios = measured.ratios
    out.write(f"    median ratio {measured.ratio:.2f} (rounds {min(ratios):.2f} to {max(ratios):.2f}); median images/s "
              f"served {np.median([r.throughput for r in measured.served]):.1f}, in process "
              f"{np.median([r.throughput for r in measured.local]):.1f}\n")
    out.write(f"    median CPU ratio {float(np.median(measured.cpu_ratios)):.2f}: images per CPU second served (the "
              "service's processes and the load generator) over in process, which other load on the machine does "
              "not move as much\n")
    return out.getvalue()


# -- the run -------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scoring", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=240, help="how many photos to cycle through")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per HTTP phase")
    parser.add_argument("--rounds", type=int, default=5,
                        help="(e): rounds of the served default variant and the same file in process, in turns")
    parser.add_argument("--default-only", action="store_true",
                        help="only (e): the default variant served against the same file in process")
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "results" / "scoring",
                        help="models, service homes, logs and results.json (emptied first)")
    args = parser.parse_args(argv)
    load_before = load_average()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    if args.default_only:
        return run_default_only(args.workdir, args.images, args.seconds, args.rounds, load_before)
    return run(args.workdir, args.images, args.seconds, args.rounds, load_before)


def service_environment(workdir: Path) -> dict[str, str]:
    return {"VISIONDOCK_HOME": str(workdir / "home"), "VISIONDOCK_API_KEYS": LOCAL_DEV_API_KEY,
            "VISIONDOCK_API_KEY": LOCAL_DEV_API_KEY, "VISIONDOCK_LOG_FORMAT": "json"}


def register(registry: ServiceProcess, fp32: Path, int8: Path, agreement: float) -> None:
    from visiondock.clients import RegistryClient

    with RegistryClient(registry.url, LOCAL_DEV_API_KEY) as client:
        metadata = {"task": "multiclass", "labels": [f"class_{i}" for i in range(1000)],
                    "variant_metrics": {"int8": {"top1_agreement": agreement}}}
        version = client.register_version(MODEL, fp32, metadata, variants={"int8": int8})["version"]
        client.set_alias(MODEL, "production", version)


def run_default_only(workdir: Path, count: int, seconds: float, rounds: int, load_before: str) -> int:
    images, images_note = benchmark_images(workdir, count)
    image_list = workdir / "images.txt"
    image_list.write_text("\n".join(str(p) for p in images))
    say(f"== images: {images_note}; load average {load_before}")
    fp32 = export_model(workdir / "model.onnx")
    int8 = quantize(fp32, workdir / "model.int8.onnx", images)
    logs = workdir / "logs"
    base_env = service_environment(workdir)
    with running("services.registry", base_env, logs, "registry") as registry:
        register(registry, fp32, int8, agreement=1.0)  # not measured here; the variant policy does not read it
        auto_env = {**base_env, "VISIONDOCK_REGISTRY_URL": registry.url, "VISIONDOCK_SCORING_MODEL": MODEL,
                    "VISIONDOCK_SCORING_VARIANT": "auto"}
        with running("services.scoring", auto_env, logs, "scoring-auto", probe="/readyz") as scoring:
            measured = default_variant_phase(scoring, {"fp32": fp32, "int8": int8}, images, image_list,
                                             seconds=seconds, rounds=rounds, locals_=None)
    out = io.StringIO()
    out.write(f"\nVisionDock scoring benchmark, (e) only: EfficientNet-Lite0 (ImageNet head), {images_note}\n")
    out.write(f"machine: {os.cpu_count()} CPUs; load average before {load_before}, after {load_average()}\n\n")
    out.write(default_report(measured))
    passed = measured.ratio >= TARGET_DEFAULT_SERVED_VS_IN_PROCESS
    out.write(f"\ntargets\n  {'(e) default variant served @32 / same file in process':<56}{measured.ratio:>8.2f} x  "
              f">= {TARGET_DEFAULT_SERVED_VS_IN_PROCESS:<6g} {'PASS' if passed else 'FAIL'}\n")
    print(out.getvalue())
    return 0


def run(workdir: Path, count: int, seconds: float, rounds: int, load_before: str) -> int:
    images, images_note = benchmark_images(workdir, count)
    image_list = workdir / "images.txt"
    image_list.write_text("\n".join(str(p) for p in images))
    say(f"== images: {images_note}; load average {load_before}")
    say("== export EfficientNet-Lite0 (ImageNet head) to ONNX and quantize it (trainer's quantizer)")
    fp32 = export_model(workdir / "model.onnx")
    int8 = quantize(fp32, workdir / "model.int8.onnx", images)

    say("== (a) in-process pipeline, fp32 and int8")
    fp32_local = in_process(fp32, images, seconds=seconds, label="(a) fp32", variant="fp32")
    int8_local = in_process(int8, images, seconds=seconds, label="(d) int8", variant="int8")
    agreement = float((fp32_local.outputs.argmax(1) == int8_local.outputs.argmax(1)).mean())
    for local in (fp32_local, int8_local):
        for row in (local.sequential, local.overlapped, local.alone):
            say(f"   {row.name}: {row.throughput:.1f} images/s")
    rows = [fp32_local.sequential, fp32_local.overlapped, fp32_local.alone]

    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    base_env = service_environment(workdir)
    startup: dict[str, float] = {}
    memory: dict[str, float] = {}
    health: dict[int, list[float]] = {}
    with running("services.registry", base_env, logs, "registry") as registry:
        register(registry, fp32, int8, agreement)
        # fp32 named: the default variant (auto) serves the version's INT8 file on a CPU.
        scoring_env = {**base_env, "VISIONDOCK_REGISTRY_URL": registry.url, "VISIONDOCK_SCORING_MODEL": MODEL,
                       "VISIONDOCK_SCORING_VARIANT": "fp32"}

        say("== (b) the scoring service over HTTP")
        with running("services.scoring", scoring_env, logs, "scoring", probe="/readyz") as scoring:
            startup["first start (downloads the model)"] = time.perf_counter() - scoring.started
            memory["idle"] = rss_mb(scoring)[0]
            served = httpx.get(scoring.url + "/readyz", headers=AUTH).json()["model"]["variant"]
            for concurrency in (1, 8, 32):
                say(f"   concurrency {concurrency}")
                with probing(scoring.url + "/healthz") as probe:
                    result = load(scoring.url + "/v1/predict", image_list, concurrency=concurrency, seconds=seconds)
                rows.append(http_row(f"(b) scoring service HTTP {served}", result))
                health[concurrency] = probe
            memory["after load"], memory["peak"] = rss_mb(scoring)
        with running("services.scoring", scoring_env, logs, "scoring", probe="/readyz") as scoring:
            startup["restart (model in the local cache)"] = time.perf_counter() - scoring.started

        say("== (d) the INT8 variant served")
        int8_env = {**scoring_env, "VISIONDOCK_SCORING_VARIANT": "int8"}
        with running("services.scoring", int8_env, logs, "scoring-int8", probe="/readyz") as scoring:
            served = httpx.get(scoring.url + "/readyz", headers=AUTH).json()["model"]["variant"]
            result = load(scoring.url + "/v1/predict", image_list, concurrency=32, seconds=seconds)
            int8_http = http_row(f"(d) scoring service HTTP {served}", result)
            memory["int8 peak"] = rss_mb(scoring)[1]

        # The default variant: both files of the version are timed once at load, the faster served.
        auto_env = {**scoring_env, "VISIONDOCK_SCORING_VARIANT": "auto"}
        with running("services.scoring", auto_env, logs, "scoring-auto", probe="/readyz") as scoring:
            label = "auto variant (times both files)"
            startup[label] = time.perf_counter() - scoring.started
            memory["after start, auto variant"], memory[f"peak, {label}"] = rss_mb(scoring)
            default = default_variant_phase(scoring, {"fp32": fp32, "int8": int8}, images, image_list,
                                            seconds=seconds, rounds=rounds,
                                            locals_={"fp32": fp32_local, "int8": int8_local})

    say("== (c) the naive service: FastAPI + torch eager, one image per request")
    naive_rows = []
    with running("bench.naive_service", {}, logs, "naive") as naive:
        for concurrency in (1, 8, 32):
            say(f"   concurrency {concurrency}")
            result = load(naive.url + "/predict", image_list, concurrency=concurrency, seconds=seconds)
            naive_rows.append(http_row("(c) naive FastAPI + torch eager", result))
    # torch's OpenMP threads collapse when the cores are shared; one thread is the naive service's best case.
    with running("bench.naive_service", {}, logs, "naive", args=("--torch-threads", "1")) as naive:
        say("   concurrency 8, one torch thread")
        result = load(naive.url + "/predict", image_list, concurrency=8, seconds=seconds)
        naive_rows.append(http_row("(c) naive, torch.set_num_threads(1)", result))
    default_rows = [default.median_row(default.served, f"(e) scoring service HTTP auto={default.variant}"),
                    default.median_row(default.local, default.local[0].name)]
    rows += [*naive_rows, int8_local.sequential, int8_local.overlapped, int8_local.alone, int8_http, *default_rows]
    (workdir / "results.json").write_text(json.dumps({"rows": [r.__dict__ for r in rows], "startup": startup,
                                                      "memory": memory, "agreement": agreement,
                                                      "default_variant": {"variant": default.variant,
                                                                          "ratios": default.ratios,
                                                                          "cpu_ratios": default.cpu_ratios,
                                                                          "loads": default.loads}}, indent=2,
                                                     default=str))

    print(report(rows, naive=naive_rows, fp32=fp32_local, int8=int8_local, int8_http=int8_http,
                 default=default, startup=startup, memory=memory, health=health,
                 agreement=agreement, images_note=images_note, load_before=load_before, load_after=load_average()))
    return 0


def report(rows: list[Result], *, naive: list[Result], fp32: InProcess, int8: InProcess, int8_http: Result,
           default: Alternation, startup: dict[str, float], memory: dict[str, float],
           health: dict[int, list[float]], agreement: float, images_note: str, load_before: str, load_after: str
           ) -> str:
    ceiling = fp32.ceiling
    tutorial = {r.concurrency: r for r in naive if "set_num_threads" not in r.name}
    best_naive = max(naive, key=lambda r: r.throughput)
    out = io.StringIO()
    out.write(f"\nVisionDock scoring benchmark: EfficientNet-Lite0 (ImageNet head, 1000 classes), {images_note}\n")
    out.write(f"machine: {os.cpu_count()} CPUs; load average before {load_before}, after {load_after}\n")
    out.write("in-process rows: the service's ONNX Runtime settings and batch size for the variant; HTTP rows: "
              "multipart uploads from a separate load-generator process; vs (a): against the better (a) pipeline "
              f"({ceiling.name}); vs (c): against (c) at the same concurrency\n\n")
    header = f"{'row':<42}{'conc':>5}{'images/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs (a)':>8}{'vs (c)':>8}  note"
    out.write(header + "\n" + "-" * len(header) + "\n")
    for row in rows:
        vs_a = _divide(row.throughput, ceiling.throughput) if row.name.startswith(("(a)", "(b)", "(c)")) else None
        same = tutorial.get(row.concurrency)
        vs_c = _divide(row.throughput, same.throughput) if same and row.name.startswith(("(b)", "(d)")) else None
        out.write(f"{row.name:<42}{row.concurrency:>5}{row.throughput:>10.1f}{row.p50_ms:>9.1f}{row.p99_ms:>9.1f}"
                  f"{_ratio(vs_a):>8}{_ratio(vs_c):>8}  {row.note}\n")
    http32 = next(r for r in rows if r.name.startswith("(b)") and r.concurrency == "32")
    out.write(f"\nINT8 top-1 agreement with fp32 on these images: {agreement:.1%}\n")
    for concurrency, timings in health.items():
        if timings:
            out.write(f"/healthz while serving at concurrency {concurrency}: p50 {np.percentile(timings, 50):.1f} ms, "
                      f"p99 {np.percentile(timings, 99):.1f} ms ({len(timings)} probes)\n")
    out.write("\n" + default_report(default))
    checks = [
        ("(e) default variant served @32 / same file in process", default.ratio,
         TARGET_DEFAULT_SERVED_VS_IN_PROCESS, "x"),
        ("(b)@32 / (a)", _divide(http32.throughput, ceiling.throughput), TARGET_HTTP_VS_CEILING, "x"),
        (f"(b)@32 / best (c) ({best_naive.name[4:]} @{best_naive.concurrency})",
         _divide(http32.throughput, best_naive.throughput), TARGET_HTTP_VS_NAIVE, "x"),
        ("(d) int8 served @32 / best (c)", _divide(int8_http.throughput, best_naive.throughput),
         TARGET_HTTP_VS_NAIVE, "x"),
        ("INT8 / fp32, ONNX Runtime alone", _divide(int8.alone.throughput, fp32.alone.throughput),
         TARGET_INT8_VS_FP32, "x"),
        ("INT8 / fp32, in-process pipeline", _divide(int8.ceiling.throughput, ceiling.throughput),
         TARGET_INT8_VS_FP32, "x"),
        ("INT8 / fp32, served @32", _divide(int8_http.throughput, http32.throughput), TARGET_INT8_VS_FP32, "x"),
    ]
    for label, seconds in startup.items():
        checks.append((f"start -> ready, {label}", seconds, TARGET_READY_SECONDS, "s"))
    for label, megabytes in memory.items():
        checks.append((f"scoring RSS {label}", megabytes, TARGET_RSS_MB, "MB"))
    out.write("\ntargets\n")
    for label, value, target, unit in checks:
        if value is None:
            out.write(f"  {label:<56}{'n/a':>8}     (a throughput was zero)\n")
            continue
        passed = value >= target if unit == "x" else value <= target
        bound = ">=" if unit == "x" else "<="
        out.write(f"  {label:<56}{value:>8.2f} {unit:<3}{bound} {target:<6g} {'PASS' if passed else 'FAIL'}\n")
    return out.getvalue()


def _divide(value: float, by: float) -> float | None:
    return value / by if by > 0 else None


def _ratio(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


if __name__ == "__main__":
    raise SystemExit(main())
