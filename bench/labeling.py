"""Labeling app at scale (`make bench-labeling`): a project of 10,000 images on embedded storage
(local files + SQLite), served by the annotation service as a uvicorn process.

- List pages: every page of 100 images walked with continuation tokens, unfiltered and with
  each grid filter (unlabeled, by tag, by split, awaiting review); p50 and p95 per request.
  Baselines from the same run: `/healthz` (the HTTP round trip alone, ratio = what listing
  adds) and the first page against the last (continuation tokens, never OFFSET: a deep page
  should cost what the first does).
- Grid first paint in headless chromium: from navigation to the first page's 60 thumbnails
  on screen (`window.gridPainted`), cold (thumbnails made on first view) and warm (read back
  from the blob store), each in a fresh page.

Targets: grid first paint under 1 s, list pages p95 under 100 ms. The machine may be shared:
the load average is printed beside the numbers.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from PIL import Image

from cli.local_services import free_port
from services.annotation.images import ImageLibrary
from services.annotation.projects import ProjectCatalog
from visiondock.settings import LOCAL_DEV_API_KEY, Settings
from visiondock.storage import open_blob_store, open_document_store

PROJECT = "bench-grid"
TAGS = ["apple", "banana", "cherry", "date"]
AUTH = {"X-API-Key": LOCAL_DEV_API_KEY}
TARGET_PAINT_S = 1.0
TARGET_P95_MS = 100.0
PAGE = 100


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def photo(index: int) -> bytes:
    """A small JPEG unique to `index` (its bits as pixels), so no two images de-duplicate."""
    image = Image.new("RGB", (320, 240), ((index * 37) % 256, (index * 91) % 256, (index * 53) % 256))
    for bit in range(16):
        if index >> bit & 1:
            image.paste((255, 255, 255), (bit * 20, 0, bit * 20 + 20, 20))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def populate(settings: Settings, count: int) -> float:
    """`count` images through the library (the upload path, in process); a quarter labeled, some
    with a split, some awaiting review. Returns the seconds it took."""
    started = time.perf_counter()
    documents, blobs = open_document_store(settings), open_blob_store(settings)
    projects = ProjectCatalog(documents)
    library = ImageLibrary(documents, blobs, projects)
    project = projects.create(PROJECT, "multiclass", tags=TAGS)
    for start in range(0, count, 250):
        batch = [(f"{i:05d}.jpg", photo(i)) for i in range(start, min(start + 250, count))]
        for i, outcome in zip(range(start, start + len(batch)), library.upload(project, batch), strict=True):
            assert outcome.image is not None, outcome.error
            image_id = outcome.image["id"]
            if i % 4 == 0:
                library.set_tags(project, image_id, [TAGS[i % len(TAGS)]], if_match=None)
            elif i % 4 == 1:
                library.set_split(project, image_id, "test" if i % 8 == 1 else "train", if_match=None)
            elif i % 20 == 2:
                library.set_suggestion(project, image_id, {
                    "model": PROJECT, "version": 1, "tags": [TAGS[0]], "regions": [], "scores": [],
                    "created_at": "2026-01-01T00:00:00+00:00"})
    documents.close()
    blobs.close()
    return time.perf_counter() - started


def timed(call: Callable[[], httpx.Response]) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = call()
    return (time.perf_counter() - started) * 1000, response


def walk(client: httpx.Client, path: str, params: dict[str, str]) -> tuple[list[float], int]:
    """Every page of `path`; the latency of each request (ms) and the images seen."""
    latencies, seen, token = [], 0, None
    while True:
        query = {**params, "limit": str(PAGE), **({"continuation": token} if token else {})}
        ms, response = timed(lambda q=query: client.get(path, params=q))
        response.raise_for_status()
        body = response.json()
        latencies.append(ms)
        seen += len(body["data"])
        token = body["continuation"]
        if not token:
            return latencies, seen


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) >= 2 else values[0]


def grid_paint(base: str, fresh_pages: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        for _ in range(fresh_pages):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/app/config.json")
            page.evaluate(f"sessionStorage.setItem('visiondock.apiKey', '{LOCAL_DEV_API_KEY}');"
                          "sessionStorage.removeItem('visiondock.filter')")
            page.goto(f"{base}/app#/p/{PROJECT}/images")
            # Painted: the first page's 60 thumbnails decoded and on screen (ms since navigation).
            painted = page.wait_for_function(
                "() => { const shown = [...document.querySelectorAll('.grid img')]"
                ".filter((i) => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0);"
                " return shown.length === 60 && performance.now(); }", timeout=60_000, polling="raf").json_value()
            times.append(painted / 1000)
            page.close()
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args()
    print(f"load average before: {load()}")
    with tempfile.TemporaryDirectory(prefix="bench-labeling-") as home:
        settings = Settings(home=Path(home), log_format="text", log_level="WARNING")
        seconds = populate(settings, args.images)
        print(f"populated {args.images:,} images in {seconds:.1f} s ({args.images / seconds:.0f} images/s, in process)")
        port = free_port()
        env = {**os.environ, "VISIONDOCK_HOME": home, "VISIONDOCK_LOG_LEVEL": "WARNING"}
        server = subprocess.Popen([sys.executable, "-m", "services.annotation", "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, headers=AUTH, timeout=30) as client:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if client.get("/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise SystemExit("the annotation service did not start")
                    time.sleep(0.2)
                report(client, base)
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"load average after: {load()}")


def report(client: httpx.Client, base: str) -> None:
    health = [timed(lambda: client.get("/healthz"))[0] for _ in range(200)]
    images = f"/v1/projects/{PROJECT}/images"
    cases = [("all images", images, {}), ("unlabeled", images, {"labeled": "false"}),
             ("tag = apple", images, {"tag": "apple"}), ("split = test", images, {"split": "test"}),
             ("awaiting review", f"/v1/projects/{PROJECT}/suggestions", {})]
    print(f"\nlist pages of {PAGE} (targets: p95 < {TARGET_P95_MS:.0f} ms)")
    print(f"{'filter':<18}{'pages':>6}{'images':>8}{'p50 ms':>9}{'p95 ms':>9}{'p95/healthz':>13}  "
          f"{'last/first page':>15}")
    worst = 0.0
    health_p95 = p95(health)
    for _, path, params in cases:  # warm-up: the first reads fill SQLite's and the OS's caches
        walk(client, path, params)
    for name, path, params in cases:
        latencies, seen = walk(client, path, params)
        worst = max(worst, p95(latencies))
        depth = latencies[-1] / latencies[0] if len(latencies) > 1 else 1.0
        print(f"{name:<18}{len(latencies):>6}{seen:>8}{statistics.median(latencies):>9.1f}{p95(latencies):>9.1f}"
              f"{p95(latencies) / health_p95:>13.1f}  {depth:>15.2f}")
    print(f"{'/healthz baseline':<18}{len(health):>6}{'':>8}{statistics.median(health):>9.1f}{health_p95:>9.1f}")
    print(f"worst list p95: {worst:.1f} ms — {'meets' if worst < TARGET_P95_MS else 'MISSES'} the target")

    cold, *warm = grid_paint(base, fresh_pages=3)
    print(f"\ngrid first paint (60 thumbnails, chromium; target < {TARGET_PAINT_S:.0f} s)")
    print(f"cold (thumbnails made on first view): {cold:.2f} s")
    print(f"warm (thumbnails from the blob store): {', '.join(f'{t:.2f}' for t in warm)} s — "
          f"{'meets' if max(warm) < TARGET_PAINT_S else 'MISSES'} the target; cold/warm {cold / min(warm):.1f}x")


if __name__ == "__main__":
    main()
