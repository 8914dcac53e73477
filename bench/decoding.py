"""What bounding concurrent full decodes does to a process's peak memory.

A small, highly compressible PNG (a solid RGBA picture of many megapixels: a few hundred
kilobytes on the wire) decodes to hundreds of megabytes. `--threads` threads each decode it
`--repeat` times through `visiondock.images.decode_rgb`, once with as many decode slots as
threads (the baseline: no bound in effect) and once with `--slots` slots
(VISIONDOCK_MAX_CONCURRENT_DECODES); each run is a fresh process, so its peak resident size
(ru_maxrss) is its own.

    python -m bench.decoding [--megapixels 12] [--threads 4] [--slots 1] [--repeat 2]

Prints the encoded size, each run's peak RSS and seconds, and the ratio bounded/baseline of both
(same run, same machine; the machine may be shared: the load average is printed with them).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor


def _picture(megapixels: float) -> bytes:
    from PIL import Image

    side = int((megapixels * 1e6) ** 0.5)
    buffer = io.BytesIO()
    Image.new("RGBA", (side * 2, side // 2), (200, 30, 30, 128)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def _run(picture: str, threads: int, slots: int, repeat: int) -> None:
    """One measurement, in this (fresh) process: prints `peak_mb grown_mb seconds` (grown: the peak over
    the resident size before the first decode)."""
    from visiondock.images import decode_rgb, limit_concurrent_decodes

    with open(picture, "rb") as file:
        data = file.read()
    limit_concurrent_decodes(slots)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: decode_rgb(data, max_pixels=10**9).size, range(threads * repeat)))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{peak / 1024:.0f} {(peak - before) / 1024:.0f} {seconds:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.decoding", description=__doc__.split("\n\n")[0])
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # internal: one run with this many slots
    parser.add_argument("--picture", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure is not None:
        _run(args.picture, args.threads, args.measure, args.repeat)
        return 0
    data = _picture(args.megapixels)
    print(f"a {args.megapixels:g} Mpx RGBA PNG of {len(data) / 1024:.0f} KiB, decoded {args.threads * args.repeat} "
          f"times by {args.threads} threads; load average {os.getloadavg()[0]:.2f}")
    results = {}
    with tempfile.NamedTemporaryFile(suffix=".png") as picture:
        picture.write(data)
        picture.flush()
        for slots in (args.threads, args.slots):
            command = [sys.executable, "-m", "bench.decoding", "--picture", picture.name, "--threads",
                       str(args.threads), "--repeat", str(args.repeat), "--measure", str(slots)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()
            peak, grown, seconds = map(float, out)
            results[slots] = (grown, seconds)
            print(f"  {slots} decode slot(s): peak RSS {peak:.0f} MB ({grown:.0f} MB for decoding), {seconds:.2f} s")
    (base_grown, base_s), (grown, seconds) = results[args.threads], results[args.slots]
    print(f"bounded/baseline: memory for decoding {grown / base_grown:.2f}, time {seconds / base_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
