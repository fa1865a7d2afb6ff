"""Rule metrics_all: one tidy table of every metric."""

from fmridecode.io import write_parquet
from fmridecode.metrics.table import concat_metrics
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
df = concat_metrics(smk.input.tables)
write_parquet(df, smk.output[0])
log.info("%d metric rows from %d tables", len(df), len(smk.input.tables))
