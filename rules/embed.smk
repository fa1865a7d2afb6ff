"""Stage 3: CLIP embedding caches (image and caption), with the small model trained here."""


def clip_checkpoint():
    """The small model's checkpoint when the workflow trains it, else nothing to build."""
    return [] if config["embed"]["pretrained"] else [f"{OUT}/models/clip/checkpoint.pt"]


rule train_clip:
    """Train the small open_clip dual encoder on the non-test stimuli and their captions."""
    input:
        lib("embeddings/model.py", "embeddings/train.py"),
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
        captions=stim("captions.parquet"),
    output:
        checkpoint=f"{OUT}/models/clip/checkpoint.pt",
        stats=f"{OUT}/models/clip/train_stats.json",
    params:
        model=config["embed"]["model"],
        train=config["embed"]["train"],
        seed=config["embed"]["seed"],
    log:
        f"{OUT}/logs/train_clip.log",
    benchmark:
        f"{OUT}/benchmarks/train_clip.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/train_clip.py"


rule embed:
    """Embed every stimulus image and caption once with the CLIP model."""
    input:
        lib("embeddings/model.py", "embeddings/cache.py"),
        clip_checkpoint(),
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
        captions=stim("captions.parquet"),
    output:
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
        caption=f"{OUT}/embed/caption.npy",
        caption_index=f"{OUT}/embed/caption.index.parquet",
    params:
        model=config["embed"]["model"],
        pretrained=config["embed"]["pretrained"] or f"{OUT}/models/clip/checkpoint.pt",
        stim_dir=f"{OUT}/stimuli",
    log:
        f"{OUT}/logs/embed.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/embed.py"
