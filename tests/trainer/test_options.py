"""The training options: one definition behind both command lines, the Job's argv and the stored parameters;
options that do nothing where they are set are refused, never dropped."""

from __future__ import annotations

import argparse
import subprocess
import sys
import typing
from dataclasses import fields
from pathlib import Path

import pytest

from cli.main import build_parser as cli_parser
from services.trainer import options
from services.trainer.__main__ import build_parser as job_parser
from services.trainer.__main__ import main as job_main
from services.trainer.data import ProjectData
from services.trainer.fcos import DetectorOptions
from services.trainer.finetune import FineTuneOptions
from services.trainer.options import OptionError, TrainingOptions, flag, scoped_default
from services.trainer.tasks import RunContext, task_for
from services.trainer.tasks.classification import FaceTask, MultilabelTask
from services.trainer.tasks.detection import DetectionTask
from visiondock.job_contract import RUN_OPTIONS, InvalidOptionsError, trainer_argv
from visiondock.vocabulary import ADVANCED, DETECTION


def parse_job(*argv: str) -> TrainingOptions:
    return TrainingOptions.from_args(job_parser().parse_args(list(argv)))


def parse_cli(*argv: str) -> TrainingOptions:
    return TrainingOptions.from_args(cli_parser().parse_args(["train", *argv]))


def run_on(project_type: str, options: TrainingOptions, tmp_path: Path) -> RunContext:
    # Choosing the task reads only the project's type: no service, loader or run reporting is touched.
    project = ProjectData(project={"id": options.project, "type": project_type}, tags=[], records=[])
    return RunContext(options=options, project=project, loader=None, steps=None, cache_dir=tmp_path)  # type: ignore[arg-type]


def test_defaults_are_the_dataclass_defaults_on_both_command_lines() -> None:
    assert parse_job("--project", "flowers") == parse_cli("flowers") == TrainingOptions(project="flowers")
    options = TrainingOptions(project="flowers")
    assert (options.mode, options.head, options.backbone, options.seed) == ("quick", "auto", "auto", 0)
    assert options.model_name == "flowers" and options.to_argv() == ["--project", "flowers"]


@pytest.mark.parametrize("argv", [
    ["--model", "tulips", "--mode", "advanced", "--epochs", "3", "--fine-tune-stages", "2", "--batch-size", "16",
     "--learning-rate", "5e-05", "--weight-decay", "0.01", "--head", "mlp", "--no-int8", "--seed", "7",
     "--test-fraction", "0.25", "--validation-fraction", "0.1", "--target-precision", "0.9",
     "--backbone", "efficientnet-lite2", "--threads", "3", "--cache-dir", "/tmp/features", "--run-id", "run-1",
     "--no-progress"],
    ["--task-preset", "face", "--face-margin", "0.3", "--target-precision", "0.99", "--no-refit"],
    ["--evaluation", "cross-validation", "--head", "mlp", "--weight-decay", "0.001"],
    ["--epochs", "5", "--input-size", "256", "--batch-size", "2", "--learning-rate", "0.001"],
    ["--head", "linear", "--selection-budget", "45.5"],
    ["--backbone", "efficientnet-lite1", "--selection-budget", "600.0"],
])
def test_the_job_argv_round_trips_through_both_parsers(argv: list[str]) -> None:
    options = parse_job("--project", "flowers", *argv)
    assert parse_job(*options.to_argv()) == options
    assert parse_cli("flowers", *options.to_argv()[2:]) == options
    assert sorted(options.to_argv()[2:]) == sorted(argv)  # nothing added, nothing dropped


def test_values_keep_their_types() -> None:
    options = parse_job("--project", "p", "--mode", "advanced", "--epochs", "3", "--learning-rate", "5e-05",
                        "--cache-dir", "/tmp/x", "--no-int8")
    assert options.epochs == 3 and options.learning_rate == 5e-05 and options.cache_dir == Path("/tmp/x")
    assert options.int8 is False and options.progress is True


def test_the_run_stores_every_training_option_and_nothing_of_the_process() -> None:
    options = TrainingOptions(project="p", model="m", mode="advanced", epochs=3, threads=2, cache_dir=Path("/tmp/c"),
                              run_id="run-1", progress=False)
    params = options.params()
    assert params["mode"] == "advanced" and params["epochs"] == 3 and params["input_size"] is None
    assert not {"project", "model", "threads", "cache_dir", "run_id", "progress"} & set(params)
    assert set(params) == {"mode", "task_preset", "backbone", "head", "epochs", "fine_tune_stages", "batch_size",
                           "learning_rate", "weight_decay", "target_precision", "face_margin", "input_size",
                           "test_fraction", "validation_fraction", "seed", "evaluation", "refit", "int8",
                           "fp16", "selection_budget"}


