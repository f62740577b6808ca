"""scripts/setup.sh installs only when the project or the torch choice changed (run.sh calls it on
every launch). Run against a copy of the script in a temp project whose .venv python is a stub that
records each pip call, so the test never touches the real environment."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", project / "scripts" / "setup.sh")
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n')
    python = project / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text('#!/bin/sh\necho "$@" >> "$(dirname "$0")/../../pip.log"\n')
    python.chmod(0o755)
    return project


def _setup(project: Path, **env: str) -> list[str]:
    """Run setup.sh; the pip calls it made."""
    log = project / "pip.log"
    log.unlink(missing_ok=True)
    subprocess.run(["bash", "scripts/setup.sh"], cwd=project, check=True, timeout=60,
                   env={k: v for k, v in os.environ.items() if k != "TORCH_SPEC"} | env)
    return log.read_text().splitlines() if log.exists() else []


def test_setup_installs_once_then_only_when_the_project_or_torch_choice_changes(tmp_path):
    project = _project(tmp_path)
    first = _setup(project)
    assert any("torch" in call for call in first) and any("-e .[dev]" in call for call in first)
    assert _setup(project) == []  # unchanged: no pip at all
    (project / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["numpy"]\n')
    assert any("-e .[dev]" in call for call in _setup(project))
    assert _setup(project) == []
    assert any("torch>=2.3" in call for call in _setup(project, TORCH_SPEC="torch>=2.3"))
    assert _setup(project, TORCH_SPEC="torch>=2.3") == []


def test_a_failed_install_is_retried_on_the_next_launch(tmp_path):
    project = _project(tmp_path)
    python = project / ".venv" / "bin" / "python"
    stub = python.read_text()
    python.write_text(stub + 'case "$*" in *-e*) exit 1;; esac\n')
    assert subprocess.run(["bash", "scripts/setup.sh"], cwd=project, timeout=60).returncode != 0
    python.write_text(stub)
    assert any("-e .[dev]" in call for call in _setup(project))
