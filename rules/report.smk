"""The human-readable report: metric tables, figures, reconstruction grids."""


rule retrieval_examples:
    """Retrieval examples: fMRI queries of test images and the top-5 test images retrieved
    by their decoded CLIP image embedding (the headline mapper)."""
    input:
        lib("metrics/retrieval.py", "mappers/targets.py", "report/figures.py"),
        pred=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.npy",
        pred_index=f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_image.index.parquet",
        image=f"{OUT}/embed/image.npy",
        image_index=f"{OUT}/embed/image.index.parquet",
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
    output:
        report(
            f"{OUT}/report/retrieval/sub-{{subject}}_{{mapper}}.png",
            category="Retrieval",
            labels={"subject": "{subject}", "mapper": "{mapper}"},
        ),
    log:
        f"{OUT}/logs/report/retrieval_sub-{{subject}}_{{mapper}}.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        n=config["metrics"]["retrieval_examples"],
        k=5,
        seed=config["metrics"]["seed"],
    script:
        "../workflow_scripts/retrieval_examples.py"


rule report:
    """Render the HTML report (summary table, metric figures, reconstruction grids)."""
    input:
        lib("report/html.py", "report/figures.py"),
        metrics=f"{OUT}/metrics.parquet",
        grids=recon_outputs(
            f"{OUT}/generate/sub-{{subject}}/{{mapper}}/{{generator}}/grid.png"
        ),
        noise=noise_table(),
        analyses=analysis_figures(),
        retrieval=retrieval_figures(),
        curves=(
            [] if config["embed"]["pretrained"] else [f"{OUT}/models/clip/curve.png"]
        )
        + expand(
            f"{OUT}/fit/sub-{{subject}}/{{mapper}}/curve.png",
            subject=SUBJECTS,
            mapper=[m for m in config["fit"]["mappers"] if m in TRAINABLE_MAPPERS],
        ),
        stats=(
            []
            if config["embed"]["pretrained"]
            else [f"{OUT}/models/clip/train_stats.json"]
        )
        + [
            f"{OUT}/models/generator-tiny_stats.json",
            f"{OUT}/embed/quality.json",
            f"{OUT}/embed/screening.json",
            f"{OUT}/embed/classes_quality.json",
        ],
    output:
        html=report(f"{OUT}/report/report.html", category="Report"),
        summary=f"{OUT}/report/summary.md",
    log:
        f"{OUT}/logs/report.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        dataset=config["dataset"],
        headline_mapper=config["generate"]["mappers"][0],
    script:
        "../workflow_scripts/report.py"
