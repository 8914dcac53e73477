"""The skills' URL fetching refuses internal addresses (SSRF), connects to the address it checked,
keeps a total deadline and a cap on concurrent fetches, and says one thing about every failure.
Real HTTP servers on 127.0.0.1 stand in for the internal services an attacker would aim at."""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.scoring.fetch_guard import FETCH_FAILED, GuardedFetcher, is_public
from services.scoring.settings import ScoringSettings
from tests.scoring.conftest import AppFactory
from tests.scoring.tiny_models import solid

RED = (255, 0, 0)
PNG = solid(RED, fmt="PNG")


@dataclass
class Upstream:
    url: str
    hosts: list[str] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """/red.png (after 0.2 s, to overlap concurrent fetches), /slow (one byte a second), 404 elsewhere."""
    state = Upstream("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.hosts.append(self.headers.get("Host", ""))
                state.in_flight += 1
                state.most_in_flight = max(state.most_in_flight, state.in_flight)
            try:
                if self.path == "/red.png":
                    time.sleep(0.2)
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(PNG)))
                    self.end_headers()
                    self.wfile.write(PNG)
                elif self.path == "/big.png":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(PNG) + 4096))
                    self.end_headers()
                    self.wfile.write(PNG + b"\0" * 4096)
                elif self.path == "/slow":
                    self.send_response(200)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    for _ in range(100):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(1)
                else:
                    self.send_error(404)
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                with state.lock:
                    state.in_flight -= 1

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def _skill(client: object, urls: dict[str, str]) -> dict[str, dict]:
    request = {"values": [{"recordId": rid, "data": {"image": {"url": url}}} for rid, url in urls.items()]}
    response = client.post("/v1/skills/classify", json=request)  # type: ignore[attr-defined]
    assert response.status_code == 200, response.text
    return {v["recordId"]: v for v in response.json()["values"]}


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.0.1", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fc00::1",
                                     "::ffff:127.0.0.1", "240.0.0.1",
                                     # 6to4 and NAT64 lead to IPv4 addresses; site-local is private
                                     "2002:7f00:1::1", "2002:a00:1::1", "2002:5db8:d822::1", "64:ff9b::7f00:1",
                                     "64:ff9b:1::a00:1", "fec0::1", "feff::1"])
def test_internal_and_reserved_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


def test_public_addresses_are() -> None:
    assert is_public(ipaddress.ip_address("93.184.216.34")) and is_public(ipaddress.ip_address("2606:4700::1"))


def test_loopback_and_private_urls_are_refused_with_one_text(serve: AppFactory, models: dict[str, Path],
                                                            upstream: Upstream) -> None:
    port = upstream.url.rsplit(":", 1)[1]
    urls = {"ip": f"{upstream.url}/red.png", "name": f"http://localhost:{port}/red.png",
            "v6": f"http://[::1]:{port}/red.png", "metadata": "http://169.254.169.254/latest/meta-data/",
            "private": "http://10.255.255.1/x.png", "decimal": f"http://2130706433:{port}/red.png"}
    with serve(models["multiclass"], scoring_skill_fetch_urls=True, scoring_fetch_timeout_seconds=3) as client:
        values = _skill(client, urls)
    for record_id in urls:
        assert values[record_id]["errors"] == [{"message": FETCH_FAILED, "statusCode": 400}], record_id
    assert upstream.hosts == []  # nothing reached the internal server


def test_allowed_networks_open_the_guard_and_upstream_errors_stay_uniform(
        serve: AppFactory, models: dict[str, Path], upstream: Upstream) -> None:
    urls = {"ok": f"{upstream.url}/red.png", "missing": f"{upstream.url}/nothing.png",
            "closed": "http://127.0.0.1:1/red.png", "big": f"{upstream.url}/big.png"}
    with serve(models["multiclass"], scoring_skill_fetch_urls=True, scoring_max_body_bytes=len(PNG) + 100,
               scoring_skill_fetch_allowed_networks="127.0.0.0/8") as client:
        values = _skill(client, {**urls, "refused": "http://10.255.255.1/x.png"})
    assert values["ok"]["data"]["label"] == "red"
    # Missing, closed, too large or refused: one answer, so nobody learns which internal address answers how.
    for record_id in ("missing", "closed", "big", "refused"):
        assert values[record_id]["errors"] == [{"message": FETCH_FAILED, "statusCode": 400}], record_id


@pytest.mark.parametrize("url", ["http://[::1", "http://[::1]:99999/x.png", "http://[fe80::1%eth0/x", "http://:80/"])
def test_a_url_that_cannot_be_parsed_is_a_400(serve: AppFactory, models: dict[str, Path], url: str) -> None:
    with serve(models["multiclass"], scoring_skill_fetch_urls=True) as client:
        values = _skill(client, {"bad": url})
    assert values["bad"]["errors"][0]["statusCode"] == 400, values


def test_the_connection_goes_to_the_checked_address(tmp_path: Path, upstream: Upstream) -> None:
    """A name is resolved once; the request goes to that address with the name as Host, so a
    second DNS answer (rebinding) has nothing to redirect."""
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])  # the second answer would be used by a naive client

    async def rebinding_dns(host: str, port: int) -> list[str]:
        return next(answers)

    settings = ScoringSettings(home=tmp_path, scoring_skill_fetch_urls=True,
                               scoring_skill_fetch_allowed_networks="127.0.0.0/8")
    port = upstream.url.rsplit(":", 1)[1]

    async def fetch() -> bytes:
        fetcher = GuardedFetcher(settings, resolver=rebinding_dns)
        try:
            return await fetcher.fetch(f"http://images.example:{port}/red.png")
        finally:
            await fetcher.close()

    assert asyncio.run(fetch()) == PNG
    assert upstream.hosts == [f"images.example:{port}"]

    async def private_answer(host: str, port: int) -> list[str]:
        return ["127.0.0.1", "10.0.0.1"]

    async def refused() -> None:
        fetcher = GuardedFetcher(ScoringSettings(home=tmp_path, scoring_skill_fetch_urls=True),
                                 resolver=private_answer)
        try:
            await fetcher.fetch(f"http://images.example:{port}/red.png")
        finally:
            await fetcher.close()

    with pytest.raises(Exception, match=FETCH_FAILED):
        asyncio.run(refused())


def test_a_trickling_server_hits_the_total_deadline(serve: AppFactory, models: dict[str, Path],
                                                    upstream: Upstream) -> None:
    with serve(models["multiclass"], scoring_skill_fetch_urls=True, scoring_fetch_timeout_seconds=1.5,
               scoring_skill_fetch_allowed_networks="127.0.0.0/8") as client:
        started = time.monotonic()
        values = _skill(client, {"slow": f"{upstream.url}/slow"})
        elapsed = time.monotonic() - started
    assert values["slow"]["errors"][0]["message"] == FETCH_FAILED
    assert elapsed < 30  # the server would trickle for 100 s; each read alone is within any per-read timeout


def test_concurrent_fetches_are_capped(serve: AppFactory, models: dict[str, Path], upstream: Upstream) -> None:
    urls = {f"r{i}": f"{upstream.url}/red.png" for i in range(8)}
    with serve(models["multiclass"], scoring_skill_fetch_urls=True, scoring_skill_fetch_concurrency=2,
               scoring_skill_fetch_allowed_networks="127.0.0.0/8") as client:
        values = _skill(client, urls)
    assert all(v["data"]["label"] == "red" for v in values.values())
    assert upstream.most_in_flight == 2
