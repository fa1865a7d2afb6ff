"""Analyses of the seed papers on top of the fitted mappers (Mind Reader's encoding
direction and microstimulation)."""

ENCODING = config["metrics"]["encoding"]
MICROSTIM = config["metrics"]["microstim"]
FIT_ROI = config["fit"]["roi"]


rule metrics_encoding:
    """Encoding direction (Mind Reader A.8): ridge from CLIP image embeddings to the fit
    ROI's voxels; per-voxel test r against the noise ceiling, summarised per ROI."""
    input:
        lib(
            "metrics/encoding.py",
            "metrics/table.py",
            "mappers/ridge.py",
            "mappers/targets.py",
            "devices.py",
            "roi.py",
        ),
        voxels=f"{OUT}/roi/sub-{{subject}}/{FIT_ROI}/voxels.npy",
        voxels_index=f"{OUT}/roi/sub-{{subject}}/{FIT_ROI}/voxels.index.parquet",
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
        noise_ceiling=f"{OUT}/glm/sub-{{subject}}/noise_ceiling.nii.gz",
        bids=f"{OUT}/bids/sub-{{subject}}",
    output:
        table=f"{OUT}/metrics/encoding/sub-{{subject}}.parquet",
        map=f"{OUT}/analyses/sub-{{subject}}/encoding/r.nii.gz",
        voxels=f"{OUT}/analyses/sub-{{subject}}/encoding/voxels.parquet",
        figure=report(
            f"{OUT}/analyses/sub-{{subject}}/encoding/r_vs_noise_ceiling.png",
            category="Analyses",
            subcategory="Encoding",
            labels={"subject": "{subject}", "figure": "r vs noise ceiling"},
        ),
    log:
        f"{OUT}/logs/analyses/encoding_sub-{{subject}}.log",
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        dataset=config["dataset"],
        fit_roi=FIT_ROI,
        alphas=ENCODING["alphas"],
        cv_folds=ENCODING["cv_folds"],
        alpha_per_target=ENCODING["alpha_per_target"],
        seed=ENCODING["seed"],
        bids_dir=parent_of("bids"),
    script:
        "../workflow_scripts/metrics_encoding.py"


rule microstim:
    """Microstimulation (Mind Reader 3.3): boost / silence each ROI's z-scored voxels, decode
    with the fitted mapper, measure the shift toward every category's class embedding, and
    generate images from the stimulated embeddings with the tiny generator."""
    input:
        lib(
            "metrics/microstim.py",
            "metrics/encoding.py",
            "metrics/table.py",
            "mappers/ridge.py",
            "mappers/targets.py",
            "devices.py",
            "roi.py",
            "generators/pipeline.py",
            "generators/tiny_diffusion.py",
            "generators/seeding.py",
            "images.py",
        ),
        model=f"{OUT}/fit/sub-{{subject}}/{MICROSTIM['mapper']}/model_image.npz",
        voxels=f"{OUT}/roi/sub-{{subject}}/{FIT_ROI}/voxels.npy",
        voxels_index=f"{OUT}/roi/sub-{{subject}}/{FIT_ROI}/voxels.index.parquet",
        classes=f"{OUT}/embed/classes.npy",
        classes_index=f"{OUT}/embed/classes.index.parquet",
        generator=f"{OUT}/models/generator-tiny",
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
        bids=f"{OUT}/bids/sub-{{subject}}",
    output:
        table=f"{OUT}/metrics/microstim/sub-{{subject}}.parquet",
        shifts=report(
            f"{OUT}/analyses/sub-{{subject}}/microstim/shifts.png",
            category="Analyses",
            subcategory="Microstimulation",
            labels={"subject": "{subject}", "figure": "embedding shifts"},
        ),
        grid=report(
            f"{OUT}/analyses/sub-{{subject}}/microstim/grid.png",
            category="Analyses",
            subcategory="Microstimulation",
            labels={"subject": "{subject}", "figure": "generated images"},
        ),
    log:
        f"{OUT}/logs/analyses/microstim_sub-{{subject}}.log",
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        gpu=gpus(config["generate"]["tiny"]["device"]),
        mem_mb=4000,
        runtime=10,
    params:
        dataset=config["dataset"],
        mapper=MICROSTIM["mapper"],
        fit_roi=FIT_ROI,
        rois=MICROSTIM["rois"],
        manipulations=MICROSTIM["manipulations"],
        boost_value=MICROSTIM["boost_value"],
        images=MICROSTIM["images"],
        steps=config["generate"]["tiny"]["steps"],
        guidance=config["generate"]["tiny"]["guidance"],
        device=config["generate"]["tiny"]["device"],
        seed=config["generate"]["seed"],
        out_size=config["metrics"]["image_size"],
        bids_dir=parent_of("bids"),
    script:
        "../workflow_scripts/microstim.py"
