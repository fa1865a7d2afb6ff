"""Rule report: the HTML report and markdown summary of the run."""

import json
from pathlib import Path

from fmridecode.io import read_parquet
from fmridecode.report.html import render_report
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
notes = {}
for path in smk.input.stats:
    stats = json.loads(Path(path).read_text())
    notes[Path(path).parent.name + "/" + Path(path).name] = {
        k: v for k, v in stats.items() if not isinstance(v, list | dict)
    }
head = render_report(
    read_parquet(smk.input.metrics),
    smk.input.grids,
    smk.output.html,
    smk.output.summary,
    title=f"fmridecode report: {smk.params.dataset}",
    notes=notes,
    noise=read_parquet(smk.input.noise[0]) if smk.input.noise else None,
    headline_mapper=smk.params.headline_mapper,
    curves=smk.input.curves,
    analyses=smk.input.analyses,
    retrieval=smk.input.retrieval,
)
log.info("\n%s", head.to_string(index=False))
