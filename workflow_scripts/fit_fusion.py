"""Rule fit_fusion: Mind Reader's fusion of several mappers, weights chosen on validation
images per target (image, text); writes the fused test predictions and the weight table."""

import numpy as np
import pandas as pd

from fmridecode.embeddings.cache import load_pooled
from fmridecode.io import DataError, load_indexed, save_indexed, write_parquet
from fmridecode.mappers.fusion import choose_weights, fuse
from fmridecode.mappers.targets import align, text_embeddings
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
image_emb, image_index = load_pooled(smk.input.image)
caption_emb, caption_index = load_pooled(smk.input.caption)
truth = {
    "image": (image_emb, list(image_index["stim_id"])),
    "text": text_embeddings(caption_emb, caption_index),
}


def predictions(kind: str, target: str) -> tuple[list[np.ndarray], pd.DataFrame]:
    """Every fused mapper's rows of ``kind`` (pred/val), checked to share one row order."""
    rows, first = [], None
    for m in p.mappers:
        arr, index = load_indexed(smk.input[f"{m}__{kind}_{target}"])
        if first is None:
            first = index
        elif list(index["stim_id"]) != list(first["stim_id"]):
            raise DataError(f"fusion: {m}'s {kind}_{target} rows differ from {p.mappers[0]}'s")
        rows.append(arr)
    return rows, first


tables = []
for target in ("image", "text"):
    val_preds, val_index = predictions("val", target)
    val_ids = list(val_index["stim_id"])
    uniq = sorted(set(val_ids))
    candidates = align(*truth[target], uniq, f"{target} embeddings")
    true_index = np.array([uniq.index(s) for s in val_ids])
    weights, table = choose_weights(val_preds, candidates, true_index, p.grid_step)
    test_preds, test_index = predictions("pred", target)
    save_indexed(smk.output[f"pred_{target}"], fuse(test_preds, weights), test_index)
    best = table.loc[table["mrr"].idxmax()]
    log.info(
        "%s: weights %s, validation MRR %.3f top-1 %.3f (%d images)",
        target, dict(zip(p.mappers, weights.round(2), strict=True)), best["mrr"], best["top1"],
        len(uniq),
    )  # fmt: skip
    tables.append(
        pd.DataFrame(
            {"target": target, "mapper": list(p.mappers), "weight": weights,
             "val_mrr": best["mrr"], "val_top1": best["top1"], "n_val_images": len(uniq)}
        )
    )  # fmt: skip
write_parquet(pd.concat(tables, ignore_index=True), smk.output.weights)
