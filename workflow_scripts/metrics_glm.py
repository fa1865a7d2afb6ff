"""Rule metrics_glm: recovery of the true single-trial amplitudes by the GLM betas."""

import nibabel as nib
import numpy as np
import pandas as pd

from fmridecode.io import read_parquet
from fmridecode.metrics.glm_recovery import glm_recovery
from fmridecode.metrics.table import write_metrics
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
truth = dict(np.load(smk.input.truth))
ijk = tuple(truth["voxel_ijk"].T)
trials = pd.concat([read_parquet(p) for p in smk.input.trials], ignore_index=True)
base = {"dataset": smk.params.dataset, "subject": smk.wildcards.subject, "mapper": "none"}
rows = []
for glm_type in smk.params.types:
    paths = smk.input[f"betas_{glm_type}"]
    paths = [paths] if isinstance(paths, str) else list(paths)
    betas = np.concatenate([np.asarray(nib.load(p).dataobj)[ijk].T for p in paths])
    res = glm_recovery(betas, trials, truth)
    log.info("GLM recovery, type %s: %s", glm_type, res)
    rows.append(
        {
            **base,
            "metric": "glm_recovery_r",
            "glm_type": glm_type,
            "value": res["r_median"],
            "n": int(truth["responsive"].sum()),
        }
    )
rows += [
    {
        **base,
        "metric": "noise_ceiling",
        "feature": "simulated",  # the simulator's true one (metrics_noise_ceiling: estimated)
        "value": float(np.median(truth["noise_ceiling"][truth["responsive"]])),
        "n": int(truth["responsive"].sum()),
    },
]
write_metrics(rows, smk.output[0])
