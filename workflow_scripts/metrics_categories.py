"""Rule metrics_categories: category decoding AUC (Mind Reader 3.4) for one subject, from fMRI,
from true CLIP image embeddings and, per mapper, from the decoded embeddings."""

from fmridecode.embeddings.cache import load_pooled
from fmridecode.io import load_indexed, read_parquet
from fmridecode.metrics.categories import category_decoding_rows, no_labels_rows
from fmridecode.metrics.table import write_metrics
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, w = smk.params, smk.wildcards
base = {"dataset": p.dataset, "subject": w.subject}
classes = list(read_parquet(smk.input.categories)["category"])
if not classes:  # a dataset without category labels (NSD, BOLD5000): say so, score nothing
    why = f"unavailable: no category labels in {smk.input.categories}"
    rows = no_labels_rows(base, p.mappers, why)
    log.warning(why)
else:
    X, vindex = load_indexed(smk.input.voxels)
    ids = list(vindex["stim_id"])
    labels = read_parquet(smk.input.labels).groupby("stim_id")["category"].agg(set).to_dict()
    emb, emb_index = load_pooled(smk.input.image)
    decoded = {}
    for mapper, path in zip(p.mappers, smk.input.pred, strict=True):
        pred, pindex = load_indexed(path)
        decoded[mapper] = (pred, pindex["stim_id"])
    rows = category_decoding_rows(
        X, vindex["split"], ids, labels, classes, (emb, emb_index["stim_id"]), decoded, base,
        seed=p.seed, log=log, **dict(p.settings),
    )  # fmt: skip
write_metrics([{**r, "target": "image"} for r in rows], smk.output[0])
