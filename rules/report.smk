"""The human-readable report: metric tables, figures, reconstruction grids."""


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
        curves=expand(
            f"{OUT}/fit/sub-{{subject}}/{{mapper}}/curve.png",
            subject=SUBJECTS,
            mapper=[m for m in config["fit"]["mappers"] if m in TRAINABLE_MAPPERS],
        ),
        stats=([f"{OUT}/models/clip/train_stats.json"] if clip_checkpoint() else [])
        + [f"{OUT}/models/generator-tiny_stats.json", f"{OUT}/embed/quality.json"],
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
