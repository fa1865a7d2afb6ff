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
        lib("mappers/targets.py", "images.py"),
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
    """The tiny generator family, all configured variants in one job per subject and mapper
    (tiny: from noise; tiny_two_stage: img2img from the first guess; tiny_guided: CLIP-gradient
    guidance from a retrieved prior); best of generate.best_of samples each."""
    input:
        lib(
            "generators/pipeline.py",
            "generators/tiny_diffusion.py",
            "generators/best_of.py",
            "generators/guidance.py",
            "generators/resume.py",
            "generators/seeding.py",
            "images.py",
        ),
        checkpoint=clip_checkpoint(),
        model=f"{OUT}/models/generator-tiny",
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
        pred=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.npy",
        pred_index=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.index.parquet",
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
        first_guess=first_guess_input(),
    output:
        recons=[recon_path(g, "recons.npy") for g in TINY_GENERATORS],
        recons_index=[recon_path(g, "recons.index.parquet") for g in TINY_GENERATORS],
        pngs=[directory(recon_path(g, "png")) for g in TINY_GENERATORS],
        grids=[
            report(
                recon_path(g, "grid.png"),
                category="Reconstructions",
                subcategory="sub-{subject}",
                caption="../report/grid.rst",
            )
            for g in TINY_GENERATORS
        ],
    log:
        f"{OUT}/logs/generate/sub-{{subject}}/{{mapper}}/tiny_family.log",
    benchmark:
        f"{OUT}/benchmarks/generate/sub-{{subject}}/{{mapper}}/tiny_family.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        gpu=gpus(config["generate"]["tiny"]["device"]),
        mem_mb=4000,
        runtime=30,
    params:
        generators=tiny_settings(),
        steps=config["generate"]["tiny"]["steps"],
        guidance=config["generate"]["tiny"]["guidance"],
        sample_batch=config["generate"]["tiny"]["sample_batch"],
        device=config["generate"]["tiny"]["device"],
        best_of=config["generate"]["best_of"],
        seed=config["generate"]["seed"],
        out_size=config["metrics"]["image_size"],
        clip_model=config["embed"]["model"],
        clip_pretrained=clip_weights,
    script:
        "../workflow_scripts/generate.py"


rule generate_unclip:
    """sd_unclip: Stable Diffusion 2.1 unCLIP conditioned on the predicted CLIP image embedding."""
    input:
        lib(
            "generators/unclip.py",
            "generators/hf_parts.py",
            "generators/best_of.py",
            "generators/resume.py",
            "generators/seeding.py",
            "generators/vae_latents.py",
            "images.py",
        ),
        checkpoint=clip_checkpoint(),
        model=local_model("sd_unclip"),
        first_guess=unclip_first_guess(),
        caption=unclip_caption(),
        pred=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.npy",
        pred_index=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.index.parquet",
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
    output:
        recons=recon_path("sd_unclip", "recons.npy"),
        recons_index=recon_path("sd_unclip", "recons.index.parquet"),
        pngs=directory(recon_path("sd_unclip", "png")),
        grid=report(
            recon_path("sd_unclip", "grid.png"),
            category="Reconstructions",
            subcategory="sub-{subject}",
            caption="../report/grid.rst",
        ),
    log:
        f"{OUT}/logs/generate/sub-{{subject}}/{{mapper}}/sd_unclip.log",
    benchmark:
        f"{OUT}/benchmarks/generate/sub-{{subject}}/{{mapper}}/sd_unclip.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=60,
    params:
        settings=config["generate"]["sd_unclip"],
        best_of=config["generate"]["best_of"],
        seed=config["generate"]["seed"],
        out_size=config["metrics"]["image_size"],
        clip_model=config["embed"]["model"],
        clip_pretrained=clip_weights,
    script:
        "../workflow_scripts/generate_unclip.py"


rule vae_first_guess:
    """Real pipelines, stage 1: predicted VAE latents decoded by the pipeline's VAE (generators
    vd_lowlevel for versatile_diffusion, unclip_lowlevel for sd_unclip with first_guess: vae).
    """
    input:
        lib("generators/vae_latents.py", "generators/hf_parts.py", "images.py"),
        lambda w: local_model(LOWLEVEL_OF[w.generator]),
        pred=lambda w: pred_path(f"{PREFIX[LOWLEVEL_OF[w.generator]]}_latent"),
        pred_index=lambda w: pred_path(
            f"{PREFIX[LOWLEVEL_OF[w.generator]]}_latent", True
        ),
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
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
        generator="vd_lowlevel|unclip_lowlevel",
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        family=lambda w: LOWLEVEL_OF[w.generator],
        model=lambda w: config["generate"][LOWLEVEL_OF[w.generator]]["model"],
        dtype=lambda w: config["generate"][LOWLEVEL_OF[w.generator]]["dtype"],
        out_size=config["metrics"]["image_size"],
    script:
        "../workflow_scripts/vae_first_guess.py"


rule generate_versatile:
    """versatile_diffusion, stage 2: dual-guided img2img from predicted tokens, starting from
    the decoded first guess (vd_lowlevel)."""
    input:
        lib(
            "generators/versatile.py",
            "generators/hf_parts.py",
            "generators/resume.py",
            "generators/best_of.py",
            "generators/seeding.py",
            "images.py",
        ),
        checkpoint=clip_checkpoint(),
        pred_clip=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.npy",
        pred_clip_index=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.index.parquet",
        model=local_model("versatile_diffusion"),
        pred_image=pred_path("vd_image"),
        pred_image_index=pred_path("vd_image", True),
        pred_text=pred_path("vd_text"),
        pred_text_index=pred_path("vd_text", True),
        first_guess=recon_path("vd_lowlevel", "recons.npy"),
        first_guess_index=recon_path("vd_lowlevel", "recons.index.parquet"),
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
    output:
        recons=recon_path("versatile_diffusion", "recons.npy"),
        recons_index=recon_path("versatile_diffusion", "recons.index.parquet"),
        pngs=directory(recon_path("versatile_diffusion", "png")),
        grid=report(
            recon_path("versatile_diffusion", "grid.png"),
            category="Reconstructions",
            subcategory="sub-{subject}",
            caption="../report/grid.rst",
        ),
    log:
        f"{OUT}/logs/generate/sub-{{subject}}/{{mapper}}/versatile_diffusion.log",
    benchmark:
        f"{OUT}/benchmarks/generate/sub-{{subject}}/{{mapper}}/versatile_diffusion.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=120,
    params:
        settings=config["generate"]["versatile_diffusion"],
        best_of=config["generate"]["best_of"],
        seed=config["generate"]["seed"],
        out_size=config["metrics"]["image_size"],
        clip_model=config["embed"]["model"],
        clip_pretrained=clip_weights,
    script:
        "../workflow_scripts/generate_versatile.py"
