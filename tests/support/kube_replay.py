"""A stand-in Kubernetes API server that replays a recorded conversation over real HTTP.

The kubernetes Python client talks to it as to any API server (a kubeconfig or a Configuration with
its URL): it sends the same requests and parses the same JSON, so what is tested is the client's own
(de)serialization and our use of it, not a mock of our code.

A conversation is a list of exchanges, each a request (method and path; `$JOB` in a path matches a
Job name and is substituted in the response; in a listing by the label batch.kubernetes.io/job-name
it is that label's value) and the response (status and JSON body, or text for logs). Requests
are answered by the first exchange that matches and has not been used; the last
matching exchange answers again once the others are used up, as an API server answers a repeated
read. A response body `{"$echo": {...}}` answers with the request's body merged with those fields,
as the server does when it creates an object. A request nothing matches gets 404 and is recorded in
`unexpected`, which the tests check is empty.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

RECORDED = Path(__file__).resolve().parents[1] / "kubernetes" / "recorded"
NAME = "[a-z0-9][a-z0-9.-]*"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class Exchange:
    method: str
    path: str
    status: int
    body: Any
    used: bool = False

    def match(self, method: str, path: str) -> dict[str, str] | None:
        pattern = "^" + re.escape(self.path).replace(re.escape("$JOB"), f"(?P<job>{NAME})") + "$"
        found = re.match(pattern, path) if method == self.method else None
        return found.groupdict() if found else None


def load_conversation(name: str) -> list[Exchange]:
    exchanges = json.loads((RECORDED / f"{name}.json").read_text())["exchanges"]
    return [Exchange(e["request"]["method"], e["request"]["path"], e["response"]["status"], e["response"]["body"])
            for e in exchanges]


def _merge(base: Any, extra: Any) -> Any:
    if isinstance(base, dict) and isinstance(extra, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in extra.items()}}
    return extra


def _substitute(body: Any, values: dict[str, str]) -> Any:
    text = json.dumps(body)
    for key, value in values.items():
        text = text.replace(f"${key.upper()}", value)
    return json.loads(text)


@dataclass
class ReplayServer:
    exchanges: list[Exchange]
    requests: list[Request] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                status, answer = server.answer(Request(self.command, parts.path, parse_qs(parts.query), body))
                data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(answer, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, *args: object) -> None:  # quiet
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def answer(self, request: Request) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(request)
            candidates = [(e, m) for e in self.exchanges if (m := e.match(request.method, request.path)) is not None]
            fresh = [(e, m) for e, m in candidates if not e.used]
            if not candidates:
                self.unexpected.append(f"{request.method} {request.path}")
                return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                             "message": f"the recording has no answer to {request.method} {request.path}", "code": 404}
            exchange, values = fresh[0] if fresh else candidates[-1]
            exchange.used = True
        labels = request.query.get("labelSelector", [""])[0].split(",")
        selector = dict(part.split("=", 1) for part in labels if "=" in part)
        if "job" not in values and "batch.kubernetes.io/job-name" in selector:  # a Job's pods, listed by label
            values["job"] = selector["batch.kubernetes.io/job-name"]
        body = _substitute(exchange.body, values)
        if isinstance(body, dict) and "$echo" in body:
            body = _merge(request.body, body["$echo"])
        return exchange.status, body

    def start(self) -> ReplayServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def sent(self, method: str, path_prefix: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    def kubeconfig(self, path: Path, namespace: str) -> Path:
        """A kubeconfig pointing at this server, as `kubectl config` would write it."""
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "replay",
                  "clusters": [{"name": "replay", "cluster": {"server": self.url}}],
                  "users": [{"name": "replay", "user": {"token": "recorded"}}],
                  "contexts": [{"name": "replay", "context": {"cluster": "replay", "user": "replay",
                                                              "namespace": namespace}}]}
        path.write_text(json.dumps(config))
        return path
