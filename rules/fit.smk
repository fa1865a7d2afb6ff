"""Stage 4: mappers from voxels to embeddings, predictions for the test images."""


rule fit_ridge:
    """Ridge from voxels to image and caption embeddings and a low-res image; CV'd alphas."""
    input:
        lib("mappers/ridge.py", "mappers/targets.py"),
        voxels=f"{OUT}/roi/sub-{{subject}}/{config['fit']['roi']}/voxels.npy",
        voxels_index=f"{OUT}/roi/sub-{{subject}}/{config['fit']['roi']}/voxels.index.parquet",
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
        caption=f"{OUT}/embed/caption.npy",
        caption_index=f"{OUT}/embed/caption.index.parquet",
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
    log:
        f"{OUT}/logs/fit/sub-{{subject}}_ridge.log",
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
        seed=config["fit"]["seed"],
    script:
        "../workflow_scripts/fit_ridge.py"


rule true_targets:
    """The 'truth' mapper: test 'predictions' that are the true targets (generator ceiling)."""
    input:
        lib("mappers/targets.py"),
        voxels_index=f"{OUT}/roi/sub-{{subject}}/{config['fit']['roi']}/voxels.index.parquet",
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
        caption=f"{OUT}/embed/caption.npy",
        caption_index=f"{OUT}/embed/caption.index.parquet",
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
