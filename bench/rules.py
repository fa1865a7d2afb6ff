"""Per-rule cost of a finished run, from Snakemake's benchmark files, as one table.

    python bench/rules.py results/synthetic        # markdown table, slowest rule first

Every heavy rule declares ``benchmark:`` (``<run>/benchmarks/<rule>.tsv`` or
``<run>/benchmarks/<rule>/<job>.tsv``); Snakemake writes one row per job: wall seconds
(``s``), peak resident memory (``max_rss``, MB), CPU seconds (``cpu_time``). This groups them
by rule: jobs, total and longest wall time, the peak memory of any job, total CPU time. The
last line is a one-line summary. It measures the run it is given; it runs nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def rule_table(run: Path) -> pd.DataFrame:
    """One row per rule with benchmark files under ``run/benchmarks``."""
    root = run / "benchmarks"
    files = sorted(root.rglob("*.tsv"))
    if not files:
        raise SystemExit(f"{root}: no benchmark files (is {run} a finished run?)")
    rows = []
    for f in files:
        rel = f.relative_to(root)
        rule = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for _, r in pd.read_csv(f, sep="\t").iterrows():
            rows.append({"rule": rule, "job": str(rel.with_suffix("")), "s": r["s"],
                         "max_rss": r["max_rss"], "cpu_time": r.get("cpu_time")})  # fmt: skip
    df = pd.DataFrame(rows)
    table = df.groupby("rule").agg(
        jobs=("job", "count"),
        wall_s_total=("s", "sum"),
        wall_s_max=("s", "max"),
        peak_rss_mb=("max_rss", "max"),
        cpu_s_total=("cpu_time", "sum"),
    )
    return table.sort_values("wall_s_total", ascending=False).reset_index()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run's output folder, e.g. results/synthetic")
    args = ap.parse_args(argv)
    table = rule_table(args.run)
    print(table.to_markdown(index=False, floatfmt=".1f"))
    top = table.iloc[0]
    print(
        f"\nrule cost: {args.run}: {int(table['jobs'].sum())} benchmarked jobs, "
        f"{table['wall_s_total'].sum():.0f} s wall in all; slowest rule {top['rule']} "
        f"({top['wall_s_total']:.0f} s over {int(top['jobs'])} jobs); peak memory of any job "
        f"{table['peak_rss_mb'].max():.0f} MB ({table.loc[table['peak_rss_mb'].idxmax(), 'rule']})"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
