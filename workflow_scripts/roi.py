"""Rule roi: one subject's voxel matrix for one ROI set (bounded memory, see voxel_matrix)."""

import pandas as pd

from fmridecode.io import read_parquet, write_json
from fmridecode.roi import defined_mask, roi_mask
from fmridecode.voxel_matrix import session_sources, write_voxel_matrix
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
w, p = smk.wildcards, smk.params
images = read_parquet(smk.input.images_index)
split_of = dict(zip(images["stim_id"], images["split"], strict=True))
if p.definition is None:
    mask = roi_mask(p.root, w.subject, w.roi)
else:
    mask = defined_mask(p.root, w.subject, p.definition, w.roi)
trials = pd.concat([read_parquet(t) for t in smk.input.trials], ignore_index=True)
sessions = session_sources(smk.input.betas, trials, p.sessions, p.format, p.scale)
summary = write_voxel_matrix(
    sessions,
    mask,
    split_of,
    smk.output.voxels,
    smk.output.mask,
    smk.output.coords,
    train_repeats=p.train_repeats,
    zscore=p.zscore,
)
write_json(summary, smk.output.quality)
log.info("voxel matrix of %s: %s", w.roi, summary)
if summary["voxels_dropped_nonfinite"]:
    log.warning("%d voxels dropped: non-finite betas", summary["voxels_dropped_nonfinite"])
