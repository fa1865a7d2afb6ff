"""Stage 0 for a real dataset (source.kind nsd or bids): its stimulus set in the workflow's
files, and NSD's trial tables when its released betas skip the glm stage."""


rule prepare_stimuli:
    """The images shown to the configured subjects (squared, resized), their split, captions
    and category labels, read from the dataset's own files."""
    input:
        lib(
            "datasets/stimuli.py",
            "datasets/sources.py",
            "datasets/nsd.py",
            "datasets/bids.py",
        ),
    output:
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
        captions=stim("captions.parquet"),
        labels=stim("labels.parquet"),
        categories=stim("categories.parquet"),
    log:
        f"{OUT}/logs/prepare_stimuli.log",
    benchmark:
        f"{OUT}/benchmarks/prepare_stimuli.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        source=config["source"],
        sessions=SESSIONS,
    script:
        "../workflow_scripts/prepare_stimuli.py"


if NSD_BETAS:

    rule nsd_trials:
        """One NSD subject's trials, session by session, from nsd_expdesign.mat (released betas)."""
        input:
            lib("datasets/nsd.py"),
            expdesign=nsd_layout(config["source"]["nsd"]).expdesign,
        output:
            trials=f"{OUT}/nsd/sub-{{subject}}/trials.parquet",
        log:
            f"{OUT}/logs/nsd_trials/sub-{{subject}}.log",
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=1000,
            runtime=10,
        params:
            sessions=lambda w: sessions_of(w.subject),
            trials_per_session=config["source"]["nsd"]["trials_per_session"],
        script:
            "../workflow_scripts/nsd_trials.py"
