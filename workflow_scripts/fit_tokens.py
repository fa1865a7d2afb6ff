"""Rules fit_vd_tokens and fit_unclip_text: predicted (ridge) or true (truth) token-level
targets of the test images, one ridge per target named in params.targets."""

from fmridecode.io import load_indexed, save_indexed
from fmridecode.mappers.ridge import RidgeCV
from fmridecode.mappers.targets import align, match_target_stats
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
X, vindex = load_indexed(smk.input.voxels)
train = (vindex["split"] == "train").to_numpy()
test = (vindex["split"] == "test").to_numpy()
test_index = vindex.loc[test, ["stim_id"]].reset_index(drop=True)
for target, rescale in p.targets.items():
    tokens, tindex = load_indexed(smk.input[target])
    Y = align(tokens, list(tindex["stim_id"]), list(vindex["stim_id"]), f"{target} targets")
    if p.truth:
        pred = Y[test]
    else:
        model = RidgeCV(alphas=p.alphas, cv=p.cv_folds, standardize=p.standardize, seed=p.seed)
        model.fit(X[train], Y[train])
        pred = model.predict(X[test])
        if rescale:  # token states: Brain-Diffuser's rescaling to the training statistics
            pred = match_target_stats(pred, Y[train])
        log.info("%s targets: alpha %s, %d features", target, model.alpha_, Y.shape[1])
    save_indexed(smk.output[f"pred_{target}"], pred.astype("float32"), test_index)
