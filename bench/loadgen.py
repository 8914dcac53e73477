"""A lean HTTP/1.1 load generator: N keep-alive connections posting images in a loop.

Run as its own process (`python -m bench.loadgen ...`) so the load costs the service
nothing but the CPU it shares: asyncio streams and pre-built requests, like `wrk`,
instead of an HTTP client library's per-request work. Prints one JSON line: requests,
errors by kind, throughput and latency percentiles, measured after a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

BOUNDARY = "visiondockbenchboundary"


def build_requests(host: str, port: int, path: str, images: list[bytes], *, mode: str, api_key: str) -> list[bytes]:
    """Every request as the bytes sent on the wire: the image as a multipart `file` or the raw body."""
    built = []
    for index, image in enumerate(images):
        if mode == "multipart":
            body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{index}.jpg\"\r\n"
                    f"Content-Type: image/jpeg\r\n\r\n").encode() + image + f"\r\n--{BOUNDARY}--\r\n".encode()
            content_type = f"multipart/form-data; boundary={BOUNDARY}"
        else:
            body, content_type = image, "image/jpeg"
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nX-API-Key: {api_key}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n")
        built.append(head.encode() + body)
    return built


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def run(url: str, images: list[bytes], *, concurrency: int, duration: float, warmup: float, mode: str,
              api_key: str, grace: float = 20.0, keep_latencies: bool = False) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = build_requests(host, port, parts.path, images, mode=mode, api_key=api_key)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    start, cpu_start = time.perf_counter(), time.process_time()
    measure_from = start + warmup
    stop_at = measure_from + duration
    counter = 0
    answered = 0  # 200s from the start, warm-up included: what the service's CPU time was spent on

    async def worker(offset: int) -> None:
        nonlocal counter, answered
        reader, writer = await asyncio.open_connection(host, port)
        index = offset
        try:
            while (now := time.perf_counter()) < stop_at:
                request = requests[index % len(requests)]
                index += concurrency
                try:
                    writer.write(request)
                    await writer.drain()
                    status = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                done = time.perf_counter()
                answered += status == 200
                if now >= measure_from:
                    latencies.append(done - now)
                    statuses[str(status)] = statuses.get(str(status), 0) + 1
                    counter += 1
        finally:
            writer.close()

    workers = [asyncio.ensure_future(worker(i)) for i in range(concurrency)]
    # A service far slower than the window would keep us waiting for its queue: stop after a grace period.
    _, unfinished = await asyncio.wait(workers, timeout=warmup + duration + grace)
    for task in unfinished:
        task.cancel()
    await asyncio.gather(*unfinished, return_exceptions=True)
    elapsed = time.perf_counter() - measure_from
    cpu_seconds = time.process_time() - cpu_start  # this process's CPU while it sent and read, warm-up included
    abandoned = len(unfinished)
    ok = statuses.get("200", 0)
    values = np.array(latencies) * 1000 if latencies else np.zeros(1)
    result = {
        "concurrency": concurrency, "mode": mode, "requests": counter, "ok": ok, "answered": answered,
        "statuses": statuses, "errors": errors, "abandoned": abandoned, "seconds": round(elapsed, 3),
        "throughput": ok / elapsed if elapsed > 0 else 0.0,
        "p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(statistics.fmean(values)), "cpu_seconds": round(cpu_seconds, 4),
    }
    if keep_latencies:
        result["latencies"] = latencies
    return result


def _run_share(args: tuple[str, list[bytes], int, int, float, float, str, str]) -> dict:
    url, images, offset, concurrency, duration, warmup, mode, api_key = args
    rotated = images[offset:] + images[:offset]
    return asyncio.run(run(url, rotated, concurrency=concurrency, duration=duration, warmup=warmup, mode=mode,
                           api_key=api_key, keep_latencies=True))


def run_processes(url: str, images: list[bytes], *, processes: int, concurrency: int, duration: float,
                  warmup: float, mode: str, api_key: str) -> dict:
    """The same load split over `processes` processes: tells whether one load process was the limit."""
    shares = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    jobs = [(url, images, i * len(images) // processes, share, duration, warmup, mode, api_key)
            for i, share in enumerate(shares) if share]
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        parts = pool.map(_run_share, jobs)
    latencies = [value for part in parts for value in part.pop("latencies")]
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    for part in parts:
        for key, value in part["statuses"].items():
            statuses[key] = statuses.get(key, 0) + value
        for key, value in part["errors"].items():
            errors[key] = errors.get(key, 0) + value
    values = np.array(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "concurrency": concurrency, "processes": len(jobs), "mode": mode,
        "requests": sum(p["requests"] for p in parts), "ok": sum(p["ok"] for p in parts),
        "answered": sum(p["answered"] for p in parts), "statuses": statuses,
        "errors": errors, "abandoned": sum(p["abandoned"] for p in parts),
        "seconds": max(p["seconds"] for p in parts), "throughput": sum(p["throughput"] for p in parts),
        "cpu_seconds": sum(p["cpu_seconds"] for p in parts),
        "p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(statistics.fmean(values)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8003/v1/predict")
    parser.add_argument("--images", required=True, type=Path, help="a text file listing image paths")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--mode", choices=("multipart", "raw"), default="multipart")
    parser.add_argument("--api-key", default="")
    parser.add_argument("--processes", type=int, default=1, help="split the connections over this many processes")
    args = parser.parse_args(argv)
    images = [Path(line).read_bytes() for line in args.images.read_text().splitlines() if line.strip()]
    if args.processes > 1:
        result = run_processes(args.url, images, processes=args.processes, concurrency=args.concurrency,
                               duration=args.duration, warmup=args.warmup, mode=args.mode, api_key=args.api_key)
    else:
        result = asyncio.run(run(args.url, images, concurrency=args.concurrency, duration=args.duration,
                                 warmup=args.warmup, mode=args.mode, api_key=args.api_key))
        result["processes"] = 1
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
