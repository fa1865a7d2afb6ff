"""Stage 4: mappers from voxels to embeddings, predictions for the test images."""


rule fit_ridge:
    """Ridge from voxels to image and caption embeddings and a low-res image; CV'd alphas."""
    input:
        lib("mappers/ridge.py", "mappers/targets.py", "mappers/training.py"),
        voxels=f"{OUT}/roi/sub-{{subject}}/{config['fit']['roi']}/voxels.npy",
        voxels_index=f"{OUT}/roi/sub-{{subject}}/{config['fit']['roi']}/voxels.index.parquet",
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
        caption=CAPTIONS,
        caption_index=CAPTIONS_INDEX,
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
    output:
        pred_image=f"{OUT}/fit/sub-{{subject}}/ridge/pred_image.npy",
        pred_image_index=f"{OUT}/fit/sub-{{subject}}/ridge/pred_image.index.parquet",
        pred_text=f"{OUT}/fit/sub-{{subject}}/ridge/pred_text.npy",
        pred_text_index=f"{OUT}/fit/sub-{{subject}}/ridge/pred_text.index.parquet",
        model_image=f"{OUT}/fit/sub-{{subject}}/ridge/model_image.npz",
        model_text=f"{OUT}/fit/sub-{{subject}}/ridge/model_text.npz",
        pred_lowres=f"{OUT}/fit/sub-{{subject}}/ridge/pred_lowres.npy",
        pred_lowres_index=f"{OUT}/fit/sub-{{subject}}/ridge/pred_lowres.index.parquet",
        model_lowres=f"{OUT}/fit/sub-{{subject}}/ridge/model_lowres.npz",
        cv=f"{OUT}/fit/sub-{{subject}}/ridge/cv.parquet",
        val_image=f"{OUT}/fit/sub-{{subject}}/ridge/val_image.npy",
        val_image_index=f"{OUT}/fit/sub-{{subject}}/ridge/val_image.index.parquet",
        val_text=f"{OUT}/fit/sub-{{subject}}/ridge/val_text.npy",
        val_text_index=f"{OUT}/fit/sub-{{subject}}/ridge/val_text.index.parquet",
    log:
        f"{OUT}/logs/fit/sub-{{subject}}_ridge.log",
    benchmark:
        f"{OUT}/benchmarks/fit_ridge/sub-{{subject}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        alphas=config["fit"]["ridge"]["alphas"],
        cv_folds=config["fit"]["ridge"]["cv_folds"],
        alpha_per_target=config["fit"]["ridge"]["alpha_per_target"],
        standardize=config["fit"]["ridge"]["standardize"],
        lowres_size=config["fit"]["lowres_size"],
        validation=config["fit"]["validation"],
        seed=config["fit"]["seed"],
        caption=config["fit"]["training"]["caption"],
    script:
        "../workflow_scripts/fit_ridge.py"


rule fit:
    """A trainable mapper of the seed papers (BrainCLIP linear / VAE, Mind Reader CNN,
    Brain2Word autoencoder, the two-stage method's GRU): trained with early stopping on a
    validation split of the training images, resumable; test and validation predictions.
    """
    input:
        lib(
            "mappers/training.py",
            "mappers/zoo.py",
            "mappers/nets.py",
            "mappers/losses.py",
            "mappers/targets.py",
            "devices.py",
            "optim.py",
            "report/figures.py",
        ),
        voxels=f"{OUT}/roi/sub-{{subject}}/{config['fit']['roi']}/voxels.npy",
        voxels_index=f"{OUT}/roi/sub-{{subject}}/{config['fit']['roi']}/voxels.index.parquet",
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
        caption=CAPTIONS,
        caption_index=CAPTIONS_INDEX,
        views=views_input(),
    output:
        pred_image=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.npy",
        pred_image_index=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.index.parquet",
        pred_text=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_text.npy",
        pred_text_index=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_text.index.parquet",
        val_image=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/val_image.npy",
        val_image_index=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/val_image.index.parquet",
        val_text=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/val_text.npy",
        val_text_index=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/val_text.index.parquet",
        model=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/model.pt",
        curve=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/curve.parquet",
        figure=report(
            f"{OUT}/fit/sub-{{subject}}/{{mapper}}/curve.png",
            category="Mappers",
            subcategory="Training curves",
            labels={"subject": "{subject}", "mapper": "{mapper}"},
        ),
    log:
        f"{OUT}/logs/fit/sub-{{subject}}_{{mapper}}.log",
    benchmark:
        f"{OUT}/benchmarks/fit/sub-{{subject}}_{{mapper}}.tsv"
    wildcard_constraints:
        mapper="|".join(TRAINABLE_MAPPERS),
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        gpu=gpus(config["fit"]["training"]["device"]),
        mem_mb=4000,
        runtime=30,
    params:
        hp=lambda w: config["fit"][w.mapper],
        training=config["fit"]["training"],
        validation=config["fit"]["validation"],
        seed=config["fit"]["seed"],
        targets="clip",
    script:
        "../workflow_scripts/fit_net.py"


