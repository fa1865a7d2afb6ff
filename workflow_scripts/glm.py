"""Rule glm: GLMsingle types A-D for one subject-session."""

from fmridecode.datasets.sources import session_brain_mask, session_runs
from fmridecode.glm.fit import check_scanned_stimuli, epi_mask, fit_session
from fmridecode.glm.official import fit_session_official
from fmridecode.glm.outputs import write_outputs
from fmridecode.glm.single import options_from_config
from fmridecode.io import read_parquet, write_parquet
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
w, p = smk.wildcards, smk.params
config = {"source": p.source}
runs = session_runs(config, w.subject, w.session, p.synthetic_root)
check_scanned_stimuli(runs, read_parquet(smk.input.stimuli)["stim_id"])
mask = session_brain_mask(config, w.subject, w.session, p.synthetic_root)
if mask is None:  # the dataset ships no brain mask: one from the first run's mean EPI
    mask = epi_mask(runs[0])
    log.info(
        "brain mask from %s's mean EPI: %d voxels", runs[0].bold_path.name, mask.get_fdata().sum()
    )
opts = options_from_config(p.glm)
log.info("%d runs, method %s, types %s", len(runs), p.glm["method"], opts.types)
fitter = fit_session_official if p.glm["method"] == "glmsingle" else fit_session
fit = fitter(runs, mask, stim_dur=p.glm["stim_dur"], options=opts)
betas = dict(zip(p.beta_types, smk.output.betas, strict=True))
write_outputs(fit, opts, betas, smk.output.maps, smk.output.summary, smk.output.figures)
write_parquet(fit.trials, smk.output.trials)
log.info("%d trials, %d voxels, %d noise PCs", len(fit.trials), fit.mask.sum(), fit.result.pcnum)
