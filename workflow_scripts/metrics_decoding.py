"""Rule metrics_decoding: retrieval Recall@k, 2-way / random 2-way / n-way identification and
zero-shot classification of the predicted embeddings."""

from fmridecode.io import load_indexed, read_parquet
from fmridecode.mappers.targets import align, text_embeddings
from fmridecode.metrics.recon import identification_rows
from fmridecode.metrics.retrieval import retrieval_rows
from fmridecode.metrics.table import write_metrics
from fmridecode.metrics.zero_shot import zero_shot_rows
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
image_emb, image_index = load_indexed(smk.input.image)
caption_emb, caption_index = load_indexed(smk.input.caption)
text_emb, text_ids = text_embeddings(caption_emb, caption_index)
truth = {"image": (image_emb, list(image_index["stim_id"])), "text": (text_emb, text_ids)}
base = {
    "dataset": smk.params.dataset,
    "subject": smk.wildcards.subject,
    "mapper": smk.wildcards.mapper,
}
p = smk.params
class_emb, classes = load_indexed(smk.input.classes)
held_out = set(classes.loc[classes["zero_shot"], "category"])
labels = read_parquet(smk.input.labels).groupby("stim_id")["category"].agg(set).to_dict()
draws = {"n_way": p.n_way, "repeats": p.repeats, "seed": p.seed}
rows = []
for target in ("image", "text"):
    pred, pred_index = load_indexed(smk.input[f"pred_{target}"])
    emb, ids = truth[target]
    # candidates: the embeddings of the test images, in the predictions' order
    candidates = align(emb, ids, list(pred_index["stim_id"]), f"{target} embeddings")
    rows += retrieval_rows(
        pred, candidates, target=target, ks=p.ks, pool=p.pool, pool_repeats=p.pool_repeats,
        seed=p.seed,
    )  # fmt: skip
    rows += identification_rows(
        pred, candidates, {"target": target, "feature": "embedding"}, **draws
    )
    rows += zero_shot_rows(
        pred, [labels.get(s, set()) for s in pred_index["stim_id"]], class_emb,
        list(classes["category"]), held_out, {"target": target}, candidates=p.zero_shot_classes,
    )  # fmt: skip
write_metrics([{**base, **r} for r in rows], smk.output[0])
log.info("%d metric rows", len(rows))
