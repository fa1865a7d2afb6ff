"""Stage 6: tidy metric tables per stage, concatenated into <results>/<dataset>/metrics.parquet."""


rule metrics_glm:
    """GLM recovery: estimated single-trial betas against the simulator's true amplitudes."""
    input:
        unpack(glm_type_inputs),
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
        types=GLM_BETA_TYPES,
    script:
        "../workflow_scripts/metrics_glm.py"


rule metrics_noise_ceiling:
    """NSD's noise ceiling (ncsnr) of the betas, per ROI set and as a map on the fit ROI; the
    GLM's R2 of each type per ROI set."""
    input:
        lib("metrics/noise_ceiling.py", "metrics/table.py", "roi.py", "glm/outputs.py"),
        betas=lambda w: glm_betas(w.subject),
        trials=lambda w: expand(
            f"{OUT}/glm/sub-{w.subject}/ses-{{session}}/trials.parquet",
            session=sessions_of(w.subject),
        ),
        maps=lambda w: expand(
            f"{OUT}/glm/sub-{w.subject}/ses-{{session}}/maps.nii.gz",
            session=sessions_of(w.subject),
        ),
        summaries=lambda w: expand(
            f"{OUT}/glm/sub-{w.subject}/ses-{{session}}/summary.json",
            session=sessions_of(w.subject),
        ),
        bids=f"{OUT}/bids/sub-{{subject}}",
        images_index=stim("images.index.parquet"),
    output:
        table=f"{OUT}/metrics/noise_ceiling/sub-{{subject}}.parquet",
        map=f"{OUT}/glm/sub-{{subject}}/noise_ceiling.nii.gz",
        figure=report(
            f"{OUT}/glm/sub-{{subject}}/noise_ceiling.png",
            category="GLM",
            subcategory="sub-{subject}",
            caption="../report/noise_ceiling.rst",
        ),
    log:
        f"{OUT}/logs/metrics/noise_ceiling_sub-{{subject}}.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        dataset=config["dataset"],
        rois=config["roi"]["sets"],
        map_roi=config["fit"]["roi"],
        glm_type=config["glm"]["use_type"],
        bids_dir=parent_of("bids"),
    script:
        "../workflow_scripts/metrics_noise_ceiling.py"


rule metrics_decoding:
    """Retrieval Recall@k and mean recall (image and text, both directions, whole pool and
    random pools), R2 and cosine to the true embeddings, 2-way / random 2-way / n-way
    identification and zero-shot classification."""
    input:
        lib(
            "metrics/decoding.py",
            "metrics/retrieval.py",
            "metrics/identification.py",
            "metrics/prediction.py",
            "metrics/recon.py",
            "metrics/table.py",
            "metrics/zero_shot.py",
            "mappers/targets.py",
        ),
        classes=f"{OUT}/embed/classes.npy",
        classes_index=f"{OUT}/embed/classes.index.parquet",
        labels=stim("labels.parquet"),
        pred_image=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.npy",
        pred_image_index=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.index.parquet",
        pred_text=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_text.npy",
        pred_text_index=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_text.index.parquet",
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
        caption=CAPTIONS,
        caption_index=CAPTIONS_INDEX,
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
        settings=decoding_settings(),
    script:
        "../workflow_scripts/metrics_decoding.py"


rule metrics_supervision:
    """BrainCLIP's supervision ablation: the same mapper trained with image (V), caption (T)
    and both (VT) InfoNCE terms, every decoding metric of each (column supervision)."""
    input:
        lib(
            "metrics/decoding.py",
            "metrics/retrieval.py",
            "metrics/identification.py",
            "metrics/prediction.py",
            "metrics/recon.py",
            "metrics/table.py",
            "metrics/zero_shot.py",
            "mappers/targets.py",
            "mappers/training.py",
            "mappers/zoo.py",
            "mappers/nets.py",
            "mappers/losses.py",
            "devices.py",
            "optim.py",
        ),
        voxels=f"{OUT}/roi/sub-{{subject}}/{config['fit']['roi']}/voxels.npy",
        voxels_index=f"{OUT}/roi/sub-{{subject}}/{config['fit']['roi']}/voxels.index.parquet",
        classes=f"{OUT}/embed/classes.npy",
        classes_index=f"{OUT}/embed/classes.index.parquet",
        labels=stim("labels.parquet"),
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
        caption=CAPTIONS,
        caption_index=CAPTIONS_INDEX,
        views=views_input(),
    output:
        f"{OUT}/metrics/supervision/sub-{{subject}}/{{mapper}}.parquet",
    log:
        f"{OUT}/logs/metrics/supervision/sub-{{subject}}/{{mapper}}.log",
    wildcard_constraints:
        mapper="brainclip_linear|brainclip_vae",
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        gpu=gpus(config["fit"]["training"]["device"]),
        mem_mb=4000,
        runtime=30,
    params:
        dataset=config["dataset"],
        settings=decoding_settings(),
        hp=lambda w: config["fit"][w.mapper],
        training=config["fit"]["training"],
        validation=config["fit"]["validation"],
        seed=config["fit"]["seed"],
    script:
        "../workflow_scripts/metrics_supervision.py"


