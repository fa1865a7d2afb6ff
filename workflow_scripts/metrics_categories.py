"""Rule metrics_categories: category decoding AUC (Mind Reader 3.4) for one subject, from fMRI,
from true CLIP image embeddings and, per mapper, from the decoded embeddings."""

from fmridecode.io import load_indexed, read_parquet
from fmridecode.mappers.targets import align, l2_normalize
from fmridecode.metrics.categories import (
    category_auc_rows,
    multi_hot,
    no_labels_rows,
    train_classifier,
)
from fmridecode.metrics.table import write_metrics
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, w = smk.params, smk.wildcards
X, vindex = load_indexed(smk.input.voxels)
train = (vindex["split"] == "train").to_numpy()
test = (vindex["split"] == "test").to_numpy()
ids = list(vindex["stim_id"])
classes = list(read_parquet(smk.input.categories)["category"])
if not classes:  # a dataset without category labels (NSD, BOLD5000): say so, score nothing
    why = f"unavailable: no category labels in {smk.input.categories}"
    rows = no_labels_rows({"dataset": p.dataset, "subject": w.subject}, p.mappers, why)
    log.warning(why)
else:
    labels = read_parquet(smk.input.labels).groupby("stim_id")["category"].agg(set).to_dict()
    Y = multi_hot([labels.get(s, set()) for s in ids], classes)
    trainable = Y[train].sum(axis=0) > 0  # categories held out of training cannot be learned
    emb, emb_index = load_indexed(smk.input.image)
    clip = l2_normalize(align(emb, list(emb_index["stim_id"]), ids, "image embeddings"))
    settings = dict(p.settings)
    test_ids = [s for s, t in zip(ids, test, strict=True) if t]
    rows = []
    for feature, inputs in (("fmri", X), ("clip", clip)):
        clf = train_classifier(inputs[train], Y[train], seed=p.seed, **settings)
        base = {"dataset": p.dataset, "subject": w.subject, "mapper": "none", "feature": feature}
        rows += category_auc_rows(clf.predict(inputs[test]), Y[test], classes, base, trainable)
        log.info("%s: %d epochs, mean AUC %.3f", feature, clf.epochs_run, rows[-1]["value"])
    for mapper, path in zip(p.mappers, smk.input.pred, strict=True):
        pred, pindex = load_indexed(path)
        pred = l2_normalize(align(pred, list(pindex["stim_id"]), test_ids, "decoded embeddings"))
        base = {
            "dataset": p.dataset,
            "subject": w.subject,
            "mapper": mapper,
            "feature": "mapped_clip",
        }
        rows += category_auc_rows(clf.predict(pred), Y[test], classes, base, trainable)
        log.info("mapped_clip (%s): mean AUC %.3f", mapper, rows[-1]["value"])
write_metrics([{**r, "target": "image"} for r in rows], smk.output[0])