@pytest.mark.parametrize(("argv", "message"), [
    (["--fine-tune-stages", "2"], "--fine-tune-stages is for classification in advanced mode; it does nothing in "
                                  "quick mode"),
    (["--face-margin", "0.3"], "--face-margin is for the face preset"),
    (["--task-preset", "face", "--epochs", "3"], "--epochs is for classification in advanced mode and detection"),
    (["--task-preset", "face", "--input-size", "256"], "--input-size is for detection"),
    (["--mode", "advanced", "--input-size", "100"], "multiple of 32"),
    (["--test-fraction", "1.5"], "--test-fraction must be at least 0 and below 1"),
    (["--mode", "advanced", "--epochs", "0"], "--epochs must be at least 1"),
    (["--target-precision", "0"], "--target-precision must be above 0"),
    (["--mode", "advanced", "--selection-budget", "60"], "--selection-budget is for classification in quick mode"),
    (["--selection-budget", "-1"], "--selection-budget must be at least 0"),
])
def test_options_that_no_task_would_use_are_refused_at_once(argv: list[str], message: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(OptionError, match=message):
        parse_cli("p", *argv)
    # The Job says the same and exits 2, as for any bad command line, before it calls any service.
    with pytest.raises(SystemExit) as exited:
        job_main(["--project", "p", *argv])
    assert exited.value.code == 2 and message.split(";")[0] in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--epochs", "x"], ["--mode", "fast"], ["--head", "forest"],
                                  ["--frozen-blocks", "3"], ["--learn-rate", "0.1"]])
def test_unknown_flags_and_bad_values_are_refused_by_both_parsers(argv: list[str]) -> None:
    for parser, head in ((job_parser(), ["--project", "p"]), (cli_parser(), ["train", "p"])):
        with pytest.raises(SystemExit) as exited:
            parser.parse_args([*head, *argv])
        assert exited.value.code == 2


@pytest.mark.parametrize("argv", [["--registry-ur", "http://127.0.0.1:9"], ["--annotation-ur", "http://127.0.0.1:9"],
                                  ["--cache", "/home/someone"], ["--run", "run-0123456789abcdef"],
                                  ["--learning-rat", "0.1"], ["--no-int", "--mode", "quick"]])
def test_both_parsers_refuse_abbreviations(argv: list[str]) -> None:
    # A prefix of a flag is not that flag: a run's `registry_ur` must not become --registry-url.
    for parser, head in ((job_parser(), ["--project", "p"]), (cli_parser(), ["train", "p"])):
        with pytest.raises(SystemExit) as exited:
            parser.parse_args([*head, *argv])
        assert exited.value.code == 2
    with pytest.raises(SystemExit):
        job_parser().parse_args(["--proj", "p"])


def test_the_options_a_run_may_set_are_the_training_options() -> None:
    # The registry builds a Job's command line from RUN_OPTIONS (it cannot import the trainer): it must
    # offer exactly the training options, with the trainer's types, choices and flags.
    hints = typing.get_type_hints(TrainingOptions)
    training = {f.name: f for f in fields(TrainingOptions) if f.metadata[options._SPEC].kind == "training"}
    assert set(RUN_OPTIONS) == set(training)
    for name, run_option in RUN_OPTIONS.items():
        spec = training[name].metadata[options._SPEC]
        kind = next(t for t in typing.get_args(hints[name]) or (hints[name],) if t is not type(None))
        assert run_option.type is kind, name
        assert tuple(spec.choices or ()) == run_option.choices, name
        assert run_option.off_flag == spec.off_flag, name
    # Every value a run stores comes back as the same options through the Job's parser.
    chosen = TrainingOptions(project="p", mode="advanced", epochs=3, int8=False, fp16=False, head="mlp", seed=2)
    argv = trainer_argv(chosen.params())
    assert parse_job("--project", "p", *argv) == chosen


@pytest.mark.parametrize("params", [{"registry_ur": "http://127.0.0.1:9"}, {"cache": "/"}, {"proj": "other"},
                                    {"run": "run-0123456789abcdef"}, {"registry_url": "http://x"},
                                    {"cache_dir": "/"}, {"project": "other"}, {"api_key": "x"}, {"threads": 64},
                                    {"mode": "--registry-url=http://x"}, {"epochs": "3 --cache-dir /"},
                                    {"int8": "yes"}, {"epochs": 2.5}, {"seed": True}, {"learning_rate": float("nan")}])
def test_a_runs_params_reach_the_trainer_only_as_training_options(params: dict[str, object]) -> None:
    with pytest.raises(InvalidOptionsError):
        trainer_argv(params)


