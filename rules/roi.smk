"""Stage 2: voxel matrices per ROI set (z-scored per session, repeats averaged)."""


rule roi:
    """Mask one subject's betas with an ROI, z-score per session, average repeats, split."""
    input:
        lib("roi.py"),
        betas=lambda w: glm_betas(w.subject),
        trials=lambda w: expand(
            f"{OUT}/glm/sub-{w.subject}/ses-{{session}}/trials.parquet",
            session=sessions_of(w.subject),
        ),
        bids=f"{OUT}/bids/sub-{{subject}}",
        images_index=stim("images.index.parquet"),
    output:
        voxels=f"{OUT}/roi/sub-{{subject}}/{{roi}}/voxels.npy",
        index=f"{OUT}/roi/sub-{{subject}}/{{roi}}/voxels.index.parquet",
    log:
        f"{OUT}/logs/roi/sub-{{subject}}_{{roi}}.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        bids_dir=parent_of("bids"),
    script:
        "../workflow_scripts/roi.py"
