"""Stage 0: the synthetic NSD-like dataset, written in BIDS with its ground truth."""


rule simulate_stimuli:
    """Draw the stimulus set: scenes of coloured shapes, five captions each, category labels."""
    input:
        lib("datasets/scenes.py", "datasets/synthetic.py"),
    output:
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
        captions=stim("captions.parquet"),
        labels=stim("labels.parquet"),
        categories=stim("categories.parquet"),
        objects=stim("objects.parquet"),
        description=f"{OUT}/bids/dataset_description.json",
        sidecar=f"{OUT}/bids/task-images_bold.json",
    log:
        f"{OUT}/logs/simulate_stimuli.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        size=config["simulate"]["size"],
        seed=config["simulate"]["seed"],
    script:
        "../workflow_scripts/simulate_stimuli.py"


rule simulate_subject:
    """Simulate one subject's BOLD runs (BIDS), ROI label images and ground truth."""
    input:
        lib("datasets/scenes.py", "datasets/synthetic.py"),
        images=stim("images.npy"),
        images_index=stim("images.index.parquet"),
        labels=stim("labels.parquet"),
        objects=stim("objects.parquet"),
        sidecar=f"{OUT}/bids/task-images_bold.json",
    output:
        bids=directory(f"{OUT}/bids/sub-{{subject}}"),
        truth=f"{OUT}/truth/sub-{{subject}}.npz",
    log:
        f"{OUT}/logs/simulate_subject/sub-{{subject}}.log",
    benchmark:
        f"{OUT}/benchmarks/simulate_subject/sub-{{subject}}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        size=config["simulate"]["size"],
        snr=config["simulate"]["snr"],
        seed=config["simulate"]["seed"],
    script:
        "../workflow_scripts/simulate_subject.py"
