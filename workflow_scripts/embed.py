"""Rule embed: image and caption embedding caches, and how well the space pairs them."""

from pathlib import Path

from fmridecode.devices import resolve_device
from fmridecode.embeddings.cache import load_pooled, write_caches
from fmridecode.embeddings.train import caption_retrieval
from fmridecode.io import write_json
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
summary = write_caches(
    p.model, p.pretrained, p.stim_dir, Path(smk.output.image).parent,
    device=resolve_device(p.device), batch_size=p.batch_size, workers=p.workers, clamp=p.clamp,
    dtype=p.dtype, compute=p.compute, progress=True,
)  # fmt: skip
image, image_index = load_pooled(smk.output.image)
caption, caption_index = load_pooled(smk.output.caption)
quality = caption_retrieval(image, image_index, caption, caption_index, split="test")
# flat keys (the report lists the scalar entries of this file)
summary.update(
    test_image_to_text_top1=quality["image_to_text"],
    test_text_to_image_top1=quality["text_to_image"],
    test_top1_chance=quality["chance"],
    test_top1_n=quality["n"],
    test_top1_caption_kind=quality["kind"],
    n_clamped_image_dims=len(summary["clamped_image_dims"]),
    n_clamped_caption_dims=len(summary["clamped_caption_dims"]),
)
write_json(summary, smk.output.quality)
log.info("caches written: %s", summary)
