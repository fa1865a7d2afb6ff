"""Rule train_clip: train the small open_clip model on the non-test stimuli."""

import numpy as np
import pandas as pd

from fmridecode.embeddings.train import train_clip
from fmridecode.io import atomic_path, load_indexed, read_parquet, write_json
from fmridecode.report.figures import training_curve_figure
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
images, index = load_indexed(smk.input.images)
keep = (index["split"] != "test").to_numpy()
captions = read_parquet(smk.input.captions)
t = smk.params.train
stats = train_clip(
    images[keep],
    captions,
    list(index["stim_id"][keep]),
    smk.output.checkpoint,
    model_name=smk.params.model,
    epochs=t["epochs"],
    max_minutes=t["max_minutes"],
    batch_size=t["batch_size"],
    lr=t["lr"],
    seed=smk.params.seed,
    threads=smk.threads,
)
stats["n_train_images"] = int(np.sum(keep))
write_json(stats, smk.output.stats)
losses = stats["loss_per_epoch"]
curve = pd.DataFrame({"epoch": range(1, len(losses) + 1), "train_loss": losses,
                      "val_loss": float("nan"), "model": smk.params.model,
                      "phase": "contrastive"})  # fmt: skip
with atomic_path(smk.output.curve) as tmp:
    tmp.write_bytes(training_curve_figure(curve, "CLIP trained on the non-test stimuli"))
log.info(
    "trained on %d images: %s", int(np.sum(keep)), {k: stats[k] for k in stats if "curve" not in k}
)
if stats["stop_reason"] != "epochs":
    log.warning(
        "max_minutes stopped training after %d of %d epochs: results now depend on machine "
        "speed; lower embed.train.epochs or raise max_minutes for a reproducible run",
        stats["epochs_run"],
        stats["epochs_requested"],
    )
