"""The `visiondock` command line.

    visiondock up                      start the services locally (Ctrl-C stops them)
    visiondock demo                    the whole loop on generated images
    visiondock project create NAME --type multiclass
    visiondock import PROJECT PATH --format folder|coco|voc|yolo|csv|product
    visiondock export PROJECT OUT.zip --format coco
    visiondock tag rename|delete PROJECT TAG ...
    visiondock project delete PROJECT --yes
    visiondock train PROJECT
    visiondock promote MODEL VERSION --alias production
    visiondock rollback MODEL --alias production
    visiondock models MODEL [VERSION]  versions with their estimate; one version: how it was chosen
    visiondock models compare MODEL V1 V2
    visiondock label-issues MODEL VERSION
    visiondock runs [RUN_ID] [--follow]
    visiondock dashboard               print the dashboard's URL
    visiondock predict IMAGE...
    visiondock key new NAME --role predict [--scope MODEL]
    visiondock fsck [--repair]         storage consistency (reads the VISIONDOCK_* storage settings)
    visiondock purge-captures          delete captured predictions past the retention period

Services are found at VISIONDOCK_ANNOTATION_URL / _REGISTRY_URL / _SCORING_URL
(default http://127.0.0.1:8701, 8702, 8703), or the --*-url flags.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from cli.version_summary import print_training_result, print_version, summary_of
from visiondock.clients import AnnotationClient, RegistryClient, ScoringClient, ServiceError
from visiondock.settings import DEFAULT_PORTS, Settings
from visiondock.vocabulary import PROJECT_TYPES

if TYPE_CHECKING:  # imported where used: the CLI starts fast without the trainer's modules
    from services.trainer.options import TrainingOptions

EXIT_USAGE = 2
EXIT_FAILED = 1
# The `add_subparsers()` action each command group adds its commands to.
Commands = Any

def _settings() -> Settings:
    return Settings()


def _key(args: argparse.Namespace) -> str:
    return args.api_key or _settings().api_key.get_secret_value()


def _annotation(args: argparse.Namespace) -> AnnotationClient:
    return AnnotationClient(args.annotation_url or _settings().annotation_url, _key(args))


def _registry(args: argparse.Namespace) -> RegistryClient:
    return RegistryClient(args.registry_url or _settings().registry_url, _key(args))


def _scoring(args: argparse.Namespace) -> ScoringClient:
    return ScoringClient(args.scoring_url or _settings().scoring_url, _key(args))


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _command(parent: Commands, name: str, handler: Callable[[argparse.Namespace], int],
             help_text: str) -> argparse.ArgumentParser:
    sub: argparse.ArgumentParser = parent.add_parser(name, help=help_text, description=help_text)
    sub.set_defaults(handler=handler)
    return sub

# -- the services on this machine --------------------------------------------------------------

def cmd_up(args: argparse.Namespace) -> int:
    from cli.local_services import SERVE_EVERY_PRODUCTION_MODEL, SERVICES, LaunchError, LocalServices

    settings = _settings()
    home = Path(args.home) if args.home else settings.home
    ports = {name: getattr(args, f"{name}_port") for name in SERVICES}
    # Without --model, scoring serves every model with a production alias, including ones promoted later.
    services = LocalServices(home=home, host=args.host, ports=ports, scoring_model=args.model or "",
                             scoring_models="" if args.model else SERVE_EVERY_PRODUCTION_MODEL)
    stopping = False

    def on_signal(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        services.start()
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print("VisionDock is running:")
    for name in SERVICES:
        print(f"  {name:<11} {services.url(name)}   (API docs: {services.url(name)}/docs)")
    print(f"  labeling app {services.url('annotation')}/app")
    print(f"  data in {home}, logs in {services.log_dir}")
    if not args.model:
        print("  the scoring service serves every model with a production alias, at /v1/models/NAME/predict "
              "(visiondock predict --model NAME)")
    else:
        print(f"  the scoring service serves {args.model}@production once that alias is set")
    print("Press Ctrl-C to stop.", flush=True)
    while not stopping:
        exited = services.first_exited()
        if exited:
            print(f"error: the {exited} service stopped; see {services.log_dir / (exited + '.log')}",
                  file=sys.stderr)
            services.stop()
            return EXIT_FAILED
        time.sleep(0.5)
    print("stopping…", flush=True)
    services.stop()
    print("stopped.")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from cli.demo import run_demo

    accuracy = run_demo(home=Path(args.home) if args.home else None, per_class=args.per_class,
                        heldout_per_class=args.heldout_per_class, keep=args.keep)
    # Four classes: chance is 25 %. A model that did not learn is a failed demo.
    return 0 if accuracy >= 0.5 else EXIT_FAILED


def add_service_commands(commands: Commands) -> None:
    up = _command(commands, "up", cmd_up, "start the annotation, registry and scoring services on this machine")
    up.add_argument("--home", help="data directory (default: $VISIONDOCK_HOME or ~/.visiondock)")
    up.add_argument("--model", help="the model the scoring service serves (its production alias)")
    up.add_argument("--host", default="127.0.0.1")
    for name, port in DEFAULT_PORTS.items():
        up.add_argument(f"--{name}-port", type=int, default=port)

    demo = _command(commands, "demo", cmd_demo, "run the whole loop on generated images and print held-out accuracy")
    demo.add_argument("--home", help="keep the demo's data here instead of a scratch directory")
    demo.add_argument("--per-class", type=int, default=40, help="images per class to train from")
    demo.add_argument("--heldout-per-class", type=int, default=15, help="images per class to score")
    demo.add_argument("--keep", action="store_true", help="keep the scratch directory")

# -- projects and tags -------------------------------------------------------------------------

def cmd_project_create(args: argparse.Namespace) -> int:
    tags = [t.strip() for t in (args.tags or "").split(",") if t.strip()]
    with _annotation(args) as client:
        _print_json(client.create_project(args.name, args.type, description=args.description or "", tags=tags))
    return 0


def cmd_project_list(args: argparse.Namespace) -> int:
    with _annotation(args) as client:
        for project in client.list_projects():
            print(f"{project['id']:<32} {project['type']:<11} {project['created_at']}")
    return 0


def cmd_project_delete(args: argparse.Namespace) -> int:
    with _annotation(args) as client:
        answer = client.delete_project(args.name, confirm=args.yes)
    print(f"deleted project {args.name!r}: {answer['images_deleted']} images, "
          f"{answer['review_items_deleted']} review items")
    return 0


def cmd_tag_rename(args: argparse.Namespace) -> int:
    with _annotation(args) as client:
        answer = client.rename_tag(args.project, args.tag, args.new_name, merge=args.merge)
    print(f"renamed {args.tag!r} to {answer['name']!r} on {answer['images_changed']} images")
    return 0


def cmd_tag_delete(args: argparse.Namespace) -> int:
    with _annotation(args) as client:
        answer = client.delete_tag(args.project, args.tag, confirm=args.yes)
    print(f"deleted tag {args.tag!r}; {answer['images_changed']} images changed")
    return 0


def add_project_commands(commands: Commands) -> None:
    project = commands.add_parser("project", help="create, list and delete projects").add_subparsers(
        dest="project_command", required=True, metavar="ACTION")
    create = _command(project, "create", cmd_project_create, "create a project")
    create.add_argument("name", help="lowercase letters, digits and '-'")
    create.add_argument("--type", required=True, choices=PROJECT_TYPES)
    create.add_argument("--tags", help="comma-separated tags to create with it")
    create.add_argument("--description")
    _command(project, "list", cmd_project_list, "list projects")
    delete_project = _command(project, "delete", cmd_project_delete,
                              "delete a project with its images and review items")
    delete_project.add_argument("name")
    delete_project.add_argument("--yes", action="store_true", help="go on although it has images")

    tag = commands.add_parser("tag", help="rename and delete tags").add_subparsers(
        dest="tag_command", required=True, metavar="ACTION")
    rename = _command(tag, "rename", cmd_tag_rename, "rename a tag on every image")
    rename.add_argument("project")
    rename.add_argument("tag")
    rename.add_argument("new_name")
    rename.add_argument("--merge", action="store_true", help="allow renaming into an existing tag")
    delete_tag = _command(tag, "delete", cmd_tag_delete, "delete a tag and take it off every image")
    delete_tag.add_argument("project")
    delete_tag.add_argument("tag")
    delete_tag.add_argument("--yes", action="store_true", help="go on although images carry the tag")

# -- datasets ----------------------------------------------------------------------------------

def cmd_import(args: argparse.Namespace) -> int:
    from cli.importer import DatasetFormatError, import_dataset

    with _annotation(args) as client:
        try:
            report = import_dataset(client, args.project, Path(args.path), args.format, split=args.split,
                                    replace_labels=args.replace_labels)
        except (DatasetFormatError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    print(f"imported {report['created']} images, {report['duplicates']} already there "
          f"({report['unchanged']} with the same labels), {report['labeled']} labeled, "
          f"{report['unlabeled']} without labels, {report['boxes']} boxes, {len(report['skipped'])} skipped")
    if report["tags_created"]:
        print(f"  new tags: {', '.join(report['tags_created'])}")
    for item in report["skipped"]:
        print(f"  skipped {item['path']}: {item['reason']}")
    for item in report["conflicts"]:
        print(f"  kept the labels of {item['path']}: {item['reason']}")
    for item in report["notes"]:
        print(f"  note: {item['path']}: {item['note']}" if item["path"] else f"  note: {item['note']}")
    return 0


def _snapshot_ids(args: argparse.Namespace, annotation: AnnotationClient) -> list[str]:
    """The image ids of a version's dataset snapshot; warns about images relabeled since it was taken."""
    model, _, version = args.snapshot.partition(":")
    if not version.isdigit():
        raise SystemExit(f"error: --snapshot takes MODEL:VERSION, e.g. flowers:3; got {args.snapshot!r}")
    with _registry(args) as registry:
        snapshot = registry.get_lineage(model, int(version))["dataset"]
    then = {image["id"]: image["label_revision"] for image in snapshot["images"]}
    now = {image["id"]: image.get("label_revision", 0) for image in annotation.list_images(args.project)}
    gone = [image_id for image_id in then if image_id not in now]
    if gone:
        raise SystemExit(f"error: {len(gone)} images of {model} version {version}'s snapshot are no longer in "
                         f"project {args.project!r} (e.g. {gone[0]})")
    relabeled = sum(1 for image_id, revision in then.items() if now[image_id] != revision)
    if relabeled:
        print(f"warning: {relabeled} of the snapshot's images were relabeled since {model} version {version} "
              "learned from them; the export carries their labels as they are now", file=sys.stderr)
    return sorted(then)


