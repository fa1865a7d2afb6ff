"""fmridecode: decode seen images from fMRI, from raw BOLD to metric tables.

    raw BOLD + events -> glm -> betas -> roi -> voxel matrices --+
    stimuli -> embed -> CLIP caches -----------------------------+-> fit -> predictions
                                            generate <-----------+        |
                                            metrics <---------------------+-> report

Run: snakemake --cores 2            (the embedded default config.yaml)
     snakemake --cores 2 --configfile tests/configs/tiny.yaml   (the test size)
"""

import os

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config.yaml")


include: "rules/common.smk"


if KIND == "synthetic":

    include: "rules/simulate.smk"

else:

    include: "rules/source.smk"


include: "rules/glm.smk"
include: "rules/roi.smk"
include: "rules/embed.smk"
include: "rules/fit.smk"
include: "rules/generate.smk"
include: "rules/analyses.smk"
include: "rules/metrics.smk"
include: "rules/report.smk"


#: every configured ROI matrix of every subject: the end of the data stages
VOXELS = expand(
    f"{OUT}/roi/sub-{{subject}}/{{roi}}/voxels.npy",
    subject=SUBJECTS,
    roi=config["roi"]["sets"],
)


rule all:
    """The metric tables of the whole run, the report, and every configured ROI matrix (on a
    real dataset without the simulator's ground-truth metrics and the anat-label analyses).
    """
    default_target: True
    input:
        f"{OUT}/metrics.parquet",
        f"{OUT}/report/report.html",
        noise_table(),
        token_caches(),
        VOXELS,


rule data:
    """The data stages only: the stimulus set and every subject's ROI voxel matrices."""
    input:
        VOXELS,
        stim("images.npy"),
