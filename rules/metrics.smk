"""Stage 6: tidy metric tables per stage, concatenated into <results>/<dataset>/metrics.parquet."""


rule metrics_glm:
    """GLM recovery: estimated single-trial betas against the simulator's true amplitudes."""
    input:
        unpack(glm_inputs),
        lib("metrics/glm_recovery.py", "metrics/table.py"),
        truth=f"{OUT}/truth/sub-{{subject}}.npz",
    output:
        f"{OUT}/metrics/glm/sub-{{subject}}.parquet",
    log:
        f"{OUT}/logs/metrics/glm_sub-{{subject}}.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        dataset=config["dataset"],
    script:
        "../workflow_scripts/metrics_glm.py"


rule metrics_decoding:
    """Retrieval Recall@k (image and text, both directions) and 2-way identification."""
    input:
        lib("metrics/retrieval.py", "metrics/identification.py", "metrics/table.py"),
        pred_image=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.npy",
        pred_image_index=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.index.parquet",
        pred_text=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_text.npy",
        pred_text_index=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_text.index.parquet",
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
        caption=f"{OUT}/embed/caption.npy",
        caption_index=f"{OUT}/embed/caption.index.parquet",
    output:
        f"{OUT}/metrics/decoding/sub-{{subject}}/{{mapper}}.parquet",
    log:
        f"{OUT}/logs/metrics/decoding/sub-{{subject}}/{{mapper}}.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        dataset=config["dataset"],
        ks=config["metrics"]["ks"],
    script:
        "../workflow_scripts/metrics_decoding.py"


rule metrics_recon:
    """PixCorr, SSIM and 2-way identification (CLIP embedding features) of reconstructions."""
    input:
        lib(
            "metrics/image.py",
            "metrics/identification.py",
            "metrics/table.py",
            "embeddings/model.py",
            "embeddings/cache.py",
        ),
        checkpoint=clip_checkpoint(),
        recons=f"{OUT}/generate/sub-{{subject}}/{{mapper}}/{{generator}}/recons.npy",
        recons_index=f"{OUT}/generate/sub-{{subject}}/{{mapper}}/{{generator}}/recons.index.parquet",
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
    output:
        f"{OUT}/metrics/recon/sub-{{subject}}/{{mapper}}/{{generator}}.parquet",
    log:
        f"{OUT}/logs/metrics/recon/sub-{{subject}}/{{mapper}}/{{generator}}.log",
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        dataset=config["dataset"],
        image_size=config["metrics"]["image_size"],
        model=config["embed"]["model"],
        pretrained=clip_weights,
    script:
        "../workflow_scripts/metrics_recon.py"


rule metrics_all:
    """Concatenate every stage's metric table into one tidy table."""
    input:
        lib("metrics/table.py"),
        tables=expand(f"{OUT}/metrics/glm/sub-{{subject}}.parquet", subject=SUBJECTS)
        + expand(
            f"{OUT}/metrics/decoding/sub-{{subject}}/{{mapper}}.parquet",
            subject=SUBJECTS,
            mapper=config["fit"]["mappers"],
        )
        + expand(
            f"{OUT}/metrics/recon/sub-{{subject}}/{{mapper}}/{{generator}}.parquet",
            subject=SUBJECTS,
            mapper=config["fit"]["mappers"],
            generator=scored_generators(),
        ),
    output:
        report(f"{OUT}/metrics.parquet", category="Metrics"),
    log:
        f"{OUT}/logs/metrics/all.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/metrics_all.py"
