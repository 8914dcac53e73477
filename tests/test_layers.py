"""The import contracts of pyproject.toml ([tool.importlinter]): `cli` over `services` over
`visiondock`, and no service importing another. Checked on the real tree, and shown to catch a
shared package that imports a service."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("annotation", "registry", "scoring", "trainer")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """import-linter with the contracts of `cwd`/pyproject.toml, on the packages found from `cwd`."""
    command = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(command), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.processes
def test_the_tree_keeps_its_layers() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.processes
def test_a_shared_package_importing_a_service_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    packages = ["cli", "visiondock", "services", *(f"services/{name}" for name in SERVICES)]
    for package in packages:
        (tmp_path / package).mkdir(parents=True)
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "visiondock" / "demo.py").write_text("import services.trainer\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "visiondock.demo -> services.trainer" in result.stdout, result.stdout
