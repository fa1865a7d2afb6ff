"""Stage 5: reconstruct test images from predicted embeddings with a diffusion model."""


rule train_generator:
    """Train the small embedding-conditioned diffusion model on the non-test stimuli."""
    input:
        lib("generators/pipeline.py", "generators/train.py"),
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
    output:
        model=directory(f"{OUT}/models/generator-tiny"),
        stats=f"{OUT}/models/generator-tiny_stats.json",
    log:
        f"{OUT}/logs/train_generator_tiny.log",
    benchmark:
        f"{OUT}/benchmarks/train_generator_tiny.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=config["generate"]["tiny"],
        seed=config["generate"]["seed"],
    script:
        "../workflow_scripts/train_generator.py"


rule generate:
    """Sample one reconstruction per test image from the predicted image embedding."""
    input:
        lib("generators/pipeline.py", "generators/tiny_diffusion.py"),
        model=f"{OUT}/models/generator-{{generator}}",
        pred=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.npy",
        pred_index=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.index.parquet",
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
    output:
        recons=f"{OUT}/generate/sub-{{subject}}/{{mapper}}/{{generator}}/recons.npy",
        recons_index=f"{OUT}/generate/sub-{{subject}}/{{mapper}}/{{generator}}/recons.index.parquet",
        pngs=directory(f"{OUT}/generate/sub-{{subject}}/{{mapper}}/{{generator}}/png"),
        grid=report(
            f"{OUT}/generate/sub-{{subject}}/{{mapper}}/{{generator}}/grid.png",
            category="Reconstructions",
            subcategory="sub-{subject}",
            caption="../report/grid.rst",
        ),
    log:
        f"{OUT}/logs/generate/sub-{{subject}}_{{mapper}}_{{generator}}.log",
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        steps=config["generate"]["tiny"]["steps"],
        guidance=config["generate"]["tiny"]["guidance"],
        seed=config["generate"]["seed"],
        out_size=config["metrics"]["image_size"],
    script:
        "../workflow_scripts/generate.py"