def cmd_export(args: argparse.Namespace) -> int:
    if sum(bool(x) for x in (args.image_ids, args.snapshot, args.split)) > 1:
        print("error: choose one of --split, --image-ids and --snapshot", file=sys.stderr)
        return EXIT_USAGE
    with _annotation(args) as client:
        ids = None
        if args.image_ids:
            ids = [line.strip() for line in Path(args.image_ids).read_text().splitlines() if line.strip()]
        elif args.snapshot:
            ids = _snapshot_ids(args, client)
        counts = client.export_dataset(args.project, args.format, Path(args.output), split=args.split, image_ids=ids)
    left_out = f" ({counts['left_out']} left out: unlabeled, or not expressible in {args.format})" \
        if counts["left_out"] else ""
    print(f"exported {counts['images']} images to {args.output}{left_out}")
    return 0


def add_dataset_commands(commands: Commands) -> None:
    from services.annotation.datasets import FORMATS

    formats = "; ".join(f"{f.name}: {f.summary}" for f in FORMATS.values())
    imp = _command(commands, "import", cmd_import, "import a dataset (a folder or a zip file) into a project")
    imp.add_argument("project")
    imp.add_argument("path", help="the dataset's folder, or a zip file of it")
    imp.add_argument("--format", default="folder", choices=list(FORMATS), help=formats)
    imp.add_argument("--split", choices=["train", "test"], help="put every new image in this split")
    imp.add_argument("--replace-labels", action="store_true",
                     help="relabel images already in the project with other labels (default: keep theirs)")

    exp = _command(commands, "export", cmd_export,
                   "export a project's labeled images as a zip file in a dataset format")
    exp.add_argument("project")
    exp.add_argument("output", help="the zip file to write")
    exp.add_argument("--format", required=True, choices=list(FORMATS), help=formats)
    exp.add_argument("--split", choices=["train", "test", "none"], help="only this split's images")
    exp.add_argument("--image-ids", help="a file of image ids, one a line: exactly these images")
    exp.add_argument("--snapshot", metavar="MODEL:VERSION",
                     help="exactly the images a model version learned from (its lineage's dataset snapshot)")

