"""Stage 3: CLIP embedding caches (image and caption), with the small model trained here."""


rule train_clip:
    """Train the small open_clip dual encoder on the non-test stimuli and their captions."""
    input:
        lib("embeddings/model.py", "embeddings/train.py", "report/figures.py"),
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
        captions=stim("captions.parquet"),
    output:
        checkpoint=f"{OUT}/models/clip/checkpoint.pt",
        stats=f"{OUT}/models/clip/train_stats.json",
        curve=report(
            f"{OUT}/models/clip/curve.png",
            category="Embeddings",
            labels={"model": "CLIP (trained here)"},
        ),
    log:
        f"{OUT}/logs/train_clip.log",
    benchmark:
        f"{OUT}/benchmarks/train_clip.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        model=config["embed"]["model"],
        train=config["embed"]["train"],
        seed=config["embed"]["seed"],
    script:
        "../workflow_scripts/train_clip.py"


rule embed:
    """Embed every stimulus image and caption once with the CLIP model (outlier dimensions
    clamped, then unit norm), and record the model's identity."""
    input:
        lib(
            "embeddings/model.py",
            "embeddings/cache.py",
            "embeddings/tokens.py",
            "embeddings/clamp.py",
            "embeddings/train.py",
        ),
        checkpoint=clip_checkpoint(),
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
        captions=stim("captions.parquet"),
    output:
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
        caption=f"{OUT}/embed/caption.npy",
        caption_index=f"{OUT}/embed/caption.index.parquet",
        clamped=f"{OUT}/embed/clamped.parquet",
        model=f"{OUT}/embed/model.json",
        quality=f"{OUT}/embed/quality.json",
    log:
        f"{OUT}/logs/embed.log",
    benchmark:
        f"{OUT}/benchmarks/embed.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        gpu=gpus(config["embed"]["device"]),
        mem_mb=4000,
        runtime=20,
    params:
        model=config["embed"]["model"],
        pretrained=clip_weights,
        stim_dir=parent_of("images"),
        clamp=config["embed"]["clamp"],
        dtype=config["embed"]["dtype"]["pooled"],
        compute=config["embed"]["dtype"]["compute"],
        batch_size=config["embed"]["batch_size"],
        workers=config["embed"]["workers"],
        device=config["embed"]["device"],
    script:
        "../workflow_scripts/embed.py"


rule screen_captions:
    """Mind Reader's caption screening: CLIP probabilities of each image's captions; keep
    those at least keep_ratio x the best one (the cache every text target is made from).
    """
    input:
        lib("embeddings/screening.py"),
        image=rules.embed.output.image,
        caption=rules.embed.output.caption,
        model=rules.embed.output.model,
        captions=stim("captions.parquet"),
    output:
        table=f"{OUT}/embed/caption_screening.parquet",
        summary=f"{OUT}/embed/screening.json",
        kept=CAPTIONS,
        kept_index=CAPTIONS_INDEX,
    log:
        f"{OUT}/logs/screen_captions.log",
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        keep_ratio=config["embed"]["screening"]["keep_ratio"],
        dtype=config["embed"]["dtype"]["pooled"],
    script:
        "../workflow_scripts/screen_captions.py"


rule embed_views:
    """Mind Reader's augmentation: CLIP embeddings of augmented views of every non-test
    image, clamped like the image cache (extra image targets for the trainable mappers).
    """
    input:
        lib(
            "embeddings/augment.py",
            "embeddings/model.py",
            "embeddings/cache.py",
            "embeddings/tokens.py",
        ),
        checkpoint=clip_checkpoint(),
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
        quality=rules.embed.output.quality,
    output:
        views=VIEWS,
        views_index=f"{OUT}/embed/image_views.index.parquet",
    log:
        f"{OUT}/logs/embed_views.log",
    benchmark:
        f"{OUT}/benchmarks/embed_views.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        gpu=gpus(config["embed"]["device"]),
        mem_mb=4000,
        runtime=30,
    params:
        model=config["embed"]["model"],
        pretrained=clip_weights,
        augment=config["embed"]["augment"],
        dtype=config["embed"]["dtype"]["pooled"],
        compute=config["embed"]["dtype"]["compute"],
        seed=config["embed"]["seed"],
        batch_size=config["embed"]["batch_size"],
        workers=config["embed"]["workers"],
        device=config["embed"]["device"],
    script:
        "../workflow_scripts/embed_views.py"


