"""Rule embed_vd_tokens: Versatile Diffusion's token embeddings of shown images and captions
(averaged per image), and the images' VAE latents, stored unflattened."""

import pandas as pd

from fmridecode.generators.vae_latents import encode_latents
from fmridecode.generators.versatile import encode_condition_tokens, load_versatile
from fmridecode.io import load_indexed, read_parquet, save_indexed
from fmridecode.mappers.targets import mean_per_stimulus
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
images, index = load_indexed(smk.input.images)
shown = index["split"].isin(["train", "test"]).to_numpy()
images, index = images[shown], index.loc[shown].reset_index(drop=True)
captions = read_parquet(smk.input.captions)
captions = captions[captions["stim_id"].isin(index["stim_id"])].reset_index(drop=True)
pipe = load_versatile(p.model, dtype=p.dtype)
log.info("Versatile Diffusion from %s: %d images, %d captions", p.model, len(images), len(captions))
image_tokens, _ = encode_condition_tokens(pipe, images, None)
_, caption_tokens = encode_condition_tokens(pipe, None, list(captions["caption"]))
text_tokens, _ = mean_per_stimulus(caption_tokens, captions, list(index["stim_id"]))
latents = encode_latents(pipe, images)
ids = pd.DataFrame({"stim_id": index["stim_id"], "split": index["split"]})
for name, arr in (("image", image_tokens), ("text", text_tokens), ("latent", latents)):
    save_indexed(smk.output[name], arr.astype("float32"), ids)
    log.info("%s targets %s", name, arr.shape)
