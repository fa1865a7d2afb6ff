"""Rule metrics_supervision: BrainCLIP's V / T / VT ablation of one mapper, scored with every
decoding metric (rows carry the column supervision)."""

import tempfile

from fmridecode.devices import resolve_device
from fmridecode.embeddings.cache import load_pooled
from fmridecode.io import load_indexed
from fmridecode.mappers.zoo import SUPERVISION, fit_mapper, load_image_views, subject_data
from fmridecode.metrics.decoding import DecodingSettings, decoding_rows, load_truth
from fmridecode.metrics.table import write_metrics
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, t, w = smk.params, smk.params.training, smk.wildcards
X, vindex = load_indexed(smk.input.voxels)
image_emb, image_index = load_pooled(smk.input.image)
caption_emb, caption_index = load_pooled(smk.input.caption)
train, val, eval_x, eval_index = subject_data(
    X, vindex, image_emb, image_index, caption_emb, caption_index, p.validation, p.seed,
    caption=t["caption"], image_views=load_image_views(smk.input.views),
)  # fmt: skip
truth = load_truth(smk.input.image, smk.input.caption, smk.input.classes, smk.input.labels)
rows = []
for supervision in SUPERVISION:
    with tempfile.TemporaryDirectory() as partial:
        res = fit_mapper(
            w.mapper, train, val, {"test": eval_x["test"]}, {**p.hp, "supervision": supervision},
            batch_size=t["batch_size"], patience=t["patience"], seed=p.seed,
            device=resolve_device(t["device"]), partial=partial,
        )  # fmt: skip
    preds = {k: (v, eval_index["test"]) for k, v in res.predictions["test"].items()}
    base = {"dataset": p.dataset, "subject": w.subject, "mapper": w.mapper}
    got = decoding_rows(preds, truth, DecodingSettings(**p.settings))
    rows += [{**base, **r, "supervision": supervision} for r in got]
    log.info("supervision %s: %d rows", supervision, len(got))
write_metrics(rows, smk.output[0])
