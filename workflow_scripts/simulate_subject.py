"""Rule simulate_subject: one subject's BOLD runs in BIDS, ROI images and ground truth."""

from pathlib import Path

from fmridecode.datasets.synthetic import simulate_subject
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
simulate_subject(
    subject=smk.wildcards.subject,
    stim_dir=Path(smk.input.images).parent,
    bids_dir=Path(smk.output.bids).parent,
    truth_path=smk.output.truth,
    size=smk.params.size,
    snr=smk.params.snr,
    seed=smk.params.seed,
)
log.info("subject %s written", smk.wildcards.subject)