def test_python_callers_get_the_same_checks() -> None:
    with pytest.raises(TypeError):
        TrainingOptions(project="p", learning_rat=0.1)  # type: ignore[call-arg]
    with pytest.raises(OptionError, match="--mode 'fast' is not one of quick, advanced"):
        TrainingOptions(project="p", mode="fast")
    with pytest.raises(OptionError, match="--fine-tune-stages"):
        TrainingOptions(project="p", fine_tune_stages=2)
    # At their default values, options never change anything, so they are never in the way.
    assert TrainingOptions(project="p", fine_tune_stages=1, head="auto").chosen() == {}


@pytest.mark.parametrize(("project_type", "options", "message"), [
    (DETECTION, {"head": "mlp"}, "--head is for classification; this run trains a detection model"),
    (DETECTION, {"mode": "advanced"}, "--mode is for classification; this run trains a detection model"),
    (DETECTION, {"weight_decay": 0.01}, "--weight-decay is for classification"),
    ("multiclass", {"epochs": 3}, "--epochs is for classification in advanced mode and detection; this run trains a "
                                  "multiclass model in quick mode"),
    ("multiclass", {"input_size": 256}, "--input-size is for detection; this run trains a multiclass model"),
    ("multiclass", {"validation_fraction": 0.3}, "--validation-fraction is for classification in advanced mode and "
                                                 "detection; this run trains a multiclass model in quick mode"),
    ("multilabel", {"target_precision": 0.9}, "--target-precision is for multiclass and the face preset"),
    (DETECTION, {"task_preset": "face"}, "the face preset trains from a multiclass project"),
    ("multilabel", {"task_preset": "face"}, "'p' is multilabel"),
])
def test_options_the_projects_task_does_not_use_are_refused_before_training(
        project_type: str, options: dict[str, object], message: str, tmp_path: Path) -> None:
    with pytest.raises(OptionError, match=message):
        task_for(run_on(project_type, TrainingOptions(project="p", **options), tmp_path))  # type: ignore[arg-type]


def test_each_project_type_gets_its_task(tmp_path: Path) -> None:
    detection = task_for(run_on(DETECTION, TrainingOptions(project="p", epochs=3, input_size=256, batch_size=2,
                                                           learning_rate=1e-3, seed=4), tmp_path))
    assert isinstance(detection, DetectionTask) and detection.name == DETECTION
    # What the run asked for reaches the detector: nothing is dropped on the way.
    detector = detection.detector_options
    assert (detector.epochs, detector.input_size, detector.batch_size) == (3, 256, 2)
    assert detector.learning_rate == 1e-3 and detector.seed == 4
    assert isinstance(task_for(run_on("multilabel", TrainingOptions(project="p"), tmp_path)), MultilabelTask)
    face = task_for(run_on("multiclass", TrainingOptions(project="p", task_preset="face", face_margin=0.3), tmp_path))
    assert isinstance(face, FaceTask) and face.name == "face" and face.face_margin == 0.3


def test_defaults_that_differ_by_task_are_declared_once() -> None:
    detector, fine_tune = DetectorOptions(), FineTuneOptions()
    assert (detector.epochs, detector.batch_size, detector.input_size) == (60, 4, 448)
    assert (fine_tune.epochs, fine_tune.batch_size) == (10, 32)
    assert detector.learning_rate == scoped_default("learning_rate", DETECTION) == 2e-4
    assert detector.head_lr == pytest.approx(1e-3)
    assert fine_tune.learning_rate == scoped_default("learning_rate", ADVANCED) == 1e-4
    help_text = " ".join(job_parser().format_help().split())
    assert "10 in advanced mode, 60 for detection" in help_text and "448 for detection" in help_text


def test_the_cli_and_the_job_offer_every_option_as_the_same_flag() -> None:
    def flags(parser: argparse.ArgumentParser) -> set[str]:
        return {option for action in parser._actions for option in action.option_strings}

    commands = next(a for a in cli_parser()._actions if isinstance(a, argparse._SubParsersAction))
    # Options on by default are offered as the flag that turns them off.
    off = {"progress": "--no-progress", "int8": "--no-int8", "fp16": "--no-fp16", "refit": "--no-refit"}
    expected = {off.get(name, flag(name)) for name in (f.name for f in fields(TrainingOptions)) if name != "project"}
    assert expected <= flags(commands.choices["train"])
    # The Job takes the options, its project and where the services are: nothing else.
    assert flags(job_parser()) - {"-h", "--help"} == expected | {"--project", "--annotation-url", "--registry-url"}


@pytest.mark.processes
def test_the_options_and_the_command_line_do_not_import_torch() -> None:
    # `visiondock --help` and the options' checks stay fast where the trainer extra is not installed.
    code = ("import sys, services.trainer.options, cli.main; cli.main.build_parser(); "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_training_threads_default_to_the_available_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(options, "available_cpus", lambda: 3)  # as in a pod limited to 3 CPUs
    assert TrainingOptions(project="p").cpu_threads == 3
    assert TrainingOptions(project="p", threads=5).cpu_threads == 5
