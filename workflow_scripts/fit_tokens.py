"""Rule fit_tokens: one real pipeline's targets of the test images (token states or VAE
latents, any shape per image), predicted by ridge (flattened) or true (mapper truth)."""

from fmridecode.io import load_indexed, save_indexed
from fmridecode.mappers.ridge import RidgeCV
from fmridecode.mappers.targets import align, match_target_stats
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, name = smk.params, smk.wildcards.pipeline_target
X, vindex = load_indexed(smk.input.voxels)
train = (vindex["split"] == "train").to_numpy()
test = (vindex["split"] == "test").to_numpy()
test_index = vindex.loc[test, ["stim_id"]].reset_index(drop=True)
targets, tindex = load_indexed(smk.input.targets)
shape = targets.shape[1:]
Y = align(targets, list(tindex["stim_id"]), list(vindex["stim_id"]), f"{name} targets")
Y = Y.reshape(len(Y), -1)
if p.truth:
    pred = Y[test]
else:
    model = RidgeCV(alphas=p.alphas, cv=p.cv_folds, standardize=p.standardize, seed=p.seed)
    model.fit(X[train], Y[train])
    pred = model.predict(X[test])
    if p.rescale:
        pred = match_target_stats(pred, Y[train])
    log.info("%s: alpha %s, %d features, rescaled: %s", name, model.alpha_, Y.shape[1], p.rescale)
save_indexed(smk.output.pred, pred.reshape(len(pred), *shape).astype("float32"), test_index)
