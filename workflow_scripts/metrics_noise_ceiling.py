"""Rule metrics_noise_ceiling: NSD's noise ceiling of one subject's betas, per voxel (a map on
the fit ROI) and per ROI set (median over its voxels); the GLM's R2 per ROI set and type."""

import nibabel as nib
import numpy as np
from nilearn import masking

from fmridecode.glm.outputs import r2_per_roi, save_mosaic
from fmridecode.io import atomic_path, read_parquet, save_nifti
from fmridecode.metrics.noise_ceiling import noise_ceiling, repeats_averaged, signal_noise_sd
from fmridecode.metrics.table import write_metrics
from fmridecode.roi import roi_mask, trial_matrix
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, w = smk.params, smk.wildcards
betas = [nib.load(b) for b in smk.input.betas]
trials = [read_parquet(t) for t in smk.input.trials]
images = read_parquet(smk.input.images_index)
test_ids = set(images.loc[images["split"] == "test", "stim_id"])
base = {"dataset": p.dataset, "subject": w.subject, "mapper": "none"}
masks = {roi: roi_mask(p.bids_dir, w.subject, roi) for roi in p.rois}
sessions = list(zip(smk.input.maps, smk.input.summaries, strict=True))
rows = [{**base, "metric": "glm_r2", **r} for r in r2_per_roi(sessions, masks)]
for roi, mask in masks.items():
    X, table = trial_matrix(betas, trials, mask)
    n_avg = repeats_averaged(table["stim_id"], test_ids)
    signal_sd, noise_sd = signal_noise_sd(X, table["stim_id"])
    nc = noise_ceiling(signal_sd, noise_sd, n_avg)
    rows.append(
        {**base, "metric": "noise_ceiling", "feature": "ncsnr", "roi": roi,
         "glm_type": p.glm_type, "value": float(np.median(nc)), "n": int(nc.size)}
    )  # fmt: skip
    log.info(
        "%s: %d voxels, median noise ceiling %.1f %% (n = %d)",
        roi,
        nc.size,
        rows[-1]["value"],
        n_avg,
    )
    if roi == p.map_roi:
        img = masking.unmask(nc.astype(np.float32), mask)
        save_nifti(img, smk.output.map)
        inside = np.asarray(mask.dataobj) > 0
        vol = np.where(inside, img.get_fdata(), np.nan)
        title = f"noise ceiling (%), sub-{w.subject}, {roi}, n = {n_avg}"
        with atomic_path(smk.output.figure) as tmp:
            save_mosaic(vol, tmp, title, "viridis", 0, 100)
write_metrics(rows, smk.output.table)
