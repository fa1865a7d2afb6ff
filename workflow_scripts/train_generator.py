"""Rule train_generator: train the small embedding-conditioned diffusion model."""

from fmridecode.embeddings.cache import load_pooled
from fmridecode.generators.train import train_generator
from fmridecode.io import load_indexed, write_json
from fmridecode.mappers.targets import align
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
s = smk.params.settings
images, index = load_indexed(smk.input.images)
emb, emb_index = load_pooled(smk.input.image)
keep = (index["split"] != "test").to_numpy()
ids = list(index["stim_id"][keep])
stats = train_generator(
    images[keep],
    align(emb, list(emb_index["stim_id"]), ids, "image embeddings"),
    smk.output.model,
    image_size=s["image_size"],
    epochs=s["epochs"],
    max_minutes=s["max_minutes"],
    batch_size=s["batch_size"],
    lr=s["lr"],
    seed=smk.params.seed,
    threads=smk.threads,
)
stats["n_train_images"] = len(ids)
write_json(stats, smk.output.stats)
log.info("generator trained on %d images", len(ids))
if stats["stopped_by"] != "epochs":
    log.warning(
        "max_minutes stopped training after %.1f of %d epochs: results now depend on machine "
        "speed; lower generate.tiny.epochs or raise max_minutes for a reproducible run",
        stats["epochs_fraction"],
        s["epochs"],
    )
