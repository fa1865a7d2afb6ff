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


rule first_guess:
    """Two-stage, stage 1: the low-res image predicted from voxels, decoded (generator lowlevel)."""
    input:
        lib("mappers/targets.py", "generators/tiny_diffusion.py"),
        pred=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_lowres.npy",
        pred_index=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_lowres.index.parquet",
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
    output:
        recons=recon_path("lowlevel", "recons.npy"),
        recons_index=recon_path("lowlevel", "recons.index.parquet"),
        pngs=directory(recon_path("lowlevel", "png")),
        grid=report(
            recon_path("lowlevel", "grid.png"),
            category="Reconstructions",
            subcategory="sub-{subject}",
            caption="../report/grid.rst",
        ),
    log:
        f"{OUT}/logs/generate/sub-{{subject}}/{{mapper}}/lowlevel.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        lowres_size=config["fit"]["lowres_size"],
        out_size=config["metrics"]["image_size"],
    script:
        "../workflow_scripts/first_guess.py"


rule generate:
    """Sample one reconstruction per test image from the predicted image embedding
    (tiny: from noise; tiny_two_stage: img2img from the first guess)."""
    input:
        lib("generators/pipeline.py", "generators/tiny_diffusion.py"),
        model=f"{OUT}/models/generator-tiny",
        pred=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.npy",
        pred_index=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.index.parquet",
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
        first_guess=first_guess_of,
    output:
        recons=recon_path("{generator}", "recons.npy"),
        recons_index=recon_path("{generator}", "recons.index.parquet"),
        pngs=directory(recon_path("{generator}", "png")),
        grid=report(
            recon_path("{generator}", "grid.png"),
            category="Reconstructions",
            subcategory="sub-{subject}",
            caption="../report/grid.rst",
        ),
    log:
        f"{OUT}/logs/generate/sub-{{subject}}/{{mapper}}/{{generator}}.log",
    wildcard_constraints:
        generator="tiny|tiny_two_stage",
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        steps=config["generate"]["tiny"]["steps"],
        guidance=config["generate"]["tiny"]["guidance"],
        strength=strength_of,
        seed=config["generate"]["seed"],
        out_size=config["metrics"]["image_size"],
    script:
        "../workflow_scripts/generate.py"
