"""INT8 against fp32 served over HTTP, and what worker processes and the load generator change.

The model is EfficientNet-Lite0 with its ImageNet head (as in `bench.scoring`), its INT8
variant made by the trainer's quantizer, both registered as one version. For each
number of scoring worker processes (1, the service's default of one per 4 CPUs, and one per
available CPU) the service is
started with VISIONDOCK_SCORING_VARIANT=fp32 and =int8 in alternating rounds and loaded
by 32 clients; the first round also loads from two processes: if two load processes get
more answers than one, the load generator, not the service, was the limit. One worker is
also measured with a single batch runner (one batch at a time on every ONNX Runtime thread,
as before batch runners): the baseline for what the runners change; and with batches of 8
for both variants, because by default an fp32 model on a CPU shares one batch of 8 among
the runners (less memory, a little slower): its INT8/fp32 ratio is the one against the
faster fp32.

    python -m bench.scoring_variants [--seconds 10] [--clients 32 [64 ...]] [--rounds 3] [--workers 1 2]

Prints a table, the INT8/fp32 ratio of the median throughputs per configuration (same run, same machine) and
the target (INT8 served ≥ 2x fp32 served at 32 clients) met or missed. Beside each run,
the CPU time per answered image (Linux /proc): the scoring processes' main threads (the
event loops), their other threads (decoding and ONNX Runtime) and the load generator;
what the cores spend besides ONNX Runtime is what keeps the served ratio under the
in-process one. The machine may be shared: the load average is printed with the numbers.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
from pathlib import Path

from bench.scoring import (
    MODEL,
    ROOT,
    TARGET_INT8_VS_FP32,
    benchmark_images,
    export_model,
    load,
    load_average,
    quantize,
    running,
    say,
)
from services.scoring.settings import ScoringSettings
from visiondock.settings import LOCAL_DEV_API_KEY, available_cpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scoring_variants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[32],
                        help="concurrent clients; with several, each started service is loaded at each in turn")
    parser.add_argument("--rounds", type=int, default=3, help="alternating fp32/int8 measurements per worker count")
    parser.add_argument("--workers", type=int, nargs="*",
                        help="worker counts to try (default: 1, the service's default and the CPUs)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "results" / "scoring-variants")
    args = parser.parse_args(argv)
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    cpus = available_cpus()
    # (workers, batch runners per worker, max batch size; 0 = the service's default), the single runner first as
    # the baseline, then the defaults, then the default runners with batches of 8 for fp32 too.
    automatic = ScoringSettings(scoring_workers=0).resolved_workers(gpu=False)
    defaults = [(workers, 0, 0) for workers in (args.workers or sorted({1, automatic, cpus}))]
    configs = [(workers, runners, batch, describe(workers, runners, batch))
               for workers, runners, batch in [(1, 1, 0), *defaults[:1], (1, 0, 8), *defaults[1:]]]
    images, note = benchmark_images(args.workdir, args.images)
    image_list = args.workdir / "images.txt"
    image_list.write_text("\n".join(str(p) for p in images))
    say(f"== {note}; {cpus} CPUs; load average {load_average()}")
    fp32 = export_model(args.workdir / "model.onnx")
    int8 = quantize(fp32, args.workdir / "model.int8.onnx", images)
    base_env = {"VISIONDOCK_HOME": str(args.workdir / "home"), "VISIONDOCK_API_KEYS": LOCAL_DEV_API_KEY,
                "VISIONDOCK_API_KEY": LOCAL_DEV_API_KEY, "VISIONDOCK_LOG_FORMAT": "json"}
    logs = args.workdir / "logs"
    logs.mkdir()
    rows: list[tuple[str, str, int, dict]] = []
    with running("services.registry", base_env, logs, "registry") as registry:
        from visiondock.clients import RegistryClient

        with RegistryClient(registry.url, LOCAL_DEV_API_KEY) as client:
            metadata = {"task": "multiclass", "labels": [f"class_{i}" for i in range(1000)]}
            version = client.register_version(MODEL, fp32, metadata, variants={"int8": int8})["version"]
            client.set_alias(MODEL, "production", version)
        for workers, runners, batch, config in configs:
            # Rounds alternate the variants, each on a freshly started service, so a slow spell of a
            # shared machine falls on both; the ratio is that of the medians.
            for round_index in range(args.rounds):
                for variant in ("fp32", "int8"):
                    env = {**base_env, "VISIONDOCK_REGISTRY_URL": registry.url, "VISIONDOCK_SCORING_MODEL": MODEL,
                           "VISIONDOCK_SCORING_VARIANT": variant, "VISIONDOCK_SCORING_WORKERS": str(workers),
                           "VISIONDOCK_SCORING_BATCH_RUNNERS": str(runners),
                           "VISIONDOCK_SCORING_MAX_BATCH_SIZE": str(batch)}
                    with running("services.scoring", env, logs,
                                 f"scoring-{variant}-{workers}w{runners}r-{round_index}", probe="/readyz") as scoring:
                        # The first round also loads from two processes (at the first client count): more
                        # answers than from one would mean the load generator, not the service, was the limit.
                        loads = [(clients, 1) for clients in args.clients]
                        if round_index == 0:
                            loads.insert(1, (args.clients[0], 2))
                        for clients, processes in loads:
                            service_before, load_before = cpu_seconds(scoring.pid), load_generator_seconds()
                            result = load(scoring.url + "/v1/predict", image_list, concurrency=clients,
                                          seconds=args.seconds, processes=processes)
                            service_after = cpu_seconds(scoring.pid)
                            answered = result["answered"]  # from the start of the load, as the CPU times
                            result["cpu_ms"] = {role: 1000 * (service_after[role] - service_before.get(role, 0.0))
                                                / max(answered, 1) for role in service_after}
                            result["cpu_ms"]["load generator"] = \
                                1000 * (load_generator_seconds() - load_before) / max(answered, 1)
                            say(f"   round {round_index + 1} {variant} {config}, {clients} clients, {processes} load "
                                f"process(es): {result['throughput']:.1f} images/s, p99 {result['p99_ms']:.0f} ms "
                                f"(load {load_average()}); CPU ms per image: {describe_cpu(result['cpu_ms'])}")
                            rows.append((config, variant, clients, processes, result))
    first = args.clients[0]
    print(f"\nINT8 vs fp32 served, {' and '.join(map(str, args.clients))} clients, {note}; {cpus} CPUs; "
          f"{args.rounds} alternating rounds of "
          f"{args.seconds:.0f} s; load average after {load_average()} (a shared machine: compare ratios in this run)")
    width = max(len(config) for config, *_ in rows)
    print(f"{'service':<{width}} {'variant':>7} {'clients':>7} {'load procs':>10} {'images/s':>9} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'errors':>7}  CPU ms per image")
    for config, variant, clients, processes, result in rows:
        failed = sum(v for k, v in result["statuses"].items() if k != "200") + sum(result["errors"].values())
        print(f"{config:<{width}} {variant:>7} {clients:>7} {processes:>10} {result['throughput']:>9.1f} "
              f"{result['p50_ms']:>7.0f} {result['p99_ms']:>7.0f} {failed:>7}  {describe_cpu(result['cpu_ms'])}")
    print()
    # The ratios below are at the first client count, the target's.
    medians: dict[tuple[str, str], float] = {}
    for *_, config in configs:
        for variant in ("fp32", "int8"):
            medians[(config, variant)] = statistics.median(
                r["throughput"] for c, v, n, p, r in rows if (c, v, n, p) == (config, variant, first, 1))
        one = next(r["throughput"] for c, v, n, p, r in rows if (c, v, n, p) == (config, "int8", first, 1))
        two = next(r["throughput"] for c, v, n, p, r in rows if (c, v, n, p) == (config, "int8", first, 2))
        ratio = medians[(config, "int8")] / max(medians[(config, "fp32")], 1e-9)
        print(f"{config}, {first} clients: median images/s fp32 {medians[(config, 'fp32')]:.1f}, int8 "
              f"{medians[(config, 'int8')]:.1f}; INT8 / fp32 served = {ratio:.2f}x (target ≥ "
              f"{TARGET_INT8_VS_FP32:.1f}x: {'met' if ratio >= TARGET_INT8_VS_FP32 else 'MISSED'}); int8 from two "
              f"load processes / one: {two / max(one, 1e-9):.2f}x")
    baseline, default, eights = configs[0][-1], configs[1][-1], configs[2][-1]
    for variant in ("fp32", "int8"):
        print(f"{variant} with the default batch runners / one runner (1 worker): "
              f"{medians[(default, variant)] / max(medians[(baseline, variant)], 1e-9):.2f}x")
    print(f"fp32 with the default batches / batches of 8 (1 worker): "
          f"{medians[(default, 'fp32')] / max(medians[(eights, 'fp32')], 1e-9):.2f}x")
    for *_, config in configs[3:]:  # more workers against the default one
        for variant in ("fp32", "int8"):
            print(f"{variant} with {config} / with {default}: "
                  f"{medians[(config, variant)] / max(medians[(default, variant)], 1e-9):.2f}x")
    return 0


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds so far of a scoring process and its worker processes, by role: each process's main thread
    (the event loop; with workers, also the supervisor's) and its other threads. Empty where /proc is not."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds = {"event loop": 0.0, "other threads": 0.0}
    pending = [pid]
    while pending:
        process = pending.pop()
        tasks = Path(f"/proc/{process}/task")
        if not tasks.is_dir():
            return {}
        for task in tasks.iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                children = (task / "children").read_text().split()
            except OSError:  # the thread ended
                continue
            role = "event loop" if task.name == str(process) else "other threads"
            seconds[role] += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
            pending.extend(int(child) for child in children)
    return seconds


def load_generator_seconds() -> float:
    """CPU seconds of this process's finished children: the load generators `load` runs and waits for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def describe_cpu(cpu_ms: dict[str, float]) -> str:
    return ", ".join(f"{role} {value:.2f}" for role, value in cpu_ms.items()) if len(cpu_ms) > 1 else "n/a"


def describe(workers: int, runners: int, batch: int) -> str:
    """A configuration as the table names it: what the service resolves `runners` = 0 to, per worker, and the
    fp32 batch size."""
    settings = ScoringSettings(scoring_workers=workers, scoring_batch_runners=runners, scoring_max_batch_size=batch)
    resolved = settings.resolved_batch_runners(gpu=False)
    return (f"{settings.resolved_workers(gpu=False)} worker(s) x {resolved} runner(s) x "
            f"{settings.resolved_intra_op_threads(gpu=False)} ORT thread(s), fp32 batches of "
            f"{settings.resolved_max_batch_size(variant='fp32', gpu=False)}")


if __name__ == "__main__":
    sys.exit(main())
