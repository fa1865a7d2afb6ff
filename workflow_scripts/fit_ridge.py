"""Rule fit_ridge: ridge from voxels to image/text embeddings and low-res images (test preds)."""

import pandas as pd

from fmridecode.io import load_indexed, save_indexed, write_parquet
from fmridecode.mappers.ridge import RidgeCV
from fmridecode.mappers.targets import align, decoding_targets
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
X, vindex = load_indexed(smk.input.voxels)
image_emb, image_index = load_indexed(smk.input.image)
caption_emb, caption_index = load_indexed(smk.input.caption)
images, stim_index = load_indexed(smk.input.images)
targets = decoding_targets(
    image_emb, image_index, caption_emb, caption_index, images, stim_index, p.lowres_size
)
train = (vindex["split"] == "train").to_numpy()
test = (vindex["split"] == "test").to_numpy()
test_index = vindex.loc[test, ["stim_id"]].reset_index(drop=True)
cv_rows = []
for target, (emb, ids) in targets.items():
    Y = align(emb, ids, list(vindex["stim_id"]), f"{target} embeddings")
    model = RidgeCV(
        alphas=p.alphas,
        cv=p.cv_folds,
        alpha_per_target=p.alpha_per_target,
        standardize=p.standardize,
        seed=p.seed,
    ).fit(X[train], Y[train])
    model.save(smk.output[f"model_{target}"])
    save_indexed(smk.output[f"pred_{target}"], model.predict(X[test]).astype("float32"), test_index)
    scores = model.cv_scores_ if model.cv_scores_.ndim == 1 else model.cv_scores_.mean(axis=1)
    cv_rows += [
        {"target": target, "alpha": a, "cv_score": float(s)}
        for a, s in zip(p.alphas, scores, strict=True)
    ]
    log.info("%s: alpha %s, n_train %d, n_test %d", target, model.alpha_, train.sum(), test.sum())
write_parquet(pd.DataFrame(cv_rows), smk.output.cv)
