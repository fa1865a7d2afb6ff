"""Style gates that CI runs through the test command: ruff (lint + format) and snakefmt."""

import subprocess
import sys

from workflow_helpers import REPO

PYTHON_DIRS = ["src", "tests", "workflow_scripts", "bench"]


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)


def test_ruff_lint_and_format_are_clean():
    proc = _run(sys.executable, "-m", "ruff", "check", *PYTHON_DIRS)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    proc = _run(sys.executable, "-m", "ruff", "format", "--check", *PYTHON_DIRS)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_snakefmt_is_clean():
    proc = _run(sys.executable, "-m", "snakefmt", "--check", "rules", "Snakefile")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
