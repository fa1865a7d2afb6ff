"""Rule metrics_decoding: every decoding metric of one mapper's predicted embeddings
(metrics.decoding: retrieval, R2 / cosine, identification, zero-shot)."""

from fmridecode.io import load_indexed
from fmridecode.metrics.decoding import DecodingSettings, decoding_rows, load_truth
from fmridecode.metrics.table import write_metrics
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, i = smk.params, smk.input
truth = load_truth(i.image, i.caption, i.classes, i.labels)
preds = {t: load_indexed(i[f"pred_{t}"]) for t in ("image", "text")}
rows = decoding_rows(preds, truth, DecodingSettings(**p.settings))
base = {"dataset": p.dataset, "subject": smk.wildcards.subject, "mapper": smk.wildcards.mapper}
write_metrics([{**base, **r} for r in rows], smk.output[0])
log.info("%d metric rows", len(rows))