rule embed_tokens:
    """Token-level CLIP caches (image patches, caption positions), streamed to disk."""
    input:
        lib("embeddings/model.py", "embeddings/cache.py", "embeddings/tokens.py"),
        checkpoint=clip_checkpoint(),
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
        captions=stim("captions.parquet"),
    output:
        out=f"{OUT}/embed/{{what}}_tokens.npy",
        out_index=f"{OUT}/embed/{{what}}_tokens.index.parquet",
    log:
        f"{OUT}/logs/embed_tokens_{{what}}.log",
    benchmark:
        f"{OUT}/benchmarks/embed_tokens/{{what}}.tsv"
    wildcard_constraints:
        what="image|caption",
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        gpu=gpus(config["embed"]["device"]),
        mem_mb=8000,
        runtime=120,
    params:
        model=config["embed"]["model"],
        pretrained=clip_weights,
        stim_dir=parent_of("images"),
        dtype=config["embed"]["dtype"]["tokens"],
        compute=config["embed"]["dtype"]["compute"],
        batch_size=config["embed"]["batch_size"],
        workers=config["embed"]["workers"],
        device=config["embed"]["device"],
    script:
        "../workflow_scripts/embed_tokens.py"


rule embed_classes:
    """Zero-shot class embeddings: every category name in the 18 prompt templates, encoded
    with the CLIP model and averaged per class; or after learned context vectors (CoOp).
    """
    input:
        lib(
            "embeddings/model.py",
            "embeddings/cache.py",
            "embeddings/prompts.py",
            "embeddings/tokens.py",
            "mappers/targets.py",
            "metrics/zero_shot.py",
            "metrics/decoding.py",
        ),
        checkpoint=clip_checkpoint(),
        categories=stim("categories.parquet"),
        context=[config["embed"]["context"]] if config["embed"]["context"] else [],
        image=rules.embed.output.image,
        image_index=rules.embed.output.image_index,
        caption=CAPTIONS,
        caption_index=CAPTIONS_INDEX,
        labels=stim("labels.parquet"),
    output:
        classes=f"{OUT}/embed/classes.npy",
        classes_index=f"{OUT}/embed/classes.index.parquet",
        quality=f"{OUT}/embed/classes_quality.json",
    log:
        f"{OUT}/logs/embed_classes.log",
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        model=config["embed"]["model"],
        pretrained=clip_weights,
    script:
        "../workflow_scripts/embed_classes.py"


rule embed_vd_tokens:
    """versatile_diffusion targets: token embeddings of shown images and their captions, and
    the images' VAE latents (the low-level first-guess target)."""
    input:
        lib(
            "generators/versatile.py",
            "generators/hf_parts.py",
            "generators/vae_latents.py",
        ),
        model=local_model("versatile_diffusion"),
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
        captions=stim("captions.parquet"),
    output:
        image=f"{OUT}/embed/vd_image.npy",
        image_index=f"{OUT}/embed/vd_image.index.parquet",
        text=f"{OUT}/embed/vd_text.npy",
        text_index=f"{OUT}/embed/vd_text.index.parquet",
        latent=f"{OUT}/embed/vd_latent.npy",
        latent_index=f"{OUT}/embed/vd_latent.index.parquet",
    log:
        f"{OUT}/logs/embed_vd_tokens.log",
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=60,
    params:
        model=config["generate"]["versatile_diffusion"]["model"],
        dtype=config["generate"]["versatile_diffusion"]["dtype"],
    script:
        "../workflow_scripts/embed_vd_tokens.py"


rule embed_unclip:
    """sd_unclip targets: the shown images' captions through the pipeline's own text encoder,
    averaged per image (text: predicted), or the images' VAE latents (first_guess: vae).
    """
    input:
        lib(
            "generators/unclip.py",
            "generators/hf_parts.py",
            "generators/vae_latents.py",
        ),
        model=local_model("sd_unclip"),
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
        captions=stim("captions.parquet"),
    output:
        out=f"{OUT}/embed/unclip_{{what}}.npy",
        out_index=f"{OUT}/embed/unclip_{{what}}.index.parquet",
    log:
        f"{OUT}/logs/embed_unclip_{{what}}.log",
    wildcard_constraints:
        what="text|latent",
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=60,
    params:
        model=config["generate"]["sd_unclip"]["model"],
        dtype=config["generate"]["sd_unclip"]["dtype"],
    script:
        "../workflow_scripts/embed_unclip.py"
