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
  pipelines, measured again right after (e) and averaged with the first measurement, so
  that a shared machine's load drifting between the phases weighs less): what the HTTP
  path, with its key check and limits, costs per image.

The model is EfficientNet-Lite0 with its ImageNet head (1000 classes), exported by the
trainer's exporter with a real model card. Images: the flowers12 photos of
../shared/datasets when present, else generated JPEGs (the output says which). Also
measured: process start → ready, the scoring process's resident memory, and /healthz
latency while the service is under load.

The machine may be shared: the load average is printed next to the numbers.
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

from cli.launcher import ServiceProcess, free_port
from visiondock.settings import LOCAL_DEV_API_KEY

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
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


def in_process(path: Path, images: list[Path], *, seconds: float, label: str, variant: str) -> InProcess:
    """The model in this process, with the scoring service's session options, batch size, batch runners
    (each measurement runs in as many threads, each on its own batches) and decode threads."""
    from concurrent.futures import ThreadPoolExecutor

    from services.scoring.model import LoadedModel, ModelIdentity, session_options
    from services.scoring.settings import ScoringSettings

    settings = ScoringSettings()
    model = LoadedModel(path, ModelIdentity(MODEL, 1, "", "bench"),
                        options=session_options(settings, gpu=settings.scoring_require_gpu))
    # Sized as the service sizes them: by where the session actually runs.
    runners = settings.resolved_batch_runners(gpu=model.on_gpu)
    # The service's batch size for this variant, so (a) and (d) batch as (b) and (d served) do.
    batch_size = settings.resolved_max_batch_size(variant=variant, gpu=model.on_gpu)
    encoded = [p.read_bytes() for p in images]

    def prepare(data: bytes) -> np.ndarray:
        return model.prepare(data, max_pixels=settings.scoring_max_pixels).tensor

    def batch_at(start: int, mapper: Any = map) -> np.ndarray:
        return np.stack(list(mapper(prepare, [encoded[(start + i) % len(encoded)] for i in range(batch_size)])))

    model.run(batch_at(0))  # warm-up
    outputs = np.concatenate([model.run(batch_at(start))[0] for start in range(0, len(encoded), batch_size)])

    def measure(step_of: Any) -> tuple[float, np.ndarray]:
        """`step_of(runner)` makes each runner's step; the runners loop at once, as the service's do."""
        started = time.perf_counter()

        def loop(runner: int) -> tuple[int, list[float]]:
            step, offset = step_of(runner), runner * len(encoded) // runners
            latencies, done = [], 0
            while time.perf_counter() - started < seconds or done < 2 * len(encoded) // runners:
                mark = time.perf_counter()
                step(offset + done)
                latencies.append((time.perf_counter() - mark) * 1000)
                done += batch_size
            return done, latencies

        with ThreadPoolExecutor(runners) as pool:
            parts = list(pool.map(loop, range(runners)))
        elapsed = time.perf_counter() - started
        return sum(done for done, _ in parts) / elapsed, np.array([v for _, values in parts for v in values])

    def result(name: str, measured: tuple[float, np.ndarray], note: str) -> Result:
        throughput, latencies = measured
        return Result(f"{label} {name}", "-", throughput, *np.percentile(latencies, [50, 99]), note=note)

    threads = f"{runners} runner thread(s)"
    sequential = result("decode, then ORT", measure(lambda _: lambda done: model.run(batch_at(done))),
                        f"{threads}; latency of a batch of {batch_size}")
    with ThreadPoolExecutor(settings.scoring_decode_threads) as decoders:
        feeders = [ThreadPoolExecutor(1) for _ in range(runners)]

        def overlapped_step(runner: int) -> Any:
            upcoming = {"batch": feeders[runner].submit(batch_at, runner * len(encoded) // runners, decoders.map)}

            def step(done: int) -> None:
                batch = upcoming["batch"].result()
                upcoming["batch"] = feeders[runner].submit(batch_at, done + batch_size, decoders.map)
                model.run(batch)

            return step

        overlapped = result("decode || ORT", measure(overlapped_step),
                            f"{threads}, {settings.scoring_decode_threads} decode threads ahead of them; per batch")
        for feeder in feeders:
            feeder.shutdown(wait=True)
    ready = batch_at(0)
    alone = result("ORT alone", measure(lambda _: lambda _done: model.run(ready)),
                   f"{threads}; ready tensors; per batch")
    return InProcess(sequential, overlapped, alone, outputs[:len(encoded)])


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


# -- the run -------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scoring", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=240, help="how many photos to cycle through")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per HTTP phase")
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "results" / "scoring",
                        help="models, service homes, logs and results.json (emptied first)")
    args = parser.parse_args(argv)
    load_before = load_average()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    return run(args.workdir, args.images, args.seconds, load_before)


def run(workdir: Path, count: int, seconds: float, load_before: str) -> int:
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

    home = workdir / "home"
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    base_env = {"VISIONDOCK_HOME": str(home), "VISIONDOCK_API_KEYS": LOCAL_DEV_API_KEY,
                "VISIONDOCK_API_KEY": LOCAL_DEV_API_KEY, "VISIONDOCK_LOG_FORMAT": "json"}
    startup: dict[str, float] = {}
    memory: dict[str, float] = {}
    health: dict[int, list[float]] = {}
    with running("services.registry", base_env, logs, "registry") as registry:
        from visiondock.clients import RegistryClient

        with RegistryClient(registry.url, LOCAL_DEV_API_KEY) as client:
            metadata = {"task": "multiclass", "labels": [f"class_{i}" for i in range(1000)],
                        "variant_metrics": {"int8": {"top1_agreement": agreement}}}
            version = client.register_version(MODEL, fp32, metadata, variants={"int8": int8})["version"]
            client.set_alias(MODEL, "production", version)
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
            chosen = httpx.get(scoring.url + "/v1/model", headers=AUTH).json()
            say(f"   auto serves {chosen['model']['variant']} ({chosen['variant_note'] or 'INT8 was faster'})")
            memory["after start, auto variant"], memory[f"peak, {label}"] = rss_mb(scoring)
            result = load(scoring.url + "/v1/predict", image_list, concurrency=32, seconds=seconds)
            default_http = http_row(f"(e) scoring service HTTP auto={chosen['model']['variant']}", result)
        int8_chosen = chosen["model"]["variant"] == "int8"
        say("== (e) the same file in process again, right after")
        again = in_process(int8 if int8_chosen else fp32, images, seconds=seconds,
                           label=f"(e) {'int8' if int8_chosen else 'fp32'} again", variant="int8" if int8_chosen
                           else "fp32")
        same_file = [int8_local if int8_chosen else fp32_local, again]

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
    rows += [*naive_rows, int8_local.sequential, int8_local.overlapped, int8_local.alone, int8_http, default_http,
             again.ceiling]
    (workdir / "results.json").write_text(json.dumps({"rows": [r.__dict__ for r in rows], "startup": startup,
                                                      "memory": memory, "agreement": agreement}, indent=2,
                                                     default=str))

    print(report(rows, naive=naive_rows, fp32=fp32_local, int8=int8_local, int8_http=int8_http,
                 default_http=default_http, same_file=same_file, startup=startup, memory=memory, health=health,
                 agreement=agreement, images_note=images_note, load_before=load_before, load_after=load_average()))
    return 0


def report(rows: list[Result], *, naive: list[Result], fp32: InProcess, int8: InProcess, int8_http: Result,
           default_http: Result, same_file: list[InProcess], startup: dict[str, float], memory: dict[str, float],
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
    in_process_mean = sum(local.ceiling.throughput for local in same_file) / len(same_file)
    out.write(f"(e) the same file in process: {' and '.join(f'{local.ceiling.throughput:.1f}' for local in same_file)} "
              f"images/s ({same_file[0].ceiling.name[4:]}, before and after the served run)\n")
    checks = [
        ("(e) default variant served @32 / same file in process",
         _divide(default_http.throughput, in_process_mean), TARGET_DEFAULT_SERVED_VS_IN_PROCESS, "x"),
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
