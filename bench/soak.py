"""Soak and fault runs (`make soak`): a benchmark that prints figures, not a timed test.

1. Load: the scoring service (EfficientNet-Lite0) under 32 clients, then 200 clients for
   60 s from several load-generator processes (`bench/loadgen.py`); errors, throughput
   against the 32-client figure measured in the same run, resident memory every second
   (its spread from the 10th second on), and the load generators' own CPU time, which
   shows when they rather than the service are the limit.
2. Registry down for 30 s while scoring serves (alias polled every second): failed predictions.
3. Annotation killed with SIGKILL during a 500-image import: after a restart and
   `visiondock fsck`, what was half-written (documents without blobs, blobs without
   documents) and whether the import completes when run again.
4. Scoring sent SIGTERM under 32 clients: every request the service accepted (its access log)
   against the answers the clients received.

    python -m bench.soak [--clients 200] [--seconds 60] [--outage 30] [--images 500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.scoring import (
    LOCAL_DEV_API_KEY,
    MODEL,
    ROOT,
    benchmark_images,
    export_model,
    load,
    load_average,
    rss_mb,
    running,
    say,
)
from cli.local_services import ServiceProcess, free_port

LOADGEN_PROCESSES = 4
# A service to start (again): its module, environment, log folder, name and port.
Launch = tuple[str, dict[str, str], Path, str, int]


def start(module: str, env: dict[str, str], logs: Path, name: str, port: int) -> ServiceProcess:
    """`module` as a process on `port` (the launcher of `visiondock up`), once it is ready to work."""
    process = ServiceProcess.spawn(module, name=name, port=port, env={**os.environ, **env}, log_dir=logs, cwd=ROOT)
    process.wait_ready(probe="/readyz", timeout=120)
    return process
TARGET_THROUGHPUT_RATIO = 0.9
TARGET_RSS_SPREAD = 0.10


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def many_clients(url: str, image_list: Path, *, clients: int, seconds: float, processes: int) -> dict[str, Any]:
    """`clients` connections spread over `processes` load generators; their results summed."""
    share = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    command = [sys.executable, "-m", "bench.loadgen", "--url", url, "--images", str(image_list),
               "--duration", str(seconds), "--warmup", "1.5", "--api-key", LOCAL_DEV_API_KEY]
    popens = [subprocess.Popen([*command, "--concurrency", str(n)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
              for n in share]
    cpu: dict[int, float] = {}

    def watch() -> None:  # the generators' CPU time, read while they run
        while any(p.poll() is None for p in popens):
            for p in popens:
                with contextlib.suppress(OSError, IndexError):
                    cpu[p.pid] = cpu_seconds(p.pid)
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in popens]
    watcher.join()
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    for result in results:
        for key, value in result["statuses"].items():
            statuses[key] = statuses.get(key, 0) + value
        for key, value in result["errors"].items():
            errors[key] = errors.get(key, 0) + value
    return {"clients": clients, "throughput": sum(r["throughput"] for r in results), "statuses": statuses,
            "errors": errors, "abandoned": sum(r["abandoned"] for r in results),
            "p50_ms": max(r["p50_ms"] for r in results), "p99_ms": max(r["p99_ms"] for r in results),
            "loadgen_cpu_s": sum(cpu.values()), "seconds": max(r["seconds"] for r in results)}


def soak_load(scoring: ServiceProcess, image_list: Path, *, clients: int, seconds: float) -> dict[str, Any]:
    say("== 1. load: 32 clients, then many")
    base = load(scoring.url + "/v1/predict", image_list, concurrency=32, seconds=20)
    say(f"   32 clients: {base['throughput']:.1f} images/s, p99 {base['p99_ms']:.0f} ms")
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    began = time.perf_counter()

    def sample() -> None:
        while not stop.wait(1.0):
            samples.append((time.perf_counter() - began, rss_mb(scoring)[0]))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    window_end = 1.5 + seconds  # warm-up + measured window: after it the service idles and gives memory back
    service_cpu = cpu_seconds(scoring.popen.pid)
    heavy = many_clients(scoring.url + "/v1/predict", image_list, clients=clients, seconds=seconds,
                         processes=LOADGEN_PROCESSES)
    service_cpu = cpu_seconds(scoring.popen.pid) - service_cpu
    stop.set()
    sampler.join()
    steady = [rss for at, rss in samples if 10.0 <= at <= window_end]
    reference = steady[0] if steady else float("nan")
    spread = max(abs(r - reference) / reference for r in steady) if steady else float("nan")
    failed = sum(v for k, v in heavy["statuses"].items() if k != "200") + sum(heavy["errors"].values())
    return {"base": base, "heavy": heavy, "failed": failed, "rss_at_10s_mb": reference,
            "rss_min_mb": min(steady), "rss_max_mb": max(steady), "rss_spread": spread,
            "ratio": heavy["throughput"] / base["throughput"], "service_cpu_s": service_cpu}


def registry_outage(registry_launch: Launch, scoring: ServiceProcess, image_list: Path, registry: ServiceProcess, *,
                    outage: float) -> dict[str, Any]:
    say(f"== 2. registry down for {outage:.0f} s while 8 clients score")
    result: dict[str, Any] = {}

    def outage_then_restart() -> None:
        time.sleep(3)
        registry.popen.kill()
        registry.popen.wait()
        time.sleep(outage)
        result["restarted"] = start(*registry_launch)

    killer = threading.Thread(target=outage_then_restart)
    killer.start()
    answered = load(scoring.url + "/v1/predict", image_list, concurrency=8, seconds=outage + 10)
    killer.join()
    failed = sum(v for k, v in answered["statuses"].items() if k != "200") + sum(answered["errors"].values())
    return {"answered": answered, "failed": failed, "registry": result["restarted"]}


async def _client_until_closed(url: str, body: bytes, stats: dict[str, int]) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    head = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nX-API-Key: {LOCAL_DEV_API_KEY}\r\n"
            f"Content-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    try:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    except OSError:
        stats["refused"] += 1
        return
    while True:
        try:
            writer.write(head + body)
            await writer.drain()
            stats["sent"] += 1
            status_line = await reader.readuntil(b"\r\n\r\n")
        except (OSError, asyncio.IncompleteReadError):
            stats["closed_unanswered"] += 1  # the service closed the connection without reading this one
            return
        headers = status_line.decode("latin-1").split("\r\n")
        length = next((int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length:")), 0)
        try:
            await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError):
            stats["cut_off"] += 1
            return
        stats["answered"] += 1
        stats[f"status_{headers[0].split(' ')[1]}"] = stats.get(f"status_{headers[0].split(' ')[1]}", 0) + 1
        if any(h.lower() == "connection: close" for h in headers):
            return


def sigterm_under_load(scoring: ServiceProcess, image: bytes) -> dict[str, Any]:
    say("== 4. SIGTERM to scoring under 32 clients")
    stats = {"sent": 0, "answered": 0, "closed_unanswered": 0, "cut_off": 0, "refused": 0}
    log = scoring.log_path
    logged_before = _predictions_logged(log)

    async def clients() -> None:
        tasks = [asyncio.create_task(_client_until_closed(scoring.url + "/v1/predict", image, stats))
                 for _ in range(32)]
        await asyncio.sleep(4)
        scoring.popen.send_signal(signal.SIGTERM)
        await asyncio.gather(*tasks)

    asyncio.run(clients())
    scoring.popen.wait(timeout=60)
    accepted = _predictions_logged(log) - logged_before
    return {**stats, "accepted_by_service": accepted, "exit_code": scoring.popen.returncode}


def _predictions_logged(log: Path) -> int:
    count = 0
    for line in log.read_text(errors="replace").splitlines():
        if '"visiondock.access"' in line and '"/v1/predict"' in line:
            count += 1
    return count


def kill_during_import(workdir: Path, env: dict[str, str], count: int) -> dict[str, Any]:
    say(f"== 3. annotation killed (SIGKILL) during a {count}-image import")
    from cli.importer import import_dataset
    from cli.synthetic import SHAPES, write_folder
    from services.annotation.images import IMAGE_BLOBS, IMAGES
    from services.annotation.review import REVIEW_BLOBS
    from visiondock.clients import AnnotationClient, ServiceError
    from visiondock.fsck import check, repair
    from visiondock.settings import Settings
    from visiondock.storage import open_blob_store, open_document_store

    folder = write_folder(workdir / "import", per_class=-(-count // len(SHAPES)), seed=3, size=128)
    home = workdir / "annotation-home"
    env = {**env, "VISIONDOCK_HOME": str(home)}
    launch: Launch = ("services.annotation", env, workdir / "logs", "annotation", free_port())
    annotation = start(*launch)
    outcome: dict[str, Any] = {}
    with AnnotationClient(annotation.url, LOCAL_DEV_API_KEY, retries=1) as client:
        client.create_project("soak", "multiclass")

        def run_import() -> None:
            try:
                outcome["report"] = import_dataset(client, "soak", folder, "folder", progress=False)
            except (ServiceError, OSError) as exc:
                outcome["error"] = f"{type(exc).__name__}: {exc}"[:160]

        importer = threading.Thread(target=run_import)
        importer.start()
        # Kill once about a third is in, in the middle of the next batch.
        stats_path = "/v1/projects/soak/stats"
        while importer.is_alive() and client.request("GET", stats_path).json()["image_count"] < count // 3:
            time.sleep(0.05)
        time.sleep(0.3)
        annotation.popen.kill()
        annotation.popen.wait()
        importer.join()
    settings = Settings(home=home)
    documents, blobs = open_document_store(settings), open_blob_store(settings)
    pairings = [IMAGE_BLOBS, REVIEW_BLOBS]
    try:
        images_at_kill = sum(1 for _ in documents.query_all(IMAGES))
        stray_temp = sum(1 for p in settings.resolved_blob_root.rglob(".upload-*"))
        found = list(check(documents, blobs, pairings, grace=timedelta(0)))
        fixed = repair(documents, blobs, found, pairings)
        after = list(check(documents, blobs, pairings, grace=timedelta(0)))
    finally:
        documents.close()
        blobs.close()
    annotation = start(*launch)
    try:
        with AnnotationClient(annotation.url, LOCAL_DEV_API_KEY) as client:
            again = import_dataset(client, "soak", folder, "folder", progress=False)
            stats = client.request("GET", "/v1/projects/soak/stats").json()
    finally:
        annotation.stop()
    return {"images_at_kill": images_at_kill, "import_error": outcome.get("error"),
            "fsck_found": [p.line() for p in found], "fsck_repaired": len(fixed), "fsck_after": len(after),
            "stray_temp_files": stray_temp, "rerun_created": again["created"], "rerun_duplicates": again["duplicates"],
            "images_in_project": stats["image_count"], "expected": sum(1 for _ in folder.rglob("*.jpg"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--outage", type=float, default=30.0)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="visiondock-soak-") as scratch:
        workdir = args.workdir or Path(scratch)
        return run(workdir, args)


def run(workdir: Path, args: argparse.Namespace) -> int:
    say(f"== load average before: {load_average()}; {os.cpu_count()} CPUs")
    images, note = benchmark_images(workdir, 120)
    image_list = workdir / "images.txt"
    image_list.write_text("\n".join(str(p) for p in images))
    say(f"   images: {note}")
    model = export_model(workdir / "model.onnx")
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {"VISIONDOCK_HOME": str(workdir / "home"), "VISIONDOCK_API_KEYS": LOCAL_DEV_API_KEY,
           "VISIONDOCK_API_KEY": LOCAL_DEV_API_KEY, "VISIONDOCK_LOG_FORMAT": "json"}
    registry_launch: Launch = ("services.registry", env, logs, "registry", free_port())
    registry = start(*registry_launch)
    try:
        from visiondock.clients import RegistryClient

        with RegistryClient(registry.url, LOCAL_DEV_API_KEY) as client:
            version = client.register_version(MODEL, model, {"task": "multiclass",
                                                             "labels": [f"class_{i}" for i in range(1000)]})
            client.set_alias(MODEL, "production", version["version"])
        scoring_env = {**env, "VISIONDOCK_REGISTRY_URL": registry.url, "VISIONDOCK_SCORING_MODEL": MODEL,
                       "VISIONDOCK_SCORING_POLL_SECONDS": "1", "VISIONDOCK_SCORING_MAX_QUEUE_SIZE": "512"}
        with running("services.scoring", scoring_env, logs, "scoring", probe="/readyz") as scoring:
            loaded = soak_load(scoring, image_list, clients=args.clients, seconds=args.seconds)
            outage = registry_outage(registry_launch, scoring, image_list, registry, outage=args.outage)
            registry = outage["registry"]
        killed = kill_during_import(workdir, env, args.images)
        scoring = start("services.scoring", scoring_env, logs, "scoring-sigterm", free_port())
        terminated = sigterm_under_load(scoring, images[0].read_bytes())
    finally:
        registry.stop()
    report(loaded, outage, killed, terminated, args)
    return 0


def report(loaded: dict[str, Any], outage: dict[str, Any], killed: dict[str, Any], terminated: dict[str, Any],
           args: argparse.Namespace) -> None:
    heavy, base = loaded["heavy"], loaded["base"]
    say("\n== figures")
    say(f"1. {args.clients} clients for {args.seconds:.0f} s ({LOADGEN_PROCESSES} load-generator processes): "
        f"{heavy['throughput']:.1f} images/s = {loaded['ratio']:.2f}x the 32-client {base['throughput']:.1f} "
        f"(target >= {TARGET_THROUGHPUT_RATIO}); p50 {heavy['p50_ms']:.0f} ms, p99 {heavy['p99_ms']:.0f} ms; "
        f"failed {loaded['failed']} (statuses {heavy['statuses']}, errors {heavy['errors']}, "
        f"abandoned {heavy['abandoned']})")
    say(f"   RSS from the 10th second: {loaded['rss_min_mb']:.0f}-{loaded['rss_max_mb']:.0f} MB, at most "
        f"{loaded['rss_spread'] * 100:.1f} % from {loaded['rss_at_10s_mb']:.0f} MB (target within "
        f"{TARGET_RSS_SPREAD * 100:.0f} %)")
    say(f"   CPU seconds during the window: service {loaded['service_cpu_s']:.0f}, load generators "
        f"{heavy['loadgen_cpu_s']:.0f} (of {os.cpu_count()} CPUs x {heavy['seconds']:.0f} s)")
    answered = outage["answered"]
    say(f"2. registry down {args.outage:.0f} s: {answered['ok']} predictions answered, {outage['failed']} failed "
        f"(statuses {answered['statuses']}, errors {answered['errors']})")
    say(f"3. annotation SIGKILLed mid-import: {killed['images_at_kill']} images stored at the kill, import "
        f"ended with {killed['import_error']}; fsck found {len(killed['fsck_found'])}, repaired "
        f"{killed['fsck_repaired']}, {killed['fsck_after']} left; {killed['stray_temp_files']} temp files of "
        f"interrupted writes; the import run again created {killed['rerun_created']} and found "
        f"{killed['rerun_duplicates']} already there: {killed['images_in_project']} of {killed['expected']}")
    for line in killed["fsck_found"]:
        say(f"     {line}")
    unanswered = terminated["accepted_by_service"] - terminated["answered"]
    say(f"4. SIGTERM under 32 clients: the service accepted {terminated['accepted_by_service']} predictions and "
        f"the clients received {terminated['answered']} answers ({unanswered} accepted but unanswered); "
        f"{terminated['closed_unanswered']} requests met a closed connection without being accepted, "
        f"{terminated['cut_off']} answers cut off; exit code {terminated['exit_code']}")
    say(f"== load average after: {load_average()}")


if __name__ == "__main__":
    sys.exit(main())