rule fit_lowres:
    """The two-stage method's first stage by its own mapper: the GRU maps voxels to the
    low-res image (the low-level target ridge also predicts), MSE; run when a generator of
    generate.mappers needs the first guess."""
    input:
        lib(
            "mappers/training.py",
            "mappers/zoo.py",
            "mappers/nets.py",
            "mappers/losses.py",
            "mappers/targets.py",
            "devices.py",
            "optim.py",
            "report/figures.py",
        ),
        voxels=f"{OUT}/roi/sub-{{subject}}/{config['fit']['roi']}/voxels.npy",
        voxels_index=f"{OUT}/roi/sub-{{subject}}/{config['fit']['roi']}/voxels.index.parquet",
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
        caption=CAPTIONS,
        caption_index=CAPTIONS_INDEX,
        views=[],  # the low-level target has no augmented views
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
    output:
        pred_lowres=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_lowres.npy",
        pred_lowres_index=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_lowres.index.parquet",
        model=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/model_lowres.pt",
        curve=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/curve_lowres.parquet",
        figure=report(
            f"{OUT}/fit/sub-{{subject}}/{{mapper}}/curve_lowres.png",
            category="Mappers",
            subcategory="Training curves",
            labels={"subject": "{subject}", "mapper": "{mapper} (low-res)"},
        ),
    log:
        f"{OUT}/logs/fit/sub-{{subject}}_{{mapper}}_lowres.log",
    benchmark:
        f"{OUT}/benchmarks/fit/sub-{{subject}}_{{mapper}}_lowres.tsv"
    wildcard_constraints:
        mapper="gru",
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        gpu=gpus(config["fit"]["training"]["device"]),
        mem_mb=4000,
        runtime=30,
    params:
        hp=lambda w: config["fit"][w.mapper],
        training=config["fit"]["training"],
        validation=config["fit"]["validation"],
        seed=config["fit"]["seed"],
        lowres_size=config["fit"]["lowres_size"],
        targets="lowres",
    script:
        "../workflow_scripts/fit_net.py"


rule fit_fusion:
    """Mind Reader's fusion: the weighted sum of several mappers' similarity matrices, weights
    chosen on the validation images (a weighted sum of their unit-norm predictions)."""
    input:
        lib("mappers/fusion.py", "mappers/targets.py", "metrics/retrieval.py"),
        unpack(fusion_inputs),
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
        caption=CAPTIONS,
        caption_index=CAPTIONS_INDEX,
    output:
        pred_image=f"{OUT}/fit/sub-{{subject}}/fusion/pred_image.npy",
        pred_image_index=f"{OUT}/fit/sub-{{subject}}/fusion/pred_image.index.parquet",
        pred_text=f"{OUT}/fit/sub-{{subject}}/fusion/pred_text.npy",
        pred_text_index=f"{OUT}/fit/sub-{{subject}}/fusion/pred_text.index.parquet",
        weights=f"{OUT}/fit/sub-{{subject}}/fusion/weights.parquet",
    log:
        f"{OUT}/logs/fit/sub-{{subject}}_fusion.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        mappers=config["fit"]["fusion"]["mappers"],
        grid_step=config["fit"]["fusion"]["grid_step"],
    script:
        "../workflow_scripts/fit_fusion.py"


rule true_targets:
    """The 'truth' mapper: test 'predictions' that are the true targets (generator ceiling)."""
    input:
        lib("mappers/targets.py"),
        voxels_index=f"{OUT}/roi/sub-{{subject}}/{config['fit']['roi']}/voxels.index.parquet",
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
        caption=CAPTIONS,
        caption_index=CAPTIONS_INDEX,
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
    output:
        pred_image=f"{OUT}/fit/sub-{{subject}}/truth/pred_image.npy",
        pred_image_index=f"{OUT}/fit/sub-{{subject}}/truth/pred_image.index.parquet",
        pred_text=f"{OUT}/fit/sub-{{subject}}/truth/pred_text.npy",
        pred_text_index=f"{OUT}/fit/sub-{{subject}}/truth/pred_text.index.parquet",
        pred_lowres=f"{OUT}/fit/sub-{{subject}}/truth/pred_lowres.npy",
        pred_lowres_index=f"{OUT}/fit/sub-{{subject}}/truth/pred_lowres.index.parquet",
    log:
        f"{OUT}/logs/fit/sub-{{subject}}_truth.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        lowres_size=config["fit"]["lowres_size"],
    script:
        "../workflow_scripts/true_targets.py"


rule fit_tokens:
    """The real pipelines' own targets: Versatile Diffusion's image and caption tokens and VAE
    latents, SD unCLIP's caption token states and VAE latents. Ridge from voxels (token
    predictions rescaled to the training targets' statistics, as Brain-Diffuser does; latents
    as predicted); mapper truth: the test images' true ones."""
    input:
        lib("mappers/ridge.py", "mappers/targets.py"),
        voxels=f"{OUT}/roi/sub-{{subject}}/{config['fit']['roi']}/voxels.npy",
        voxels_index=f"{OUT}/roi/sub-{{subject}}/{config['fit']['roi']}/voxels.index.parquet",
        targets=f"{OUT}/embed/{{pipeline_target}}.npy",
        targets_index=f"{OUT}/embed/{{pipeline_target}}.index.parquet",
    output:
        pred=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_{{pipeline_target}}.npy",
        pred_index=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_{{pipeline_target}}.index.parquet",
    log:
        f"{OUT}/logs/fit/sub-{{subject}}_{{mapper}}_{{pipeline_target}}.log",
    wildcard_constraints:
        mapper="ridge|truth",
        pipeline_target="vd_image|vd_text|vd_latent|unclip_text|unclip_latent",
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=60,
    params:
        truth=lambda w: w.mapper == "truth",
        rescale=lambda w: not w.pipeline_target.endswith("latent"),
        alphas=config["fit"]["ridge"]["alphas"],
        cv_folds=config["fit"]["ridge"]["cv_folds"],
        standardize=config["fit"]["ridge"]["standardize"],
        seed=config["fit"]["seed"],
    script:
        "../workflow_scripts/fit_tokens.py"
