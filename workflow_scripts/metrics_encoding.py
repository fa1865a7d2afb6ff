"""Rule metrics_encoding: the encoding direction (Mind Reader A.8), CLIP image embeddings ->
the fit ROI's voxels by ridge; per-voxel test r against the noise ceiling, per ROI."""

import nibabel as nib
import numpy as np
from nilearn import masking

from fmridecode.embeddings.cache import load_pooled
from fmridecode.io import load_indexed, save_nifti, write_parquet
from fmridecode.metrics.encoding import (
    encoding_figure,
    encoding_rows,
    fit_encoding,
    roi_columns,
    voxel_labels,
    voxel_table,
)
from fmridecode.metrics.table import write_metrics
from fmridecode.roi import roi_mask
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, w, out = smk.params, smk.wildcards, smk.output
voxels, vindex = load_indexed(smk.input.voxels)
emb, emb_index = load_pooled(smk.input.image)
fit = fit_encoding(
    emb, emb_index["stim_id"], voxels, vindex, p.alphas, p.cv_folds, p.alpha_per_target, p.seed
)
mask = roi_mask(p.bids_dir, w.subject, p.fit_roi)
nc = masking.apply_mask(nib.load(smk.input.noise_ceiling), mask).astype(np.float64)
if nc.shape != fit.r.shape:
    raise ValueError(
        f"{smk.input.noise_ceiling}: {nc.size} voxels in {p.fit_roi}, r has {fit.r.size}"
    )
columns = roi_columns(p.bids_dir, w.subject, p.fit_roi)
base = {"dataset": p.dataset, "subject": w.subject, "mapper": "none", "feature": "clip"}
rows = encoding_rows(fit.r, nc, columns, base, p.fit_roi)
write_metrics(rows, out.table)
for row in rows:
    log.info(
        "%s %s: %.3f (n = %d) %s", row["metric"], row["roi"], row["value"], row["n"], row["status"]
    )
labels = voxel_labels(columns)
ijk = np.argwhere(np.asarray(mask.dataobj) > 0)  # C order, as the voxel matrix's columns
write_parquet(voxel_table(fit.r, nc, fit.alpha, labels, ijk), out.voxels)
save_nifti(masking.unmask(np.nan_to_num(fit.r).astype(np.float32), mask), out.map)
n_test = len(fit.test_ids)
title = f"encoding model, sub-{w.subject}, {p.fit_roi}: {fit.n_train} train / {n_test} test images"
encoding_figure(fit.r, nc, labels, out.figure, title)
alphas, counts = np.unique(fit.alpha, return_counts=True)
log.info("voxels per alpha: %s", {float(a): int(c) for a, c in zip(alphas, counts, strict=True)})
