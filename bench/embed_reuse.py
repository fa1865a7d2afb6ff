"""Benchmark: the embedding caches are computed once and reused by every later run of the DAG.

    python bench/embed_reuse.py                       # the tests' tiny config, in a temp dir
    python bench/embed_reuse.py --configfile my.yaml  # any config (its dataset must be local)

Real Snakemake runs of this repository's workflow, one after another in one temporary working
directory:

1. the embedding stage's outputs from nothing (stimuli, the small CLIP model's training when
   ``embed.pretrained`` is null, ``embed``, caption screening, class prompts, augmented views
   when configured): the cost of computing the caches;
2. the same targets again: how long Snakemake takes to find that nothing is to be done;
3. a dry run of the whole DAG (target ``all``, every mapper, generator and metric), and one
   with a downstream option changed (``fit.ridge.alphas``): how many embedding jobs either
   would run (zero: later stages read the caches).

Printed: wall time and jobs per rule of each step, then a one-line summary. The last line
says whether the caches were reused (no embedding job after the first run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # workflow_helpers: how the tests run Snakemake
EMBEDDING_RULES = (
    "train_clip", "embed", "screen_captions", "embed_classes", "embed_views", "embed_tokens"
)  # fmt: skip


def run(workdir: Path, configs: list[Path], *args: str) -> tuple[float, dict[str, int]]:
    """Wall time and jobs per rule of one Snakemake call (the tests' runner and job-table
    reader, ``tests/workflow_helpers.py``; raises with its log on failure)."""
    from workflow_helpers import scheduled_jobs, snakemake

    t0 = time.perf_counter()
    proc = snakemake(workdir, *args, configfiles=configs, timeout=3600)
    return time.perf_counter() - t0, scheduled_jobs(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configfile", type=Path, default=REPO / "tests/configs/tiny.yaml")
    args = ap.parse_args()
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config.update(yaml.safe_load(args.configfile.read_text()))  # top-level keys suffice here
    out = f"{config['results']}/{config['dataset']}/embed"
    targets = [f"{out}/{name}" for name in ("quality.json", "caption_kept.npy", "classes.npy")]
    if (config.get("embed", {}).get("augment") or {}).get("views"):
        targets.append(f"{out}/image_views.npy")
    configs = [args.configfile.resolve()]  # over config.yaml, which the Snakefile reads

    with tempfile.TemporaryDirectory(prefix="embed-reuse-") as tmp:
        work = Path(tmp)
        changed = work / "changed.yaml"
        alphas = [1.0, 1000.0]
        changed.write_text(yaml.safe_dump({"fit": {"ridge": {"alphas": alphas}}}))
        steps = [
            ("1 embedding stage from nothing", run(work, configs, *targets)),
            ("2 the same targets again", run(work, configs, *targets)),
            ("3 whole DAG, dry run", run(work, configs, "all", "--dry-run")),
            (
                f"4 whole DAG, fit.ridge.alphas {alphas}, dry run",
                run(work, [*configs, changed], "all", "--dry-run"),
            ),
        ]
    print(
        f"config {args.configfile} (dataset {config['dataset']}), "
        f"snakemake --cores 2 on {os.cpu_count()} cores"
    )
    print("| step | wall s | embedding jobs | other jobs |")
    print("|---|---|---|---|")
    for name, (wall, jobs) in steps:
        emb = {r: n for r, n in jobs.items() if r in EMBEDDING_RULES}
        other = sum(n for r, n in jobs.items() if r not in EMBEDDING_RULES)
        emb_s = ", ".join(f"{r} {n}" for r, n in emb.items()) or "0"
        print(f"| {name} | {wall:.1f} | {emb_s} | {other} |")
    later = [sum(n for r, n in j.items() if r in EMBEDDING_RULES) for _, (_, j) in steps[1:]]
    first = sum(n for r, n in steps[0][1][1].items() if r in EMBEDDING_RULES)
    verdict = "reused" if first and not any(later) else "NOT reused"
    print(
        f"embed reuse bench: first run {steps[0][1][0]:.1f} s, {first} embedding jobs; "
        f"again {steps[1][1][0]:.1f} s, {later[0]} jobs; whole-DAG dry runs (plain, ridge "
        f"changed) {later[1]} and {later[2]} embedding jobs: caches {verdict}"
    )


if __name__ == "__main__":
    main()
