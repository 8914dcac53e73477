"""`python -m services.trainer`: the training Job's command.

Reads the project through the annotation API, trains, and registers the version
through the registry API, reporting progress on a training run there (`--run-id`
for a run the launcher created, otherwise a new one). Service URLs and the key come
from VISIONDOCK_* settings or flags; the feature cache directory from
VISIONDOCK_TRAINER_CACHE_DIR (default <home>/feature-cache) or --cache-dir.

Exit codes: 0 registered; 2 the data cannot train a model (no labeled images, a
class with fewer than two images...); 3 a service could not be reached or refused a
call; 4 training failed otherwise (e.g. the ONNX parity check); 143 stopped by
SIGTERM, 130 by Ctrl-C. The run is marked failed in every non-zero case it can
reach the registry, and nothing is registered.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from visiondock.clients import AnnotationClient, RegistryClient, ServiceError
from visiondock.job_contract import project_from_environment
from visiondock.settings import Settings
from visiondock.telemetry import configure_logging

from .backbone import BackboneUnavailableError
from .config import TrainingConfig
from .data import TrainingDataError
from .flags import add_training_flags, training_values
from .job import TrainingTerminated, run_training

EXIT_BAD_DATA = 2
EXIT_SERVICE = 3
EXIT_FAILED = 4
EXIT_TERMINATED = 143
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.trainer",
                                     description="Train a model from a VisionDock project and register it.")
    # In a Job made from the chart's trainer CronJob the project comes from its environment or name.
    project = project_from_environment()
    parser.add_argument("--project", required=project is None, default=project,
                        help="the project id to train from (default: $VISIONDOCK_TRAINER_PROJECT, or the "
                             "Kubernetes Job's name train-PROJECT)")
    parser.add_argument("--model", help="the model name to register under (default: the project id)")
    add_training_flags(parser)
    parser.add_argument("--run-id", help="report on this training run (created queued by the launcher)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--cache-dir", type=Path, help="feature cache (default: VISIONDOCK_TRAINER_CACHE_DIR)")
    parser.add_argument("--annotation-url", help="default: VISIONDOCK_ANNOTATION_URL")
    parser.add_argument("--registry-url", help="default: VISIONDOCK_REGISTRY_URL")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    return parser


def _terminate(signum: int, _: FrameType | None) -> None:
    raise TrainingTerminated(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    configure_logging("trainer", level=settings.log_level, fmt=settings.log_format)
    key = settings.api_key.get_secret_value()
    config = TrainingConfig(**training_values(args), run_id=args.run_id, threads=args.threads,
                            cache_dir=args.cache_dir, progress=not args.no_progress and sys.stderr.isatty())
    log = logging.getLogger("services.trainer")
    # Kubernetes stops a Job's pod with SIGTERM: fail the run cleanly instead of vanishing mid-step.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        with AnnotationClient(args.annotation_url or settings.annotation_url, key) as annotation, \
                RegistryClient(args.registry_url or settings.registry_url, key) as registry:
            result = run_training(config, annotation, registry)
    except (TrainingDataError, BackboneUnavailableError) as exc:
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
