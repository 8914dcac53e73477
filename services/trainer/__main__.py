"""`python -m services.trainer`: the training Job's command.

Reads the project through the annotation API, trains, and registers the version
through the registry API, reporting progress on a training run there (`--run-id`
for a run the launcher created, otherwise a new one). The training flags are
`TrainingOptions`' (`options.py`; `TrainingOptions.to_argv()` writes this command line).
Service URLs and the key come from VISIONDOCK_* settings or flags; the feature cache
directory from VISIONDOCK_TRAINER_CACHE_DIR (default <home>/feature-cache) or --cache-dir.

Exit codes: 0 registered; 2 the options or the data cannot train a model (an option
that does not apply, no labeled images, a class with fewer than two images...), or
the command line is wrong; 3 a service refused a call, or stayed unreachable for
SERVICE_RETRY_SECONDS (a restart or rollout of the registry or the annotation
service in between is waited out); 4 training failed otherwise (e.g. the ONNX parity check); 143 stopped by
SIGTERM, 130 by Ctrl-C. The run is marked failed in every non-zero case it can
reach the registry, and nothing is registered.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import sys
from types import FrameType

from visiondock.clients import AnnotationClient, RegistryClient, ServiceError
from visiondock.images import limit_concurrent_decodes
from visiondock.job_contract import project_from_environment
from visiondock.settings import Settings
from visiondock.telemetry import configure_logging

from .backbone import BackboneUnavailableError
from .data import TrainingDataError
from .job import TrainingTerminated, run_training
from .options import OptionError, TrainingOptions

EXIT_BAD_DATA = 2
EXIT_SERVICE = 3
EXIT_FAILED = 4
EXIT_TERMINATED = 143
EXIT_INTERRUPTED = 130
# How long the trainer keeps retrying a service that does not answer before the Job fails (exit 3).
SERVICE_RETRY_SECONDS = 300.0


def build_parser() -> argparse.ArgumentParser:
    # No abbreviations: `--registry-ur` must not become `--registry-url` (see TrainingOptions.add_arguments).
    parser = argparse.ArgumentParser(prog="python -m services.trainer", allow_abbrev=False,
                                     description="Train a model from a VisionDock project and register it.")
    TrainingOptions.add_arguments(parser)
    parser.add_argument("--annotation-url", help="default: VISIONDOCK_ANNOTATION_URL")
    parser.add_argument("--registry-url", help="default: VISIONDOCK_REGISTRY_URL")
    return parser


def _terminate(signum: int, _: FrameType | None) -> None:
    raise TrainingTerminated(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    # In a Job made from the chart's trainer CronJob the project comes from its environment or its name.
    project = project_from_environment()
    if project is not None and "--project" not in argv:
        argv = ["--project", project, *argv]
    args = parser.parse_args(argv)
    try:
        options = TrainingOptions.from_args(args)
    except OptionError as exc:
        parser.error(str(exc))
    if not sys.stderr.isatty():  # bars only for a person watching
        options = dataclasses.replace(options, progress=False)
    settings = Settings()
    configure_logging("trainer", level=settings.log_level, fmt=settings.log_format)
    limit_concurrent_decodes(settings.max_concurrent_decodes)
    key = settings.api_key.get_secret_value()
    log = logging.getLogger("services.trainer")
    # Kubernetes stops a Job's pod with SIGTERM: fail the run cleanly instead of vanishing mid-step.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        with AnnotationClient(args.annotation_url or settings.annotation_url, key,
                              retry_seconds=SERVICE_RETRY_SECONDS) as annotation, \
                RegistryClient(args.registry_url or settings.registry_url, key,
                               retry_seconds=SERVICE_RETRY_SECONDS) as registry:
            result = run_training(options, annotation, registry)
    except (TrainingDataError, OptionError, BackboneUnavailableError) as exc:
        log.error("cannot train: %s", exc)
        return EXIT_BAD_DATA
    except ServiceError as exc:
        log.error("service call failed: %s", exc)
        return EXIT_SERVICE
    except TrainingTerminated:
        log.error("stopped by SIGTERM; nothing was registered")
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        log.exception("training failed: %s", exc)
        return EXIT_FAILED
    print(json.dumps({"model": result.model, "version": result.version, "run_id": result.run_id,
                      "task": result.task, "accuracy": result.metrics.get("accuracy"),
                      "map_50": result.metrics.get("map_50"), "variants": result.variants,
                      "seconds": round(result.seconds, 1), "features": result.report.get("features"),
                      "skipped_images": result.skipped, "no_face": result.report.get("no_face")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
