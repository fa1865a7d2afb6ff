"""Rule roi: one subject's voxel matrix for one ROI set."""

import nibabel as nib

from fmridecode.io import read_parquet, save_indexed
from fmridecode.roi import build_voxel_matrix, roi_mask
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
images = read_parquet(smk.input.images_index)
split_of = dict(zip(images["stim_id"], images["split"], strict=True))
mask = roi_mask(smk.params.bids_dir, smk.wildcards.subject, smk.wildcards.roi)
X, index = build_voxel_matrix(
    [nib.load(p) for p in smk.input.betas],
    [read_parquet(p) for p in smk.input.trials],
    mask,
    split_of,
)
save_indexed(smk.output.voxels, X.astype("float32"), index)
log.info("voxel matrix %s, splits %s", X.shape, index["split"].value_counts().to_dict())
