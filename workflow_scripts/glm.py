"""Rule glm: single-trial betas of one subject-session."""

import nibabel as nib

from fmridecode.datasets.bids import find_runs
from fmridecode.glm.fit import fit_session
from fmridecode.io import save_nifti, write_parquet
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
w, p = smk.wildcards, smk.params
runs = find_runs(p.bids_dir, w.subject, session=w.session)
mask = nib.load(f"{smk.input.bids}/anat/sub-{w.subject}_desc-brain_mask.nii.gz")
log.info("%d runs", len(runs))
betas, trials, voxels = fit_session(
    runs,
    mask,
    stim_dur=p.stim_dur,
    library=p.library,
    poly_degree=p.poly_degree,
    chunk_size=p.chunk_size,
)
save_nifti(betas, smk.output.betas)
save_nifti(voxels, smk.output.voxels)
write_parquet(trials, smk.output.trials)
log.info("%d trials, betas %s", len(trials), betas.shape)
