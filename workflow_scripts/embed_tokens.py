"""Rule embed_tokens: token-level CLIP hidden states of every image or caption, on disk."""

from fmridecode.devices import resolve_device
from fmridecode.embeddings.cache import write_token_caches
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
shapes = write_token_caches(
    p.model, p.pretrained, p.stim_dir, {smk.wildcards.what: smk.output.out}, dtype=p.dtype,
    compute=p.compute, device=resolve_device(p.device), batch_size=p.batch_size,
    workers=p.workers, progress=True,
)  # fmt: skip
log.info("token cache %s: shape %s, %s", smk.wildcards.what, shapes, p.dtype)
