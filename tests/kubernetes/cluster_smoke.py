"""`make cluster-smoke`: the first-install checks of docs/verify-on-a-cluster.md, against the current kube context.

    python -m tests.kubernetes.cluster_smoke [--namespace visiondock] [--release visiondock]
        [--annotation-url URL --scoring-url URL --api-key KEY] [--only NAME ...]

Each check prints one line, `ok`, `FAILED` or `skipped` with what it saw:

- gpu-nodes:        every node the release's GPU pods may land on advertises an allocatable nvidia.com/gpu
                    (the device plugin runs there);
- ready:            every Deployment of the release has all its replicas ready and updated (`helm --wait`);
- network-policies: every pod of the release is selected by a NetworkPolicy of its component;
- failure-reasons:  a Job made from the trainer template that goes over its memory limit fails as OOMKilled,
                    one that outlives its deadline as DeadlineExceeded, as the registry reports them on runs;
- train-in-the-app: (needs --annotation-url and --api-key, an admin key) a project of generated shapes
                    trained through the labeling app's registry proxy on a Kubernetes Job, its version
                    promoted, and predicted by scoring when scoring serves it (--scoring-url);
- rollout:          (needs --scoring-url, --api-key and a served model) the scoring Deployment restarted
                    while clients send predictions: every request is answered 200.

The Kubernetes side goes through the kubernetes client only (tests/kubernetes/test_cluster_smoke.py
replays it offline); the HTTP side through the public hosts or `kubectl port-forward`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from kubernetes import client, config

from services.registry.kubernetes_jobs import TrainingJobLauncher
from visiondock.job_contract import TRAINER_CONTAINER

INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"
SMOKE_LABEL = "visiondock.io/smoke"


@dataclass
class Check:
    name: str
    ok: bool | None  # None: skipped
    detail: str

    def line(self) -> str:
        verdict = "skipped" if self.ok is None else "ok" if self.ok else "FAILED"
        return f"{self.name:<17} {verdict:<8} {self.detail}"


@dataclass
class ClusterSmoke:
    api: client.ApiClient
    namespace: str = "visiondock"
    release: str = "visiondock"
    annotation_url: str | None = None
    scoring_url: str | None = None
    api_key: str | None = None
    timeout: float = 600.0
    poll_seconds: float = 5.0
    log: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))

    def __post_init__(self) -> None:
        self.apps = client.AppsV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.networking = client.NetworkingV1Api(self.api)
        self.fullname = self.release if "visiondock" in self.release else f"{self.release}-visiondock"
        self.selector = f"{INSTANCE}={self.release}"

    # -- checks ---------------------------------------------------------------------------------
    def gpu_nodes(self) -> Check:
        specs = [d.spec.template.spec for d in self.apps.list_namespaced_deployment(
            self.namespace, label_selector=self.selector).items]
        specs += [c.spec.job_template.spec.template.spec for c in self.batch.list_namespaced_cron_job(
            self.namespace, label_selector=self.selector).items]
        gpu_specs = [s for s in specs if any("nvidia.com/gpu" in ((c.resources and c.resources.limits) or {})
                                             for c in s.containers)]
        if not gpu_specs:
            return Check("gpu-nodes", None, "the release runs nothing on a GPU")
        selectors = {tuple(sorted((s.node_selector or {}).items())) for s in gpu_specs}
        lines, ok = [], True
        for selector in selectors:
            label = ",".join(f"{k}={v}" for k, v in selector)
            nodes = self.core.list_node(label_selector=label or None).items
            if not nodes:
                ok = False
                lines.append(f"no node has {label} (the GPU pool has no node yet, or lacks that label)")
            for node in nodes:
                gpus = int((node.status.allocatable or {}).get("nvidia.com/gpu", "0"))
                ok &= gpus >= 1
                lines.append(f"{node.metadata.name}: {gpus} nvidia.com/gpu" + (
                    "" if gpus else " (no device plugin pod on it: see docs/deploy-aks.md, device plugin)"))
        return Check("gpu-nodes", ok, "; ".join(lines))

    def ready(self) -> Check:
        deployments = self.apps.list_namespaced_deployment(self.namespace, label_selector=self.selector).items
        if not deployments:
            return Check("ready", False, f"no Deployment of release {self.release} in {self.namespace}")
        lines, ok = [], True
        for d in deployments:
            wanted, status = d.spec.replicas or 0, d.status
            ready, updated = status.ready_replicas or 0, status.updated_replicas or 0
            ok &= ready == wanted and updated == wanted
            lines.append(f"{d.metadata.name} {ready}/{wanted} ready")
        return Check("ready", ok, ", ".join(lines))

    def network_policies(self) -> Check:
        policies = self.networking.list_namespaced_network_policy(self.namespace, label_selector=self.selector).items
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).items
        unguarded = []
        for pod in pods:
            labels = pod.metadata.labels or {}
            if not any(all(labels.get(k) == v for k, v in (p.spec.pod_selector.match_labels or {}).items())
                       for p in policies):
                unguarded.append(pod.metadata.name)
        components = sorted({(p.metadata.labels or {}).get(COMPONENT, "?") for p in pods})
        if unguarded:
            return Check("network-policies", False, f"no policy selects {', '.join(unguarded)}")
        return Check("network-policies", bool(pods), f"{len(policies)} policies over {len(pods)} pods of "
                                                     f"{', '.join(components)}")

    def failure_reasons(self) -> Check:
        launcher = TrainingJobLauncher(self.api, namespace=self.namespace, cronjob=f"{self.fullname}-trainer")
        template = launcher.template()
        suffix = uuid.uuid4().hex[:6]
        made = {"OOMKilled": self._job(launcher, template, f"smoke-oom-{suffix}", oom=True),
                "DeadlineExceeded": self._job(launcher, template, f"smoke-deadline-{suffix}", oom=False)}
        lines, ok = [], True
        try:
            for wanted, name in made.items():
                state = self._final_state(launcher, name)
                ok &= state is not None and state.reason == wanted
                lines.append(f"{name}: {state.phase + ' ' + str(state.reason) if state else 'still running'}"
                             f" (wanted failed {wanted})")
        finally:
            for name in made.values():
                self.batch.delete_namespaced_job(name, self.namespace, propagation_policy="Background")
        return Check("failure-reasons", ok, "; ".join(lines))

    def train_in_the_app(self) -> Check:
        if not (self.annotation_url and self.api_key):
            return Check("train-in-the-app", None, "needs --annotation-url and --api-key")
        import httpx

        from cli.synthetic import samples
        from visiondock.clients import AnnotationClient

        project = f"smoke-{uuid.uuid4().hex[:6]}"
        with AnnotationClient(self.annotation_url, self.api_key) as annotation:
            annotation.create_project(project, "multiclass", tags=["circle", "square"])
            chosen = [s for s in samples(per_class=16, seed=7) if s.label in ("circle", "square")]
            for sample in chosen:
                annotation.upload_images(project, [(f"{uuid.uuid4().hex}.jpg", sample.jpeg)], tags=[sample.label])
        app = httpx.Client(base_url=f"{self.annotation_url.rstrip('/')}/app/registry/v1",
                           headers={"X-API-Key": self.api_key}, timeout=60)
        with app:
            run = app.post("/runs", json={"model": project, "params": {}, "launch": {"on": "kubernetes"}})
            if run.status_code != 201:
                return Check("train-in-the-app", False, f"starting the run: {run.status_code} {run.text[:300]}")
            run_id = run.json()["id"]
            deadline = time.monotonic() + self.timeout
            status = run.json()
            while status["status"] not in ("succeeded", "failed", "cancelled", "lost") and time.monotonic() < deadline:
                time.sleep(self.poll_seconds)
                status = app.get(f"/runs/{run_id}").json()
            if status["status"] != "succeeded":
                return Check("train-in-the-app", False, f"run {run_id} {status['status']}: {status.get('error')} "
                                                        f"(job {status.get('job')})")
            version = status["version"]
            promoted = app.put(f"/models/{project}/aliases/production", json={"version": version,
                                                                             "reason": "cluster smoke"})
            if promoted.status_code != 200:
                return Check("train-in-the-app", False, f"promoting: {promoted.status_code} {promoted.text[:300]}")
        detail = f"{project} version {version} trained on job/{status['job']['name']} and promoted"
        if self.scoring_url:
            predicted = self._predict_until(project, chosen[0].jpeg)
            return Check("train-in-the-app", predicted, detail + ("; scoring answers for it" if predicted else
                         "; scoring does not serve it (scoring.models: [\"*@production\"] would)"))
        return Check("train-in-the-app", True, detail)

    def rollout(self) -> Check:
        if not (self.scoring_url and self.api_key):
            return Check("rollout", None, "needs --scoring-url and --api-key")
        import httpx

        from cli.synthetic import samples

        image = next(samples(per_class=1, seed=3)).jpeg
        name = f"{self.fullname}-scoring"
        answers: dict[int | str, int] = {}
        stop = threading.Event()
        lock = threading.Lock()

        def client_loop() -> None:
            with httpx.Client(base_url=self.scoring_url, headers={"X-API-Key": self.api_key}, timeout=30) as http:
                while not stop.is_set():
                    try:
                        status: int | str = http.post("/v1/predict", files={"file": ("x.jpg", image)}).status_code
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    with lock:
                        answers[status] = answers.get(status, 0) + 1

        threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(5)  # load before the rollout
        before = self.apps.read_namespaced_deployment(name, self.namespace)
        stamp = dt.datetime.now(dt.UTC).isoformat()
        self.apps.patch_namespaced_deployment(name, self.namespace, {"spec": {"template": {"metadata": {
            "annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}})
        done = self._rolled_out(name, before.metadata.generation or 0)
        time.sleep(5)  # load after it
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        failed = {k: v for k, v in answers.items() if k != 200}
        detail = f"answers {answers} during a restart of deployment/{name}"
        if not done:
            return Check("rollout", False, f"the rollout did not finish in {self.timeout:.0f} s; {detail}")
        return Check("rollout", not failed and answers.get(200, 0) > 0, detail)

    CHECKS = ("gpu-nodes", "ready", "network-policies", "failure-reasons", "train-in-the-app", "rollout")

    def run(self, only: list[str] | None = None) -> list[Check]:
        methods = {"gpu-nodes": self.gpu_nodes, "ready": self.ready, "network-policies": self.network_policies,
                   "failure-reasons": self.failure_reasons, "train-in-the-app": self.train_in_the_app,
                   "rollout": self.rollout}
        results = []
        for name in only or self.CHECKS:
            try:
                check = methods[name]()
            except Exception as exc:  # a check that cannot run says why; the others still run
                check = Check(name, False, f"{type(exc).__name__}: {exc}")
            self.log(check.line())
            results.append(check)
        return results

    # -- helpers --------------------------------------------------------------------------------
    def _job(self, launcher: TrainingJobLauncher, template: client.V1CronJob, name: str, *, oom: bool) -> str:
        job = launcher.job_from(template, name=name, project="smoke", controlled=False)
        job.metadata.labels = {**(job.metadata.labels or {}), SMOKE_LABEL: "true"}
        job.spec.backoff_limit = 0
        trainer = next(c for c in job.spec.template.spec.containers if c.name == TRAINER_CONTAINER)
        trainer.args = []
        if oom:  # touch 1 GiB under a 256 MiB limit
            trainer.command = ["python", "-c", "data = bytearray(1 << 30); print(len(data))"]
            trainer.resources.limits = {**trainer.resources.limits, "memory": "256Mi"}
            trainer.resources.requests = {**trainer.resources.requests, "memory": "256Mi"}
        else:
            trainer.command = ["sleep", "3600"]
            job.spec.active_deadline_seconds = 20
        self.batch.create_namespaced_job(self.namespace, job)
        return name

    def _final_state(self, launcher: TrainingJobLauncher, name: str):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + self.timeout
        while True:
            state = launcher.state(name)
            if state.phase in ("succeeded", "failed"):
                return state
            if time.monotonic() > deadline:
                return None
            time.sleep(self.poll_seconds)

    def _rolled_out(self, name: str, generation: int) -> bool:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            time.sleep(self.poll_seconds)
            d = self.apps.read_namespaced_deployment(name, self.namespace)
            wanted, status = d.spec.replicas or 0, d.status
            if (status.observed_generation or 0) > generation and (status.updated_replicas or 0) == wanted \
                    and (status.ready_replicas or 0) == wanted and (status.replicas or 0) == wanted:
                return True
        return False

    def _predict_until(self, model: str, image: bytes) -> bool:
        import httpx

        deadline = time.monotonic() + min(self.timeout, 120)
        with httpx.Client(base_url=self.scoring_url or "", headers={"X-API-Key": self.api_key or ""}) as http:
            while time.monotonic() < deadline:
                answer = http.post(f"/v1/models/{model}/predict", files={"file": ("x.jpg", io.BytesIO(image))})
                if answer.status_code == 200:
                    return True
                time.sleep(self.poll_seconds)  # the pods find a new production alias at their next poll
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kubernetes.cluster_smoke",
                                     description="First-install checks against the current kube context.")
    parser.add_argument("--namespace", default="visiondock")
    parser.add_argument("--release", default="visiondock")
    parser.add_argument("--annotation-url", help="the annotation service (public host or port-forward)")
    parser.add_argument("--scoring-url", help="the scoring service, through its public host (rollout)")
    parser.add_argument("--api-key", help="an admin key (train-in-the-app promotes a version)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a check may wait (default 900)")
    parser.add_argument("--only", nargs="+", choices=ClusterSmoke.CHECKS, help="run only these checks")
    args = parser.parse_args(argv)
    config.load_kube_config()
    smoke = ClusterSmoke(client.ApiClient(), namespace=args.namespace, release=args.release,
                         annotation_url=args.annotation_url, scoring_url=args.scoring_url, api_key=args.api_key,
                         timeout=args.timeout)
    results = smoke.run(args.only)
    failed = [check.name for check in results if check.ok is False]
    print(f"{len(results) - len(failed)} of {len(results)} checks passed or skipped" +
          (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
