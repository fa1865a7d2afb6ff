"""Glue shared by the thin workflow scripts: logging to the rule's log file, thread limits.

Kept tiny on purpose: a workflow script reads ``snakemake.input/params/output``, calls
``setup(snakemake)`` and then one or two library functions.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any


def setup(smk: Any) -> logging.Logger:
    """Send logging and stderr (tqdm progress bars) to the rule's log; set thread limits.

    ``smk`` is the ``snakemake`` object Snakemake injects into scripts. The BLAS/torch thread
    count follows the rule's ``threads:`` so that declared and used resources agree.
    """
    log_path = smk.log[0] if len(smk.log) else None
    threads = int(getattr(smk, "threads", 1) or 1)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # rules that do not use torch run in envs without it
        pass
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        stream = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the job
        sys.stderr = stream
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logger = logging.getLogger(f"fmridecode.{smk.rule}")
    logger.info("rule %s, wildcards %s, threads %d", smk.rule, dict(smk.wildcards), threads)
    return logger
