"""Rule fit_ridge: ridge from voxels to image/text embeddings and low-res images (test preds)."""

import pandas as pd

from fmridecode.embeddings.cache import load_pooled
from fmridecode.io import load_indexed, save_indexed, write_parquet
from fmridecode.mappers.ridge import RidgeCV
from fmridecode.mappers.targets import align, decoding_targets
from fmridecode.mappers.training import validation_split
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
X, vindex = load_indexed(smk.input.voxels)
image_emb, image_index = load_pooled(smk.input.image)
caption_emb, caption_index = load_pooled(smk.input.caption)
images, stim_index = load_indexed(smk.input.images)
targets = decoding_targets(
    image_emb,
    image_index,
    caption_emb,
    caption_index,
    images,
    stim_index,
    p.lowres_size,
    caption=p.caption,
)
train = (vindex["split"] == "train").to_numpy()
test = (vindex["split"] == "test").to_numpy()
test_index = vindex.loc[test, ["stim_id"]].reset_index(drop=True)
# the validation images held out of the trainable mappers: ridge refitted without them
# predicts them, so that fusion weighs every mapper on the same unseen images
val_ids = validation_split(vindex.loc[train, "stim_id"], p.validation, p.seed)
val = train & vindex["stim_id"].isin(val_ids).to_numpy()
val_index = vindex.loc[val, ["stim_id"]].reset_index(drop=True)
cv_rows = []
for target, (emb, ids) in targets.items():
    Y = align(emb, ids, list(vindex["stim_id"]), f"{target} embeddings")
    settings = {
        "alphas": p.alphas,
        "cv": p.cv_folds,
        "alpha_per_target": p.alpha_per_target,
        "standardize": p.standardize,
        "seed": p.seed,
    }
    model = RidgeCV(**settings).fit(X[train], Y[train])
    model.save(smk.output[f"model_{target}"])
    save_indexed(smk.output[f"pred_{target}"], model.predict(X[test]).astype("float32"), test_index)
    if target in ("image", "text"):
        held_out = RidgeCV(**settings).fit(X[train & ~val], Y[train & ~val])
        save_indexed(smk.output[f"val_{target}"], held_out.predict(X[val]), val_index)
    scores = model.cv_scores_ if model.cv_scores_.ndim == 1 else model.cv_scores_.mean(axis=1)
    cv_rows += [
        {"target": target, "alpha": a, "cv_score": float(s)}
        for a, s in zip(p.alphas, scores, strict=True)
    ]
    log.info("%s: alpha %s, n_train %d, n_test %d", target, model.alpha_, train.sum(), test.sum())
write_parquet(pd.DataFrame(cv_rows), smk.output.cv)
