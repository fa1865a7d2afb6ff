"""Rule prepare_stimuli: a real dataset's stimulus set in the workflow's files."""

from fmridecode.datasets.sources import stimulus_set
from fmridecode.datasets.stimuli import write_images, write_tables
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
source = smk.params.source
stimuli = stimulus_set({"source": source}, smk.params.sessions)
index, captions, categories = stimuli["index"], stimuli["captions"], stimuli["categories"]
log.info("%d stimuli: %s", len(index), index["split"].value_counts().to_dict())
write_images(smk.output.images, index, stimuli["load"], source["image_size"])
write_tables(captions, stimuli["labels"], categories, smk.output)
log.info(
    "%d captions of %d images, %d categories (%d zero-shot)",
    len(captions),
    captions["stim_id"].nunique(),
    len(categories),
    int(categories["zero_shot"].sum()),
)
