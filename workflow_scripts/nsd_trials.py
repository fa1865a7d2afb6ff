"""Rule nsd_trials: one NSD subject's trial table (every session, presentation order)."""

import pandas as pd

from fmridecode.datasets.nsd import read_expdesign, session_trials
from fmridecode.io import write_parquet
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
design = read_expdesign(smk.input.expdesign)
subject = int(smk.wildcards.subject)
tables = [
    session_trials(design, subject, int(s), smk.params.trials_per_session)
    for s in smk.params.sessions
]
trials = pd.concat(tables, ignore_index=True)
write_parquet(trials, smk.output.trials)
log.info("subject %d: %d trials in %d sessions", subject, len(trials), len(tables))
