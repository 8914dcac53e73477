"""`python -m services.trainer`: the training Job's command.

Reads the project through the annotation API, trains, and registers the version
through the registry API; service URLs and the key come from VISIONDOCK_* settings
or flags. Exit codes: 0 registered, 2 the data cannot train a model, 3 a service
could not be reached or refused a call.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from visiondock.clients import AnnotationClient, RegistryClient, ServiceError
from visiondock.settings import Settings
from visiondock.telemetry import configure_logging

from .backbone import BACKBONES, DEFAULT_BACKBONE, BackboneUnavailableError
from .data import TrainingDataError
from .job import TrainingConfig, run_training

EXIT_BAD_DATA = 2
EXIT_SERVICE = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.trainer",
                                     description="Train a model from a VisionDock project and register it.")
    parser.add_argument("--project", required=True, help="the project id to train from")
    parser.add_argument("--model", help="the model name to register under (default: the project id)")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=sorted(BACKBONES))
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="share of each class held out for testing when the project sets no split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--annotation-url", help="default: VISIONDOCK_ANNOTATION_URL")
    parser.add_argument("--registry-url", help="default: VISIONDOCK_REGISTRY_URL")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    configure_logging("trainer", level=settings.log_level, fmt=settings.log_format)
    key = settings.api_key.get_secret_value()
    config = TrainingConfig(project=args.project, model=args.model, backbone=args.backbone,
                            test_fraction=args.test_fraction, seed=args.seed, threads=args.threads,
                            progress=not args.no_progress and sys.stderr.isatty())
    log = logging.getLogger("services.trainer")
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
    print(json.dumps({"model": result.model, "version": result.version,
                      "accuracy": result.metrics.get("accuracy"), "seconds": round(result.seconds, 1),
                      "skipped_images": result.skipped}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
