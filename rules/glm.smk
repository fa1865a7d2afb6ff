"""Stage 1: single-trial betas per subject and session from the raw BOLD runs (GLMsingle)."""


rule glm:
    """GLMsingle types A-D: library HRF, GLMdenoise PCs, fractional ridge; maps and figures."""
    input:
        lib(
            "datasets/bids.py",
            "glm/hrf.py",
            "glm/design.py",
            "glm/fit.py",
            "glm/single.py",
            "glm/denoise.py",
            "glm/ridge.py",
            "glm/xval.py",
            "glm/outputs.py",
            "glm/official.py",
            "glm/backend.py",
            "datasets/nsd.py",
            "datasets/sources.py",
        ),
        unpack(glm_sources),
        # checked against the events (an unknown stimulus is named by its events file);
        # ancient: a new stimulus set does not by itself rerun the GLM
        stimuli=ancient(stim("images.index.parquet")),
    output:
        betas=expand(
            f"{OUT}/glm/sub-{{{{subject}}}}/ses-{{{{session}}}}/betas_type-{{t}}.nii.gz",
            t=GLM_BETA_TYPES,
        ),
        trials=f"{OUT}/glm/sub-{{subject}}/ses-{{session}}/trials.parquet",
        maps=f"{OUT}/glm/sub-{{subject}}/ses-{{session}}/maps.nii.gz",
        summary=f"{OUT}/glm/sub-{{subject}}/ses-{{session}}/summary.json",
        figures=report(
            directory(f"{OUT}/glm/sub-{{subject}}/ses-{{session}}/figures"),
            patterns=["{name}.png"],
            category="GLM",
            subcategory="sub-{subject} ses-{session}",
        ),
    log:
        f"{OUT}/logs/glm/sub-{{subject}}_ses-{{session}}.log",
    benchmark:
        f"{OUT}/benchmarks/glm/sub-{{subject}}_ses-{{session}}.tsv"
    conda:
        (
            "../envs/glmsingle.yaml"
            if config["glm"]["method"] == "glmsingle"
            else (
                "../envs/torch.yaml"
                if config["glm"]["backend"] == "torch"
                else "../envs/data.yaml"
            )
        )
    threads: 1
    resources:
        gpu=gpus(config["glm"]["device"]) if config["glm"]["backend"] == "torch" else 0,
        mem_mb=4000,
        runtime=30,
    params:
        synthetic_root=f"{OUT}/bids",
        source=glm_source(),
        glm=config["glm"],
        beta_types=GLM_BETA_TYPES,
    script:
        "../workflow_scripts/glm.py"
