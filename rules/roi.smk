"""Stage 2: voxel matrices per ROI set (z-scored per session, repeats averaged)."""


rule roi:
    """Mask one subject's betas with an ROI, z-score per session, average repeats, split."""
    input:
        unpack(roi_files),
        lib("roi.py", "voxel_matrix.py"),
        betas=lambda w: session_betas(w)["betas"],
        trials=lambda w: session_betas(w)["trials"],
        images_index=stim("images.index.parquet"),
    output:
        voxels=f"{OUT}/roi/sub-{{subject}}/{{roi}}/voxels.npy",
        index=f"{OUT}/roi/sub-{{subject}}/{{roi}}/voxels.index.parquet",
        mask=f"{OUT}/roi/sub-{{subject}}/{{roi}}/mask.nii.gz",
        coords=f"{OUT}/roi/sub-{{subject}}/{{roi}}/coords.parquet",
        quality=f"{OUT}/roi/sub-{{subject}}/{{roi}}/quality.json",
    log:
        f"{OUT}/logs/roi/sub-{{subject}}_{{roi}}.log",
    benchmark:
        f"{OUT}/benchmarks/roi/sub-{{subject}}_{{roi}}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        kind=KIND,
        root=lambda w: (
            f"{OUT}/bids" if KIND == "synthetic" else config["source"][KIND]["root"]
        ),
        definition=lambda w: config["roi"]["definitions"].get(w.roi),
        sessions=lambda w: sessions_of(w.subject),
        scale=BETA_SCALE if NSD_BETAS else 1.0,
        format=config["source"]["nsd"]["format"] if NSD_BETAS else "nifti",
        train_repeats=config["roi"]["train_repeats"],
        zscore=config["roi"]["zscore"],
    script:
        "../workflow_scripts/roi.py"
