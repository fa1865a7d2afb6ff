"""Rule embed: image and caption embedding caches."""

from pathlib import Path

from fmridecode.embeddings.cache import write_caches
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
write_caches(
    smk.params.model, smk.params.pretrained, smk.params.stim_dir, Path(smk.output.image).parent
)
log.info("caches written")