# -- training ----------------------------------------------------------------------------------

def cmd_train(args: argparse.Namespace) -> int:
    from services.trainer.options import OptionError, TrainingOptions

    try:
        options = TrainingOptions.from_args(args)
    except OptionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.on == "kubernetes":
        return train_on_kubernetes(args, options)
    try:
        from services.trainer.data import TrainingDataError
        from services.trainer.job import run_training
    except ImportError as exc:
        print(f"error: training needs the trainer extra (pip install 'visiondock[trainer]'): {exc}",
              file=sys.stderr)
        return EXIT_FAILED
    try:
        with _annotation(args) as annotation, _registry(args) as registry:
            result = run_training(options, annotation, registry)
    except (TrainingDataError, OptionError) as exc:
        print(f"error: cannot train: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print_training_result(result)
    return 0


def train_on_kubernetes(args: argparse.Namespace, options: TrainingOptions) -> int:
    """Ask the registry to start the training as a Job from the chart's trainer template, then follow it.
    The options chosen travel as the run's params; the Job's trainer gets them as its flags."""
    with _registry(args) as registry:
        run = registry.create_run(options.model_name, project_id=options.project, params=options.chosen(),
                                  launch={"on": "kubernetes", "gpu": args.gpu})
        job = run["job"]
        print(f"run {run['id']}: job/{job['name']} in namespace {job['namespace']}", flush=True)
        if args.detach:
            print(f"follow it with: kubectl logs -f job/{job['name']} -n {job['namespace']}")
            return 0
        seen = ""
        while run["status"] not in ("succeeded", "failed"):
            time.sleep(args.poll_seconds)
            run = registry.get_run(run["id"])
            job = run["job"] or {}
            line = " ".join(str(part) for part in (run["status"], run.get("stage") or "", job.get("phase", ""),
                                                   job.get("reason") or "") if part)
            if run.get("epoch") is not None and run.get("epochs"):
                line += f" epoch {run['epoch']}/{run['epochs']}"
            if line != seen:
                print(f"  {line}", flush=True)
                seen = line
    if run["status"] == "failed":
        print(f"error: the training failed: {run['error']}", file=sys.stderr)
        return EXIT_FAILED
    print(f"registered {run['model']} version {run['version']} (run {run['id']})")
    print(f"promote it with: visiondock promote {run['model']} {run['version']} --alias production")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    with _registry(args) as client:
        if args.run:
            return _follow_run(client, args.run, follow=args.follow)
        while True:
            runs = client.list_runs(model=args.model)[: args.limit]
            for run in runs:
                progress = f"epoch {run['epoch']}/{run['epochs']}" if run.get("epochs") else ""
                version = f"v{run['version']}" if run.get("version") else ""
                print(f"{run['id']}  {run['model']:<24} {run['status']:<10} {run.get('stage') or '':<10} "
                      f"{progress:<13} {version:<5} {run['created_at']}", flush=True)
            if not args.follow or not any(run["status"] in ("queued", "running") for run in runs):
                return 0
            time.sleep(args.interval)
            print(flush=True)


def _follow_run(client: RegistryClient, run_id: str, *, follow: bool) -> int:
    """Print a run's log: its last lines, then with `follow` each new line until the run ends."""
    log = {"next": 0}
    first = True
    while True:
        run = client.get_run(run_id)  # read before the log, so no line written before it ends is missed
        log = client.run_log(run_id, tail=50) if first else client.run_log(run_id, after=log["next"])
        first = False
        for line in log["lines"]:
            print(line["text"], flush=True)
        if not follow or run["status"] not in ("queued", "running"):
            break
        time.sleep(1.0)
    outcome = f": version {run['version']}" if run.get("version") else f": {run['error']}" if run.get("error") else ""
    print(f"{run_id} {run['status']}{outcome}")
    return EXIT_FAILED if run["status"] == "failed" else 0


def add_training_commands(commands: Commands) -> None:
    from services.trainer.options import TrainingOptions

    train = _command(commands, "train", cmd_train, "train a model from a project's labeled images and register it")
    train.add_argument("--on", choices=["here", "kubernetes"], default="here",
                       help="here: in this process; kubernetes: the registry starts a Job from the Helm chart's "
                            "trainer template and this command follows it")
    train.add_argument("--gpu", action="store_true", help="with --on kubernetes: the GPU template")
    train.add_argument("--detach", action="store_true", help="with --on kubernetes: do not wait for the end")
    train.add_argument("--poll-seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    TrainingOptions.add_arguments(train, project_positional=True)

    runs = _command(commands, "runs", cmd_runs, "training runs with their progress, or one run's log")
    runs.add_argument("run", nargs="?", help="a run id: print its log")
    runs.add_argument("--model", help="only this model's runs")
    runs.add_argument("--follow", action="store_true", help="keep printing until the runs finish")
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes with --follow")

# -- models, versions and aliases --------------------------------------------------------------

def cmd_promote(args: argparse.Namespace) -> int:
    with _registry(args) as client:
        alias = client.set_alias(args.model, args.alias, args.version, reason=args.reason)
    print(_alias_moved(alias))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    with _registry(args) as client:
        alias = client.rollback_alias(args.model, args.alias, reason=args.reason)
    print(_alias_moved(alias))
    return 0


def _alias_moved(alias: dict[str, Any]) -> str:
    previous = alias.get("previous_version")
    replaced = f" (was version {previous})" if previous is not None else " (new alias)"
    return f"{alias['model']}@{alias['alias']} -> version {alias['version']}{replaced}"


def cmd_models(args: argparse.Namespace) -> int:
    if args.model and args.model[0] == "compare":
        return _compare(args, args.model[1:])
    if len(args.model) == 2 and args.model[1].isdigit():
        return _show_version(args, args.model[0], int(args.model[1]))
    if len(args.model) > 1:
        raise SystemExit("usage: visiondock models [MODEL [VERSION]] | visiondock models compare MODEL V1 V2")
    with _registry(args) as client:
        if args.model:
            for version in client.list_versions(args.model[0]):
                shown = summary_of(version["task"]).headline(version.get("metrics", {}))
                variants = ",".join(sorted(version.get("variants", {}))) or "-"
                print(f"{version['version']:>4}  {version['task']:<11} {shown:<36} variants {variants:<9} "
                      f"{version['created_at']}")
        else:
            for model in client.list_models():
                aliases = ", ".join(f"{a}={v}" for a, v in sorted(model["aliases"].items())) or "no aliases"
                print(f"{model['name']:<32} latest {model['latest_version']:<4} {aliases}")
    return 0


def _show_version(args: argparse.Namespace, model: str, number: int) -> int:
    """One version: its estimate beside its sample size, how it was chosen, its variants and checks."""
    with _registry(args) as client:
        print_version(client.get_version(model, number), model, number)
    return 0


def _compare(args: argparse.Namespace, rest: list[str]) -> int:
    if len(rest) != 3 or not (rest[1].isdigit() and rest[2].isdigit()):
        raise SystemExit("usage: visiondock models compare MODEL V1 V2")
    model, a, b = rest[0], int(rest[1]), int(rest[2])
    with _registry(args) as client:
        compared = client.compare_versions(model, a, b)
    marks = {"better": "better", "worse": "WORSE", "same": "", None: ""}
    signs = {"better": "+", "worse": "-"}

    def cell(d: dict[str, Any]) -> str:
        if d["delta"] is None:
            return f"{'-':>22}"
        return f"{d['a']:>6.3f} {d['b']:>6.3f} {d['delta']:>+7.3f}{signs.get(d['change'], ' ')}"

    print(f"{model}: v{a} -> v{b}")
    for name, d in compared["headline"].items():
        print(f"  {name:<12}{cell(d)} {marks[d['change']]}")
    names = ("precision", "recall", "f1", "ap")
    print(f"  {'class':<12}" + "".join(f"{n + ' (a b delta)':>23}" for n in names))
    for label, row in compared["per_class"].items():
        print(f"  {label:<12}" + "".join(f"{cell(row[n]):>23}" for n in names))
    summary = compared["summary"]
    print(f"v{b} is better on {summary['better']}, worse on {summary['worse']}, the same on {summary['same']} "
          "per-class figures")
    return 0


def cmd_label_issues(args: argparse.Namespace) -> int:
    with _registry(args) as client:
        found = client.label_issues(args.model, args.version, limit=args.limit)
    print(f"{found['count']} likely label errors in {args.model} version {args.version} (of {found.get('checked')} "
          f"labeled images; given label at out-of-fold probability < {found.get('threshold')}), most likely first")
    for item in found["items"]:
        if "label" in item:  # multilabel: one tag of the image
            what = (f"tag {item['label']!r} given but at {item['probability']:.2f}" if item["given"] else
                    f"tag {item['label']!r} missing but at {item['probability']:.2f}")
        else:
            what = (f"labeled {item['given']!r} ({item['given_probability']:.2f}), looks like "
                    f"{item['suggested']!r} ({item['suggested_probability']:.2f})")
        print(f"{item['rank']:>5}  {item['filename']:<40} {what}  {item['image_id'][:12]}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    print(f"{(args.registry_url or _settings().registry_url).rstrip('/')}/dashboard")
    return 0


def add_model_commands(commands: Commands) -> None:
    promote = _command(commands, "promote", cmd_promote, "point an alias (e.g. production) at a model version")
    promote.add_argument("model")
    promote.add_argument("version", type=int)
    promote.add_argument("--alias", default="production")
    promote.add_argument("--reason", default="", help="why; kept in the alias's history")

    rollback = _command(commands, "rollback", cmd_rollback, "move an alias back to the version it pointed at before")
    rollback.add_argument("model")
    rollback.add_argument("--alias", default="production")
    rollback.add_argument("--reason", default="", help="why; kept in the alias's history")

    models = _command(commands, "models", cmd_models, "list models, one model's versions (with each one's estimate "
                      "on new photos), one version (`models MODEL VERSION`: estimate, how it was chosen, variants, "
                      "data checks), or compare two: `models compare MODEL V1 V2`")
    models.add_argument("model", nargs="*", metavar="MODEL [VERSION] | compare MODEL V1 V2")

    issues = _command(commands, "label-issues", cmd_label_issues, "a version's likely label errors: labeled images "
                      "whose given label the models that never saw them found unlikely")
    issues.add_argument("model")
    issues.add_argument("version", type=int)
    issues.add_argument("--limit", type=int, help="at most this many, most likely first")

    _command(commands, "dashboard", cmd_dashboard, "print the URL of the registry's dashboard")

# -- storage upkeep ----------------------------------------------------------------------------

def cmd_fsck(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from services.annotation.images import IMAGE_BLOBS
    from services.annotation.review import REVIEW_BLOBS
    from services.registry.catalog import VERSION_BLOBS
    from visiondock.captures import LEGACY_CAPTURE_BLOBS
    from visiondock.fsck import check, repair
    from visiondock.storage import open_blob_store, open_document_store

    pairings = [IMAGE_BLOBS, REVIEW_BLOBS, VERSION_BLOBS, LEGACY_CAPTURE_BLOBS]
    settings = _settings()
    documents, blobs = open_document_store(settings), open_blob_store(settings)
    try:
        problems = list(check(documents, blobs, pairings, grace=timedelta(minutes=args.grace_minutes)))
        for problem in problems:
            print(problem.line())
        if not args.repair:
            print(f"{len(problems)} problem(s) found; nothing changed (dry run: --repair fixes them)")
            return EXIT_FAILED if problems else 0
        fixed = repair(documents, blobs, problems, pairings)
        print(f"{len(problems)} problem(s) found, {len(fixed)} repaired")
        return EXIT_FAILED if len(fixed) < len(problems) else 0
    finally:
        documents.close()
        blobs.close()


def cmd_purge_captures(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from services.annotation.images import ImageLibrary
    from services.annotation.projects import ProjectCatalog
    from services.annotation.review import ReviewQueue
    from visiondock.captures import legacy_blobs
    from visiondock.storage import open_blob_store, open_document_store

    settings = _settings()
    days = args.older_than_days if args.older_than_days is not None else settings.review_retention_days
    documents, blobs = open_document_store(settings), open_blob_store(settings)
    try:
        projects = ProjectCatalog(documents)
        queue = ReviewQueue(documents, blobs, projects, ImageLibrary(documents, blobs, projects))
        cutoff = datetime.now(UTC) - timedelta(days=days)
        purged = queue.purge(older_than=cutoff, dry_run=args.dry_run)
        for key in list(legacy_blobs(blobs, older_than=cutoff)):  # copies older scoring services kept
            if not args.dry_run:
                blobs.delete(key)
    finally:
        documents.close()
        blobs.close()
    verb = "would purge" if args.dry_run else "purged"
    print(f"{verb} {len(purged)} captured prediction(s) older than {days:g} days")
    return 0


def add_storage_commands(commands: Commands) -> None:
    fsck = _command(commands, "fsck", cmd_fsck, "find documents without their blobs and blobs without documents "
                    "in this deployment's storage (dry run unless --repair)")
    fsck.add_argument("--repair", action="store_true", help="delete stray blobs and image documents without bytes")
    fsck.add_argument("--grace-minutes", type=float, default=10.0,
                      help="leave blobs younger than this alone (uploads in progress)")

    purge = _command(commands, "purge-captures", cmd_purge_captures, "delete captured predictions (review items "
                     "and their images) older than the retention period")
    purge.add_argument("--older-than-days", type=float,
                       help="default: $VISIONDOCK_REVIEW_RETENTION_DAYS (30)")
    purge.add_argument("--dry-run", action="store_true", help="count, delete nothing")

# -- keys --------------------------------------------------------------------------------------

def cmd_key_new(args: argparse.Namespace) -> int:
    from visiondock.auth import KeyFormatError, new_key

    try:
        key, entry = new_key(args.name, args.role, args.scope or ["*"])
    except KeyFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"key:   {key}\nentry: {entry}")
    print("Give the key to its user once; add the entry to VISIONDOCK_API_KEY_ENTRIES or the key file.",
          file=sys.stderr)
    return 0


def add_key_commands(commands: Commands) -> None:
    key = commands.add_parser("key", help="API keys").add_subparsers(dest="key_command", required=True,
                                                                     metavar="ACTION")
    new = _command(key, "new", cmd_key_new, "make a new API key and print it with the hashed entry services store")
    new.add_argument("name", help="the key's name, shown in logs and label history")
    new.add_argument("--role", action="append", required=True, choices=["predict", "label", "train", "admin"],
                     help="repeat for several roles")
    new.add_argument("--scope", action="append", help="a project or model the key is limited to (repeatable); "
                                                      "default: all")

# -- scoring -----------------------------------------------------------------------------------

def cmd_predict(args: argparse.Namespace) -> int:
    failures = 0
    with _scoring(args) as client:
        for name in args.images:
            path = Path(name)
            try:
                answer: dict[str, Any] = client.predict(path.read_bytes(), filename=path.name, model=args.model)
            except (OSError, ServiceError) as exc:
                failures += 1
                answer = {"error": str(exc)}
            print(json.dumps({"file": name, **answer}), flush=True)
    return EXIT_FAILED if failures else 0


def add_scoring_commands(commands: Commands) -> None:
    predict = _command(commands, "predict", cmd_predict, "score images with the scoring service (one JSON line each)")
    predict.add_argument("--model", help="the served model to score with (GET /v1/models lists them); default: "
                                         "the scoring service's default model")
    predict.add_argument("images", nargs="+", metavar="IMAGE")

# -- the command line --------------------------------------------------------------------------

COMMAND_GROUPS: tuple[Callable[[Commands], None], ...] = (
    add_service_commands, add_project_commands, add_dataset_commands, add_training_commands, add_model_commands,
    add_storage_commands, add_key_commands, add_scoring_commands)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visiondock", description="VisionDock: custom computer vision, "
                                     "self-hosted.", formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__)
    parser.add_argument("--annotation-url", help="default: $VISIONDOCK_ANNOTATION_URL or http://127.0.0.1:8701")
    parser.add_argument("--registry-url", help="default: $VISIONDOCK_REGISTRY_URL or http://127.0.0.1:8702")
    parser.add_argument("--scoring-url", help="default: $VISIONDOCK_SCORING_URL or http://127.0.0.1:8703")
    parser.add_argument("--api-key", help="default: $VISIONDOCK_API_KEY (the local development key)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_commands in COMMAND_GROUPS:
        add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