rule metrics_recon:
    """Every reconstruction metric (PixCorr, SSIM, CLIP 2-way / random 2-way / n-way, AlexNet,
    Inception, EffNet-B1, SwAV where their weights exist) of every scored generator, for one
    subject and mapper."""
    input:
        lib(
            "metrics/image.py",
            "metrics/identification.py",
            "metrics/recon.py",
            "metrics/networks.py",
            "metrics/weights.py",
            "metrics/table.py",
            "embeddings/model.py",
            "embeddings/cache.py",
        ),
        [path for path, _ in network_weights().values() if path],
        checkpoint=clip_checkpoint(),
        recons=[recon_path(g, "recons.npy") for g in scored_generators()],
        recons_index=[
            recon_path(g, "recons.index.parquet") for g in scored_generators()
        ],
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
    output:
        f"{OUT}/metrics/recon/sub-{{subject}}/{{mapper}}.parquet",
    log:
        f"{OUT}/logs/metrics/recon/sub-{{subject}}/{{mapper}}.log",
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        dataset=config["dataset"],
        generators=scored_generators(),
        image_size=config["metrics"]["image_size"],
        model=config["embed"]["model"],
        pretrained=clip_weights,
        n_way=config["metrics"]["n_way"],
        repeats=config["metrics"]["repeats"],
        seed=config["metrics"]["seed"],
        networks=network_weights(),
    script:
        "../workflow_scripts/metrics_recon.py"


rule metrics_categories:
    """Category decoding (Mind Reader 3.4): multi-label classifiers from fMRI, from CLIP image
    embeddings and (per mapper) from the decoded embeddings, scored by AUC-ROC per category.
    """
    input:
        lib(
            "metrics/categories.py",
            "metrics/table.py",
            "mappers/targets.py",
        ),
        voxels=f"{OUT}/roi/sub-{{subject}}/{config['fit']['roi']}/voxels.npy",
        voxels_index=f"{OUT}/roi/sub-{{subject}}/{config['fit']['roi']}/voxels.index.parquet",
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
        pred=expand(
            f"{OUT}/fit/sub-{{{{subject}}}}/{{mapper}}/pred_image.npy",
            mapper=config["fit"]["mappers"],
        ),
        labels=stim("labels.parquet"),
        categories=stim("categories.parquet"),
    output:
        f"{OUT}/metrics/categories/sub-{{subject}}.parquet",
    log:
        f"{OUT}/logs/metrics/categories/sub-{{subject}}.log",
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        dataset=config["dataset"],
        mappers=config["fit"]["mappers"],
        settings=config["metrics"]["category_decoding"],
        seed=config["metrics"]["seed"],
    script:
        "../workflow_scripts/metrics_categories.py"


rule metrics_all:
    """Concatenate every stage's metric table into one tidy table."""
    input:
        lib("metrics/table.py"),
        tables=expand(
            f"{OUT}/metrics/{{stage}}/sub-{{subject}}.parquet",
            stage=["glm", "noise_ceiling"] if SYNTHETIC else [],
            subject=SUBJECTS,
        )
        + expand(
            f"{OUT}/metrics/decoding/sub-{{subject}}/{{mapper}}.parquet",
            subject=SUBJECTS,
            mapper=config["fit"]["mappers"],
        )
        + expand(f"{OUT}/metrics/categories/sub-{{subject}}.parquet", subject=SUBJECTS)
        + expand(
            f"{OUT}/metrics/supervision/sub-{{subject}}/{{mapper}}.parquet",
            subject=SUBJECTS,
            mapper=config["metrics"]["supervision_ablation"],
        )
        + analysis_tables()
        + recon_tables(),
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


rule noise_sensitivity:
    """Two-stage reconstruction from first guesses with Gaussian noise of each amplitude."""
    input:
        lib(
            "generators/pipeline.py",
            "generators/tiny_diffusion.py",
            "images.py",
            "metrics/recon.py",
            "metrics/table.py",
        ),
        checkpoint=clip_checkpoint(),
        model=f"{OUT}/models/generator-tiny",
        pred=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.npy",
        pred_index=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.index.parquet",
        first_guess=recon_path("lowlevel", "recons.npy"),
        first_guess_index=recon_path("lowlevel", "recons.index.parquet"),
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
    output:
        f"{OUT}/metrics/noise_sensitivity/sub-{{subject}}/{{mapper}}.parquet",
    log:
        f"{OUT}/logs/metrics/noise_sensitivity/sub-{{subject}}/{{mapper}}.log",
    benchmark:
        f"{OUT}/benchmarks/noise_sensitivity/sub-{{subject}}/{{mapper}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        gpu=gpus(config["generate"]["tiny"]["device"]),
        mem_mb=4000,
        runtime=30,
    params:
        dataset=config["dataset"],
        amplitudes=config["generate"]["noise_sensitivity"]["amplitudes"],
        steps=config["generate"]["tiny"]["steps"],
        guidance=config["generate"]["tiny"]["guidance"],
        device=config["generate"]["tiny"]["device"],
        strength=config["generate"]["two_stage"]["strength"],
        seed=config["generate"]["seed"],
        out_size=config["metrics"]["image_size"],
        image_size=config["metrics"]["image_size"],
        clip_model=config["embed"]["model"],
        clip_pretrained=clip_weights,
    script:
        "../workflow_scripts/noise_sensitivity.py"


rule noise_sensitivity_table:
    """One table of the noise-sensitivity analysis over subjects and mappers."""
    input:
        lib("metrics/table.py"),
        tables=noise_tables(),
    output:
        report(f"{OUT}/noise_sensitivity.parquet", category="Metrics"),
    log:
        f"{OUT}/logs/metrics/noise_sensitivity.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/metrics_all.py"
