"""Running Snakemake on this repository's workflow from tests (real runs, in a temp dir)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.yaml"


#: the environment of every Snakemake the tests start (no model hub here)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def snakemake_command(
    workdir: Path, *args: str, configfiles: list[Path] | None = None
) -> list[str]:
    """``python -m snakemake`` on the repo's Snakefile with ``workdir`` as working dir."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--cores", "2"]  # fmt: skip
    cmd += list(args)  # before --configfile, whose list would swallow a target
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    return cmd


def snakemake(
    workdir: Path,
    *args: str,
    configfiles: list[Path] | None = None,
    check: bool = True,
    timeout: int = 900,
) -> subprocess.CompletedProcess:
    """Run Snakemake (``snakemake_command``) and wait; raise with its output if it fails."""
    cmd = snakemake_command(workdir, *args, configfiles=configfiles)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
            f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-12000:]}"
        )
    return proc


def scheduled_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table (empty if nothing to do)."""
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    m = re.search(r"Job stats:\n(.*?)\n\n", text, flags=re.S)
    if not m:
        raise AssertionError(f"no job stats in dry-run output:\n{text[-4000:]}")
    jobs = {}
    for line in m.group(1).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            jobs[parts[0]] = int(parts[1])
    return jobs


def scheduled_job_list(proc: subprocess.CompletedProcess) -> list[dict]:
    """Every job a dry run lists, in its order: ``rule``, ``wildcards`` and ``resources``
    (name -> value as printed)."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", proc.stdout + proc.stderr):
        m = re.match(r"(?:local)?rule (\w+):\n", block)
        if not m or "jobid:" not in block:
            continue
        fields = {}
        for key in ("wildcards", "resources"):
            line = re.search(rf"^\s+{key}: (.*)$", block, flags=re.M)
            pairs = [kv.split("=", 1) for kv in line.group(1).split(", ")] if line else []
            fields[key] = dict(pairs)
        jobs.append({"rule": m.group(1), **fields})
    return jobs
