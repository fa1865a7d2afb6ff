"""Rule embed_unclip: SD unCLIP's own targets for the shown images.

what=text: each image's captions through the pipeline's tokenizer and text encoder, averaged
per image (as Brain-Diffuser averages its caption targets): (N, 77, width) token states.
what=latent: the images' VAE latents (N, 4, h, w), the low-level first guess's target.
"""

import pandas as pd

from fmridecode.generators.unclip import encode_text_tokens, load_unclip
from fmridecode.generators.vae_latents import encode_latents
from fmridecode.io import load_indexed, read_parquet, save_indexed
from fmridecode.mappers.targets import mean_per_stimulus
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, what = smk.params, smk.wildcards.what
images, index = load_indexed(smk.input.images, mmap=True)
shown = index["split"].isin(["train", "test"]).to_numpy()
index = index.loc[shown].reset_index(drop=True)
ids = pd.DataFrame({"stim_id": index["stim_id"], "split": index["split"]})
pipe = load_unclip(p.model, dtype=p.dtype)
if what == "text":
    captions = read_parquet(smk.input.captions)
    captions = captions[captions["stim_id"].isin(index["stim_id"])].reset_index(drop=True)
    log.info("SD unCLIP text encoder: %d captions of %d images", len(captions), len(index))
    tokens = encode_text_tokens(pipe, list(captions["caption"]))
    out, _ = mean_per_stimulus(tokens, captions, list(index["stim_id"]))
else:
    log.info("SD unCLIP VAE: latents of %d images", len(index))
    out = encode_latents(pipe, images[shown])
save_indexed(smk.output.out, out.astype("float32"), ids)
log.info("%s targets %s from %s", what, out.shape, p.model)
