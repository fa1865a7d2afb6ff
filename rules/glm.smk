"""Stage 1: single-trial betas per subject and session from the raw BOLD runs."""


rule glm:
    """Single-trial betas (per-voxel library HRF, polynomial drift) for one session."""
    input:
        lib("datasets/bids.py", "glm/hrf.py", "glm/design.py", "glm/fit.py"),
        bids=f"{OUT}/bids/sub-{{subject}}",
        sidecar=f"{OUT}/bids/task-images_bold.json",
    output:
        betas=f"{OUT}/glm/sub-{{subject}}/ses-{{session}}/betas.nii.gz",
        trials=f"{OUT}/glm/sub-{{subject}}/ses-{{session}}/trials.parquet",
        voxels=f"{OUT}/glm/sub-{{subject}}/ses-{{session}}/voxels.nii.gz",
    log:
        f"{OUT}/logs/glm/sub-{{subject}}_ses-{{session}}.log",
    benchmark:
        f"{OUT}/benchmarks/glm/sub-{{subject}}_ses-{{session}}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        bids_dir=parent_of("bids"),
        library=config["glm"]["library"],
        poly_degree=config["glm"]["poly_degree"],
        stim_dur=config["glm"]["stim_dur"],
        chunk_size=config["glm"]["chunk_size"],
    script:
        "../workflow_scripts/glm.py"
