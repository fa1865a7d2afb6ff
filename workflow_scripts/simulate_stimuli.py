"""Rule simulate_stimuli: draw the synthetic stimulus set and the dataset description."""

from pathlib import Path

from fmridecode.datasets.synthetic import simulate_stimuli
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
simulate_stimuli(
    stim_dir=Path(smk.output.images).parent,
    bids_dir=Path(smk.output.description).parent,
    size=smk.params.size,
    seed=smk.params.seed,
)
log.info("stimuli written")
